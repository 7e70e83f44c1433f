"""The paper trader's ONE seam to the execution core: the backtest's own decision function (with its
expected-move cost filter) and the backtest's own simulator.

The paper trader has no trading rules of its own. At the close of every bar it runs
:func:`cryptoml_pipeline.execution.backtest.simulate` -- with the keywords of
:func:`cryptoml_pipeline.strategy.options.simulation_options`, i.e. the backtest's costs,
maker/taker fills, volatility slippage, funding, sizing, stops, take-profit and liquidation -- over
every bar and decision it has seen, and reads off what is known at that close (:func:`ledger_at`).

The simulator is causal, but at the end of its data it force-closes every open position (reason
``end``). A live trader's data never ends, so :func:`ledger_at` appends ONE flat sentinel bar after
the last seen bar (open = high = low = close = each symbol's last close, zero funding, no decision
filling there): every bar up to the last seen one is then simulated exactly as in a longer backtest,
and whatever the simulator does at the sentinel is discarded -- a trade that exits there is a
position still open at the last close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.execution.backtest import (
    BacktestResult,
    LossLimitDay,
    loss_limit_day,
    simulate,
)
from cryptoml_pipeline.settings import CostConfig, PipelineSettings
from cryptoml_pipeline.strategy.from_predictions import decisions_from_predictions
from cryptoml_pipeline.strategy.options import simulation_options
from cryptoml_pipeline.timing import timeframe_to_timedelta

FILL_COLUMNS = ["symbol", "bar", "side", "quantity", "reason", "price", "fee"]
DECISION_FIELDS = ("signal", "confidence", "volatility", "atr_pct", "expected_return")
OHLC = ("open", "high", "low", "close")


def decisions(
    predictions: pd.DataFrame, features: pd.DataFrame, *, timeframe: str, settings: PipelineSettings
) -> pd.DataFrame:
    """Predictions -> the backtest's decisions frame, exactly as the walk-forward evaluation
    builds it (same columns, same expected move per class, hence the same cost filter)."""
    _, columns, returns_by_class, _ = simulation_options(settings, timeframe)
    return decisions_from_predictions(
        predictions, features, timeframe=timeframe, returns_by_class=returns_by_class, **columns
    )


def simulator_options(
    settings: PipelineSettings,
    timeframe: str,
    *,
    initial_equity: float,
    loss_limit_start: LossLimitDay | None = None,
) -> dict[str, Any]:
    """The backtest's simulator keywords, starting from the paper account's equity and, for a
    run that starts inside a UTC day, the daily loss limit's state there (``loss_limit_start``,
    :func:`loss_limit_state`; None = a run from the account's first bar)."""
    common = simulation_options(settings, timeframe)[0]
    costs = settings.costs.model_copy(update={"initial_equity": float(initial_equity)})
    return common | {"costs": costs, "loss_limit_start": loss_limit_start}


def loss_limit_state(
    equity: pd.Series,
    initial_equity: float,
    limit: float,
    bar: pd.Timestamp,
    start: LossLimitDay | None,
) -> LossLimitDay:
    """The daily loss limit's state at the close of ``bar`` of a run (its marks ``equity``, from
    ``initial_equity``) given ``start`` (the state it began with, as :func:`simulate`'s
    ``loss_limit_start``): :func:`backtest.loss_limit_day`, except that where ``bar`` is still in
    ``start``'s day the run began inside it and the kernel carries that day on -- its start
    equity, and tripped if it had tripped or a close of the run hit the limit since."""
    state = loss_limit_day(equity, initial_equity, limit, bar)
    ts = pd.DatetimeIndex(equity.index).tz_convert("UTC")
    if start is None or pd.Timestamp(start.day).tz_convert("UTC") != state.day:
        return state
    if bool(np.any(ts < state.day)):  # the run has a close before that day: it began earlier
        return state
    today = equity.to_numpy(np.float64)[ts <= pd.Timestamp(bar).tz_convert("UTC")]
    begun = float(start.start_equity)
    tripped = start.tripped or begun <= 0.0 or bool(np.any(today <= (1.0 - limit) * begun))
    return LossLimitDay(day=state.day, start_equity=begun, tripped=bool(tripped))


@dataclass(frozen=True)
class AccountSnapshot:
    """Everything known at the close of ``bar`` (no forced close at the end)."""

    bar: pd.Timestamp
    equity: pd.Series  # mark to market at every seen bar's close
    fills: pd.DataFrame  # FILL_COLUMNS, in order (bar, symbol, sequence in the symbol's bar)
    closed: pd.DataFrame  # round trips closed at or before ``bar`` (backtest trade columns)
    open: pd.DataFrame  # positions open at the close of ``bar``
    fees_paid: float
    funding_paid: float
    cash: float  # equity less the open positions' unrealised P&L
    # what the guards did in the simulated bars up to ``bar`` (BacktestResult.guard_counts)
    guard_counts: dict[str, int]


def entry_fee_rate(costs: CostConfig) -> float:
    return costs.maker_fee if costs.order_type == "maker" else costs.taker_fee


def trade_fills(trades: pd.DataFrame, costs: CostConfig, *, open_after: pd.Timestamp | None):
    """Round trips -> one fill per leg (entry and, unless the trade exits after ``open_after``,
    its exit). Entry fee = the simulator's ``entry_fee * quantity * price``; exit fee = the
    trade's fees less it."""
    rate = entry_fee_rate(costs)
    direction = np.where(trades["side"].to_numpy() == "long", 1, -1)
    qty = trades["quantity"].to_numpy(np.float64)
    entry_price = trades["entry_price"].to_numpy(np.float64)
    entry_fee = rate * qty * entry_price
    # per symbol, trades in entry order: sequence numbers keep a bar's fills in event order
    entry_time = pd.to_datetime(trades["entry_time"], utc=True).reset_index(drop=True)
    exit_time = pd.to_datetime(trades["exit_time"], utc=True).reset_index(drop=True)
    order = np.lexsort((entry_time.array.asi8, trades["symbol"].to_numpy()))
    seq = np.empty(len(trades), dtype=np.int64)
    seq[order] = np.arange(len(trades))
    entries = pd.DataFrame(
        {
            "symbol": trades["symbol"].to_numpy(),
            "bar": entry_time,
            "side": direction,
            "quantity": qty,
            "reason": "entry",
            "price": entry_price,
            "fee": entry_fee,
            "_seq": 2 * seq + 1,
        }
    )
    exits = pd.DataFrame(
        {
            "symbol": trades["symbol"].to_numpy(),
            "bar": exit_time,
            "side": -direction,
            "quantity": qty,
            "reason": trades["exit_reason"].to_numpy(),
            "price": trades["exit_price"].to_numpy(np.float64),
            "fee": trades["fees"].to_numpy(np.float64) - entry_fee,
            "_seq": 2 * seq + 2,
        }
    )
    if open_after is not None:
        exits = exits[exits["bar"] <= open_after]
    out = pd.concat([entries, exits], ignore_index=True)
    out["bar"] = pd.to_datetime(out["bar"], utc=True).astype("datetime64[ns, UTC]")
    out = out.sort_values(["bar", "symbol", "_seq"], kind="stable").drop(columns="_seq")
    out["side"] = out["side"].astype(np.int64)
    return out.reset_index(drop=True)[FILL_COLUMNS]


def _sentinel_inputs(
    candles: pd.DataFrame, funding: pd.DataFrame, *, step: pd.Timedelta, interval_hours: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    last = candles.sort_values("timestamp", kind="stable").groupby("symbol").tail(1)
    sentinel = pd.Timestamp(candles["timestamp"].max()) + step
    flat = pd.DataFrame(
        {
            "timestamp": sentinel,
            "symbol": last["symbol"].to_numpy(),
            **{name: last["close"].to_numpy(np.float64) for name in OHLC},
        }
    )
    interval = pd.Timedelta(hours=interval_hours)
    times = pd.date_range(sentinel.ceil(interval), sentinel + step, freq=interval, inclusive="left")
    times = times[times < sentinel + step]
    zero = pd.DataFrame(
        [(t, s, 0.0) for t in times for s in flat["symbol"]],
        columns=["timestamp", "symbol", "funding_rate"],
    )
    frames = [f for f in (funding, zero) if len(f)]
    fund = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["timestamp", "symbol", "funding_rate"])
    )
    return pd.concat([candles, flat], ignore_index=True), fund


def ledger_at(
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    decision_rows: pd.DataFrame,
    *,
    options: dict[str, Any],
) -> AccountSnapshot:
    """Simulate the seen ``candles`` (timestamp, symbol, OHLC), the ``funding`` settled in them
    and the ``decision_rows`` filling at them, plus the sentinel bar; keep what is known at the
    last seen bar's close (see the module docstring)."""
    step = timeframe_to_timedelta(options["timeframe"])
    bar = pd.Timestamp(candles["timestamp"].max())
    ext_candles, ext_funding = _sentinel_inputs(
        candles, funding, step=step, interval_hours=options["funding_interval_hours"]
    )
    known = decision_rows[pd.to_datetime(decision_rows["timestamp"], utc=True) + step <= bar]
    result: BacktestResult = simulate(ext_candles, ext_funding, known, **options)
    trades = result.trades
    is_open = (pd.to_datetime(trades["exit_time"], utc=True) > bar).to_numpy(dtype=bool)
    closed = trades[~is_open].reset_index(drop=True)
    still = trades[is_open].reset_index(drop=True)
    costs: CostConfig = options["costs"]
    fills = trade_fills(trades, costs, open_after=bar)
    last_close = candles.sort_values("timestamp", kind="stable").groupby("symbol")["close"].last()
    direction = np.where(still["side"].to_numpy() == "long", 1.0, -1.0)
    unrealised = direction * still["quantity"].to_numpy(np.float64)
    unrealised *= last_close.reindex(still["symbol"]).to_numpy(np.float64) - still[
        "entry_price"
    ].to_numpy(np.float64)
    equity = result.equity[result.equity.index <= bar]
    open_positions = _open_positions(still, candles, decision_rows, options, bar, step)
    return AccountSnapshot(
        bar=bar,
        equity=equity,
        fills=fills,
        closed=closed,
        open=open_positions,
        fees_paid=float(fills["fee"].sum()),
        funding_paid=float(trades["funding"].sum()),
        cash=float(equity.iloc[-1] - unrealised.sum()),
        guard_counts=_guard_counts(result, bar, options),
    )


def _guard_counts(result: BacktestResult, bar: pd.Timestamp, options: dict[str, Any]) -> dict:
    """The guards' counts up to the close of ``bar``: the run's, less what the sentinel bar
    added. No decision fills at the sentinel, so that is at most the daily loss limit's: a bar
    opening blocked (the limit had tripped that day by ``bar``'s close) or a trip at its close."""
    counts = dict(result.guard_counts or {})
    limit = options["risk"].daily_loss_limit
    if limit is None:
        return counts
    start = options.get("loss_limit_start")
    initial = float(options["costs"].initial_equity)
    at_bar = loss_limit_state(result.equity, initial, limit, bar, start)
    at_end = loss_limit_state(result.equity, initial, limit, result.equity.index[-1], start)
    carried = at_end.day == at_bar.day and at_bar.tripped
    counts["daily_loss_limit_bars"] -= int(carried)
    counts["daily_loss_limit_days"] -= int(at_end.tripped and not carried)
    return counts


def _open_positions(
    still: pd.DataFrame,
    candles: pd.DataFrame,
    decision_rows: pd.DataFrame,
    options: dict[str, Any],
    bar: pd.Timestamp,
    step: pd.Timedelta,
) -> pd.DataFrame:
    """Open positions with their stop (the simulator's ``entry * (1 -/+ atr_mult * atr_pct)`` of
    the entry decision) and next review bar (every ``min_hold_bars`` of the symbol's bars after
    the entry; assumes no gap ahead)."""
    columns = ["symbol", "direction", "quantity", "entry_price", "entry_bar", "review_bar"]
    columns += ["stop", "risk_amount"]
    if still.empty:
        return pd.DataFrame(columns=columns)
    hold = int(options["min_hold_bars"])
    atr_mult = options["risk"].atr_stop_multiple
    ts = pd.to_datetime(candles["timestamp"], utc=True)
    dec = decision_rows.assign(fill=pd.to_datetime(decision_rows["timestamp"], utc=True) + step)
    dec = dec.set_index(["fill", "symbol"])["atr_pct"]
    rows = []
    for t in still.itertuples(index=False):
        d = 1 if t.side == "long" else -1
        entry = pd.Timestamp(t.entry_time)
        held = int(((candles["symbol"] == t.symbol) & (ts > entry) & (ts <= bar)).sum())
        ahead = hold * (held // hold + 1) - held
        atr = float(dec.get((entry, t.symbol), np.nan))
        rows.append(
            {
                "symbol": t.symbol,
                "direction": d,
                "quantity": float(t.quantity),
                "entry_price": float(t.entry_price),
                "entry_bar": entry,
                "review_bar": bar + ahead * step,
                "stop": float(t.entry_price) * (1.0 - d * atr_mult * atr),
                "risk_amount": float(t.risk_amount),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def close_out(
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    decision_rows: pd.DataFrame,
    *,
    options: dict[str, Any],
) -> BacktestResult:
    """The backtest of exactly the seen bars: what the account is if the data ended now (open
    positions closed at the last close, reason ``end``)."""
    step = timeframe_to_timedelta(options["timeframe"])
    bar = pd.Timestamp(candles["timestamp"].max())
    known = decision_rows[pd.to_datetime(decision_rows["timestamp"], utc=True) + step <= bar]
    return simulate(candles, funding, known, **options)
