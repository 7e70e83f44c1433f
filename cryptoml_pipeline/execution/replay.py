"""Replay mode: repeat given round trips (symbol, side, entry bar, exit bar, size) on the market
grid through the simulator's execution and cost model, with no decision logic in between.

Used by the controls: the gross run replays the net run's own fills without fees, slippage and
funding (so gross and net compare the SAME trades), and the random same-turnover control
replays randomly placed copies of the strategy's trades with all costs on.

Execution, as in :mod:`cryptoml_pipeline.execution.backtest`: every entry fills at the open of its
entry bar at ``raw * (1 + direction * slip)`` (``raw`` = the open unless given), pays
``entry_fee * quantity * price``; an exit fills in its bar's phase (open, intrabar, close) at
``raw * (1 - direction * slip)`` (``raw`` = the open / the close of the exit bar unless given)
and pays ``exit_fee``. Funding follows the simulator's rules: settlements at a bar's open are
charged on positions carried into the bar (an exit at that open still pays), settlements
strictly inside a bar on the positions open after the open's fills. Within a bar: funding at
the open, exits at the open, entries (sized on the equity marked at that open, after those
exits), funding inside the bar, intrabar exits, close exits, the mark at the close. A size is a
quantity (base units) or, where the quantity is NaN, a fraction of that equity (notional at the
raw entry price). No stops, no liquidation, no limits: the fills are taken as given.

The bar loop is :func:`kernel.replay_loop`: the simulator's own ledger helpers (fills, fees,
closing, funding, the mark), so a replay books exactly as a simulation does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.execution import kernel as K
from cryptoml_pipeline.execution.backtest import (
    BacktestResult,
    Fills,
    _check_funding,
    settlements,
    trades_frame,
)
from cryptoml_pipeline.execution.market_grid import FundingSchedule, MarketGrid, build_grid

OVERLAP = K.OVERLAP  # error code: a trade entered on a symbol that already holds a position


def replay_fills(
    grid: MarketGrid,
    fills: Fills,
    *,
    initial_equity: float,
    entry_fee: float = 0.0,
    exit_fee: float = 0.0,
    slip: np.ndarray | None = None,
    schedule: FundingSchedule | None = None,
    equity_fraction: np.ndarray | None = None,
    fraction_of: Literal["equity", "initial"] = "equity",
) -> BacktestResult:
    """Replay ``fills`` on ``grid`` (see module docstring).

    ``slip`` ``[n_symbols, n_bars]`` (None = no slippage); ``schedule`` None = no funding;
    ``equity_fraction`` (per trade) sizes each entry's notional as that fraction of the equity
    marked at its open (``fraction_of="equity"``) or of the initial equity (``"initial"``)
    instead of ``fills.quantity``; ``fills.entry_raw``/``exit_raw`` NaN = the bar's open/close.
    """
    n_sym, n_bars = grid.open.shape
    order = np.lexsort((fills.symbol, fills.entry_bar))
    if len(fills) and (fills.entry_bar.min() < 0 or fills.exit_bar.max() >= n_bars):
        raise InputError("fills name bars outside the market grid")
    early = fills.exit_bar < fills.entry_bar + (fills.phase == K.AT_OPEN)
    if early.any():  # an exit at the open of its entry bar comes before the entry
        raise InputError("fills exit before they enter")
    if schedule is None:
        settle_bar, n_open, rates = np.zeros(0, dtype=np.int64), 0, np.zeros((0, n_sym))
        times = pd.DatetimeIndex([], tz="UTC")
    else:
        settle_bar, n_open, rates, times = settlements(schedule)
    slip = np.zeros((n_sym, 1)) if slip is None else slip  # [n_symbols, 1]: no slippage
    if equity_fraction is None:
        qty, frac = fills.quantity[order], np.full(len(fills), np.nan)
    else:
        qty, frac = np.full(len(fills), np.nan), np.asarray(equity_fraction, np.float64)[order]
    pos, acct = K.new_book(n_sym, float(initial_equity))
    records = K.new_records(len(fills))
    equity, exposure = np.empty(n_bars), np.empty(n_bars)
    error = np.zeros(3, dtype=np.int64)
    floats = [np.ascontiguousarray(x, dtype=np.float64) for x in (qty, frac)]
    raw = [
        np.ascontiguousarray(x[order], dtype=np.float64) for x in (fills.entry_raw, fills.exit_raw)
    ]
    K.replay_loop(
        (grid.open, grid.high, grid.low, grid.close, grid.has_bar, grid.last_bar),
        (settle_bar, rates),
        n_open,
        (fills.symbol[order], fills.direction[order], fills.entry_bar[order], *floats, raw[0]),
        (fills.exit_bar[order], fills.phase[order], fills.exit_reason[order], raw[1]),
        (
            np.ascontiguousarray(slip, dtype=np.float64),
            float(entry_fee),
            float(exit_fee),
            float(initial_equity) if fraction_of == "initial" else np.nan,
        ),
        (pos, acct, records, np.full(n_sym, np.nan), np.full(n_sym, -1, dtype=np.int64)),
        (equity, exposure, error),
    )
    _check_funding(error, grid, times, "a replayed position")
    if error[0] == OVERLAP:
        raise InputError(f"replayed trades overlap on {grid.symbols[int(error[1])]}")
    ordered = Fills(**{name: getattr(fills, name)[order] for name in Fills.__dataclass_fields__})
    ordered = replace(ordered, quantity=records[K.T_QTY].copy())
    index = pd.DatetimeIndex(grid.timestamps, name="timestamp")
    return BacktestResult(
        equity=pd.Series(equity, index=index, name="equity"),
        trades=trades_frame(records.T, grid),
        fees_paid=float(acct[K.A_FEES]),
        funding_paid=float(acct[K.A_FUNDING]),
        initial_equity=float(initial_equity),
        exposure=pd.Series(exposure, index=index, name="exposure"),
        traded_notional=float(acct[K.A_NOTIONAL]),
        bars_in_market=int(acct[K.A_IN_MARKET]),
        fills=ordered,
        slippage_paid=float(acct[K.A_SLIPPAGE]),
    )


def replay_gross(candles: pd.DataFrame, net: BacktestResult, *, timeframe: str) -> BacktestResult:
    """The net run's own fills (same bars, sides, quantities, raw prices) with no fees, no
    slippage and no funding: the gross run of the same trades.

    ``candles`` must be the ones the net run was simulated on (checked on the entry times).
    """
    if net.fills is None:
        raise InputError("the net result carries no fills to replay (not a kernel run)")
    grid = build_grid(candles, timeframe)
    fills = net.fills
    if len(fills) and (fills.exit_bar.max() >= len(grid.timestamps)):
        raise InputError("the net run's fills do not belong to these candles")
    entry_ns = np.sort(grid.timestamps.asi8[fills.entry_bar])
    if not np.array_equal(entry_ns, np.sort(pd.DatetimeIndex(net.trades["entry_time"]).asi8)):
        raise InputError("the net run's fills do not belong to these candles")
    return replay_fills(grid, fills, initial_equity=net.initial_equity)
