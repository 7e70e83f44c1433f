"""Bar-by-bar backtest of a decisions frame on USDT-M perpetuals: the simulated market's rules.

Instrument and book
    USDT-M perpetual futures, long and short, ONE shared equity (cash) across all symbols. No
    margin or liquidation model (gross notional is capped at ``max_leverage * equity`` instead).

Timing (see :mod:`cryptoml_pipeline.timing`)
    A decision row stamped ``t`` (candle open time) is known at ``t + one bar`` and FILLS AT THE
    OPEN OF BAR ``t + one bar``, never on the bar whose close produced it. A decision whose next
    bar does not exist for its symbol (end of data, gap) is dropped.

Events inside one bar ``i`` (grid time ``T``), in this order
    1. Funding settled at the instant ``T`` (when ``T`` is a settlement time) on the positions
       carried INTO the bar (opened before ``T``).
    2. At the open: stops gapped through by the open exit at the open (reason ``stop``); positions
       at the end of their hold period are reviewed (below); then flat symbols enter on an active
       decision, in alphabetical symbol order (sizing sees the equity marked at this open, after
       the exits, with the latest known price of every symbol).
    3. Funding of settlements strictly INSIDE the bar (only for bars longer than, or not dividing,
       the funding interval, e.g. 1d): charged on the positions open after step 2, priced at the
       bar's open (an approximation: the ordering against an intrabar stop is unknown).
    4. Intrabar stops: ``low <= stop`` (long) / ``high >= stop`` (short) fill at the stop price
       (at the open if the open is already beyond it). Checked on every bar from the entry bar on.
    5. At the close: a symbol's last bar closes its open position at the close (reason ``end``);
       equity is marked to market (cash + unrealised P&L at each symbol's latest close).

Entry (symbol flat, decision active)
    Active decision: ``|signal| >= 1`` and ``confidence >= risk.confidence_threshold`` and
    ``confidence > 0`` (finite). Risk = spec MLPositionSizer
    ``equity * base_risk * |signal|/2 * confidence * min(1, volatility_reference / volatility)``
    (annualised volatility) capped at ``max_risk_per_trade * equity``; stop distance =
    ``atr_stop_multiple * atr_pct`` of the decision row; notional = risk / stop distance; then
    risk and notional are scaled down together so that open risk <= ``portfolio_heat * equity``
    and gross notional <= ``max_leverage * equity``. Skipped on NaN input, a stop distance outside
    (0, 1), or a notional that scales to <= 1e-6 of equity. Open risk = sum of the open
    positions' risk at entry; gross notional = sum of quantity * latest price.
    The stop sits at ``entry_fill * (1 -/+ stop_distance)`` and never moves.

Holding
    The hold period ends at the open of the symbol's bar ``entry_bar + min_hold_bars``. There the
    decision filling at that open (the row just before) is read: active and same direction ->
    hold ``min_hold_bars`` more bars (no fill, no fee, size and stop unchanged); active and
    opposite -> exit (reason ``flip``) and enter the other side at the same open if it passes the
    entry rules; otherwise exit (reason ``time``). Signals between those reviews are ignored
    while in a position. Positions still open on a symbol's last bar exit at its close
    (reason ``end``).

Costs (always on)
    Every fill pays ``costs.taker_fee * quantity * fill_price`` and ``costs.slippage_bps``
    against the trader (buy at ``raw * (1 + bps/1e4)``, sell at ``raw * (1 - bps/1e4)``), stops
    included. Funding: settlements every ``funding_interval_hours`` (8h) aligned to 00:00 UTC.
    A position held at settlement ``s`` pays ``quantity * open_price_of_the_bar_at_s * rate``
    if long and receives it if short. "Held at s" = opened BEFORE ``s`` and not closed before
    ``s``: a position filled at the open of bar ``s`` pays nothing for ``s``; a position exited
    at the open of bar ``s`` (planned exit, flip, gapped stop) pays for ``s``. An open fill is
    the first trade at or after ``s``, which is how the exchange counts it. A held position
    meeting a settlement with no rate in the funding frame raises :class:`MissingFundingError`
    naming the symbol and timestamp.

Outputs
    Equity is indexed by the union of all symbols' bar timestamps (mark at each bar's close).
    Trade ``pnl`` is net of fees and funding; ``entry_time``/``exit_time`` are the open times of
    the bars in which the fills happened (``exit_reason`` says where: stop/time/flip/end).
    ``exposure`` = gross notional / equity at each bar close (an addition to the contract).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.settings import CostConfig, RiskConfig
from cryptoml_pipeline.trading.book import Ledger, stop_fill_raw
from cryptoml_pipeline.trading.decisions import validate_decisions
from cryptoml_pipeline.trading.market_grid import (
    FundingSchedule,
    MarketGrid,
    align_decisions,
    build_grid,
    funding_schedule,
)
from cryptoml_pipeline.trading.sizing import size_entry

logger = logging.getLogger(__name__)


@dataclass
class BacktestResult:
    equity: pd.Series  # indexed by bar timestamp, mark-to-market at bar close
    trades: pd.DataFrame  # one row per round trip, columns book.TRADE_COLUMNS
    fees_paid: float  # currency
    funding_paid: float  # currency, net (negative = received)
    initial_equity: float
    exposure: pd.Series | None = None  # gross notional / equity at each bar close


def settlements_by_bar(
    schedule: FundingSchedule, n_bars: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Per grid bar: indices of settlements at its open instant, and strictly inside it."""
    at_open: list[list[int]] = [[] for _ in range(n_bars)]
    inside: list[list[int]] = [[] for _ in range(n_bars)]
    for k, (i, exact) in enumerate(
        zip(schedule.bar_index.tolist(), schedule.at_open.tolist(), strict=True)
    ):
        (at_open if exact else inside)[i].append(k)
    return at_open, inside


def make_result(
    book: Ledger, grid: MarketGrid, equity: np.ndarray, exposure: np.ndarray
) -> BacktestResult:
    index = pd.DatetimeIndex(grid.timestamps, name="timestamp")
    return BacktestResult(
        equity=pd.Series(equity, index=index, name="equity"),
        trades=book.trades_frame(),
        fees_paid=book.fees_paid,
        funding_paid=book.funding_paid,
        initial_equity=book.initial_equity,
        exposure=pd.Series(exposure, index=index, name="exposure"),
    )


def simulate(
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    decisions: pd.DataFrame,
    *,
    costs: CostConfig,
    risk: RiskConfig,
    min_hold_bars: int,
    timeframe: str,
    funding_interval_hours: int = 8,
) -> BacktestResult:
    """Simulate ``decisions`` on ``candles``: fees, slippage, funding, sizing, risk limits."""
    if min_hold_bars < 1:
        raise InputError(f"min_hold_bars must be >= 1, got {min_hold_bars}")
    grid = build_grid(candles, timeframe)
    aligned = align_decisions(validate_decisions(decisions), grid)
    schedule = funding_schedule(grid, funding, interval_hours=funding_interval_hours)
    book = Ledger(grid.symbols, costs)
    equity, exposure = _run(grid, aligned, schedule, book, risk=risk, min_hold_bars=min_hold_bars)
    result = make_result(book, grid, equity, exposure)
    logger.info(
        "simulated %d bars x %d symbols: %d trades, final equity %.2f",
        len(grid.timestamps),
        len(grid.symbols),
        len(result.trades),
        float(equity[-1]),
    )
    return result


def _run(
    grid: MarketGrid,
    aligned: dict[str, np.ndarray],
    schedule: FundingSchedule,
    book: Ledger,
    *,
    risk: RiskConfig,
    min_hold_bars: int,
) -> tuple[np.ndarray, np.ndarray]:
    n_sym, n_bars = grid.has_bar.shape
    syms = range(n_sym)
    times = list(grid.timestamps)
    opens, highs, lows, closes = (a.tolist() for a in (grid.open, grid.high, grid.low, grid.close))
    has_bar, last_bar = grid.has_bar.tolist(), grid.last_bar.tolist()
    sig, conf = aligned["signal"].tolist(), aligned["confidence"].tolist()
    vol, atr = aligned["volatility"].tolist(), aligned["atr_pct"].tolist()
    rates_by_settlement = schedule.rates.T.tolist()
    settle_times = list(schedule.times)
    settle_open, settle_inside = settlements_by_bar(schedule, n_bars)
    threshold = risk.confidence_threshold

    def active_direction(s: int, i: int) -> int:
        c = conf[s][i]
        if sig[s][i] == 0 or not c >= threshold or not c > 0:  # NaN confidence -> inactive
            return 0
        return 1 if sig[s][i] > 0 else -1

    positions = book.positions
    prices = [float("nan")] * n_sym  # latest known price per symbol
    ordinal = [0] * n_sym  # bars seen per symbol
    equity_out = np.empty(n_bars)
    exposure_out = np.empty(n_bars)
    for i in range(n_bars):
        t = times[i]
        for s in syms:
            if has_bar[s][i]:
                ordinal[s] += 1
                prices[s] = opens[s][i]
        # 1. settlement at this open instant: positions carried into the bar
        for k in settle_open[i]:
            book.settle_all(time=settle_times[k], rates=rates_by_settlement[k], prices=prices)
        # 2. the open: gapped stops, hold reviews, then entries
        for s in syms:
            pos = positions[s]
            if pos is None or not has_bar[s][i]:
                continue
            o = opens[s][i]
            if (o <= pos.stop) if pos.direction > 0 else (o >= pos.stop):
                book.close(s, raw_price=o, time=t, reason="stop")
            elif ordinal[s] >= pos.planned_exit:
                direction = active_direction(s, i)
                if direction == pos.direction:
                    pos.planned_exit = ordinal[s] + min_hold_bars
                else:
                    book.close(s, raw_price=o, time=t, reason="flip" if direction else "time")
        entering = [
            s
            for s in syms
            if has_bar[s][i] and positions[s] is None and active_direction(s, i) != 0
        ]
        if entering:
            equity_now = book.equity(prices)
            open_risk, gross = book.open_risk(), book.gross_notional(prices)
            for s in entering:
                size = size_entry(
                    equity=equity_now,
                    signal=sig[s][i],
                    confidence=conf[s][i],
                    volatility=vol[s][i],
                    atr_pct=atr[s][i],
                    open_risk=open_risk,
                    open_notional=gross,
                    risk=risk,
                )
                if size is None:
                    continue
                book.open(
                    s,
                    direction=active_direction(s, i),
                    raw_price=opens[s][i],
                    notional=size.notional,
                    time=t,
                    ordinal=ordinal[s],
                    hold_bars=min_hold_bars,
                    stop_distance=size.stop_distance,
                    risk_amount=size.risk_amount,
                )
                open_risk += size.risk_amount
                gross += size.notional
        # 3. settlements strictly inside the bar
        for k in settle_inside[i]:
            book.settle_all(time=settle_times[k], rates=rates_by_settlement[k], prices=prices)
        # 4. intrabar stops, 5. end of data and mark to market at the close
        for s in syms:
            if not has_bar[s][i]:
                continue
            pos = positions[s]
            if pos is not None:
                raw = stop_fill_raw(pos.direction, opens[s][i], lows[s][i], highs[s][i], pos.stop)
                if raw == raw:
                    book.close(s, raw_price=raw, time=t, reason="stop")
            prices[s] = closes[s][i]
            if i == last_bar[s] and positions[s] is not None:
                book.close(s, raw_price=closes[s][i], time=t, reason="end")
        equity_out[i] = book.equity(prices)
        exposure_out[i] = (
            book.gross_notional(prices) / equity_out[i] if equity_out[i] > 0 else np.nan
        )
    return equity_out, exposure_out
