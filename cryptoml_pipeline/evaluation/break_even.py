"""The break-even taker fee: the fee at which the strategy's OWN trades — same bars, sides and
quantities, same slippage and funding — re-priced have a net Sharpe of zero.

The net run's fills are replayed (:func:`trading.replay.replay_fills`) at a trial fee per fill and
the fee is bisected (:func:`trading.forecast.break_even_fee`); no decision is re-taken, so a
higher fee never changes which trades happen (the cost filter stays as it was at the real fee).

The fee sensitivity (:func:`fee_sensitivity`) uses the same re-pricing: the run's own fills at
``taker_fee x m`` per fill for each multiple ``m`` (at ``m = 1`` a taker run books exactly its own
equity), overall and per report period.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.evaluation.forecast import break_even_fee
from cryptoml_pipeline.evaluation.forecast_section import equity_summary
from cryptoml_pipeline.evaluation.metrics import daily_returns, sharpe_ratio
from cryptoml_pipeline.execution.backtest import BacktestResult, slippage_matrix
from cryptoml_pipeline.execution.market_grid import align_decisions, build_grid, funding_schedule
from cryptoml_pipeline.execution.replay import replay_fills
from cryptoml_pipeline.settings import CostConfig, SlippageConfig


def _repricer(
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    decisions: pd.DataFrame,
    net: BacktestResult,
    *,
    costs: CostConfig,
    slippage: SlippageConfig | None,
    timeframe: str,
    funding_interval_hours: int,
    compounding: bool = False,
) -> Callable[[float], BacktestResult]:
    """``fee -> the net run's own fills replayed at that fee per fill`` (slippage and funding
    kept); ``net`` must have fills. ``compounding``: each trade keeps the net run's notional as
    a fraction of the equity at its entry (a costlier path trades smaller, as the sizer would),
    instead of its quantity (the break-even search: the very same fills)."""
    assert net.fills is not None
    fills = net.fills
    fraction = None
    if compounding:
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = fills.quantity * fills.entry_raw / fills.entry_equity
        fraction = np.where(np.isfinite(fraction), fraction, 0.0)
    grid = build_grid(candles, timeframe)
    aligned = align_decisions(decisions, grid)
    slip = slippage_matrix(aligned, grid, costs, slippage, timeframe)
    schedule = funding_schedule(grid, funding, interval_hours=funding_interval_hours)

    def at(fee: float) -> BacktestResult:
        return replay_fills(
            grid,
            fills,
            initial_equity=net.initial_equity,
            entry_fee=fee,
            exit_fee=fee,
            slip=slip,
            schedule=schedule,
            equity_fraction=fraction,
        )

    return at


def break_even_taker_fee(
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    decisions: pd.DataFrame,
    net: BacktestResult,
    *,
    costs: CostConfig,
    slippage: SlippageConfig | None,
    timeframe: str,
    funding_interval_hours: int = 8,
) -> dict[str, Any]:
    """``{"break_even_taker_fee", "status", "sharpe_at_zero_fee", ...}`` for the net run's
    trades (``net`` must come from :func:`trading.backtest.simulate` on these inputs)."""
    if net.fills is None or len(net.fills) == 0:
        return {"break_even_taker_fee": None, "status": "no trades", "current_fee": costs.taker_fee}
    replay = _repricer(
        candles,
        funding,
        decisions,
        net,
        costs=costs,
        slippage=slippage,
        timeframe=timeframe,
        funding_interval_hours=funding_interval_hours,
    )

    def sharpe_at(fee: float) -> float | None:
        res = replay(fee)
        if (res.equity <= 0).any():  # ruined: returns on a non-positive equity mean nothing
            return -1e9
        daily = daily_returns(res.equity, initial_equity=net.initial_equity)
        return sharpe_ratio(daily.to_numpy())

    out = break_even_fee(sharpe_at, current_fee=costs.taker_fee)
    out["method"] = "same fills re-priced per fill (slippage and funding kept), bisection"
    return out


def _row(multiple: float, fee: float, equity: pd.Series, before: float, n_trades: int) -> dict:
    summary = equity_summary(equity, before)
    return {
        "fee_multiple": float(multiple),
        "taker_fee": float(fee),
        "sharpe": summary["sharpe"],
        "total_return": summary["total_return"],
        "n_trades": int(n_trades),
    }


def fee_sensitivity(
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    decisions: pd.DataFrame,
    net: BacktestResult,
    *,
    costs: CostConfig,
    slippage: SlippageConfig | None,
    timeframe: str,
    periods: Sequence[tuple[str, pd.Timestamp, pd.Timestamp]] = (),
    funding_interval_hours: int = 8,
) -> dict[str, Any]:
    """The net run's own decisions re-priced at ``costs.taker_fee x m`` per fill for each
    ``m`` of ``costs.fee_multiples``: ``{"overall": rows, "periods": {name: rows}}``, each row
    ``{fee_multiple, taker_fee, sharpe, total_return, n_trades}``; each trade keeps its notional
    as a fraction of the equity at its entry, so a costlier path trades smaller as the sizer
    would, never on more notional than its equity carries (re-pricing fixed quantities let a
    costlier path run through zero equity, where a Sharpe means nothing) (Sharpe and total return as
    :func:`forecast_section.equity_summary` measures a period: daily returns, the period's first
    day against the equity before it; a period's trades are those entered in it). The same
    trades at every multiple: ``n_trades`` never changes, a higher fee only costs more."""
    fees = [(float(m), float(m) * costs.taker_fee) for m in costs.fee_multiples]
    if net.fills is None or len(net.fills) == 0:
        none = pd.DatetimeIndex([], tz="UTC")
        runs = [(m, fee, net.equity, none) for m, fee in fees]
    else:
        replay = _repricer(
            candles,
            funding,
            decisions,
            net,
            costs=costs,
            slippage=slippage,
            timeframe=timeframe,
            funding_interval_hours=funding_interval_hours,
            compounding=True,
        )
        runs = []
        for m, fee in fees:
            res = replay(fee)
            runs.append((m, fee, res.equity, pd.DatetimeIndex(res.trades["entry_time"])))
    overall = [_row(m, fee, eq, net.initial_equity, len(entries)) for m, fee, eq, entries in runs]
    by_period: dict[str, list[dict[str, Any]]] = {}
    for name, lo, hi in periods:
        rows = []
        for m, fee, eq, entries in runs:
            inside = eq[(eq.index >= lo) & (eq.index < hi)]
            earlier = eq[eq.index < lo]
            before = float(earlier.iloc[-1]) if len(earlier) else net.initial_equity
            n = int(((entries >= lo) & (entries < hi)).sum())
            rows.append(_row(m, fee, inside, before, n))
        by_period[name] = rows
    return {"overall": overall, "periods": by_period}
