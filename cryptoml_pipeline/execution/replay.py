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
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError, MissingFundingError
from cryptoml_pipeline.execution import kernel as K
from cryptoml_pipeline.execution.backtest import (
    EXIT_REASONS,
    BacktestResult,
    Fills,
    _labels,
    _settlement_pointers,
)
from cryptoml_pipeline.execution.book import TRADE_COLUMNS
from cryptoml_pipeline.execution.decisions import ns_index
from cryptoml_pipeline.execution.market_grid import FundingSchedule, MarketGrid, build_grid

OVERLAP = 2  # error code: a trade entered on a symbol that already holds a position


@K._jit
def _mark(cash, open_trade, direction, qty, entry_px, prices):
    eq = cash
    for s in range(open_trade.shape[0]):
        j = open_trade[s]
        if j >= 0:
            eq += direction[j] * qty[j] * (prices[s] - entry_px[j])
    return eq


@K._jit
def _settle(k, rates, open_trade, direction, qty, prices, fund_t, totals, error):
    """Funding of settlement ``k`` on the open positions; returns the total paid (sets
    ``error`` on a missing rate)."""
    paid = 0.0
    for s in range(open_trade.shape[0]):
        j = open_trade[s]
        if j >= 0:
            rate = rates[k, s]
            if rate != rate:
                error[0], error[1], error[2] = K.MISSING_FUNDING, s, k
                return paid
            pay = direction[j] * qty[j] * prices[s] * rate
            fund_t[j] += pay
            totals[1] += pay
            paid += pay
    return paid


@K._jit
def _exit(j, s, raw, slip, exit_fee, direction, qty, entry_px, exit_px, fee_t, totals):
    """Close trade ``j``; returns the cash change (price P&L - exit fee; funding is separate)."""
    d = direction[j]
    px = raw * (1.0 - d * slip)
    fee = exit_fee * qty[j] * px
    exit_px[j] = px
    fee_t[j] += fee
    totals[0] += fee
    totals[2] += qty[j] * px
    totals[3] += qty[j] * raw * slip
    return d * qty[j] * (px - entry_px[j]) - fee


@K._jit
def replay_kernel(
    open_,
    close,
    has_bar,
    slip,
    settle_open_ptr,
    settle_inside_ptr,
    rates,
    t_sym,
    t_dir,
    t_entry_bar,
    t_exit_bar,
    t_phase,
    t_qty,
    t_frac,
    t_entry_raw,
    t_exit_raw,
    entry_fee,
    exit_fee,
    initial_cash,
    fraction_of_initial,
):
    """Replay trades sorted by entry bar. Returns (equity, exposure, per-trade [qty, entry
    price, exit price, fees, funding] as a [5, n] array, totals[5], error).

    totals = (fees, funding, traded notional, slippage, bars in market); error = (code, symbol,
    index): code 1 = a held position met a settlement without a rate (index = settlement),
    code 2 = a trade entered on a symbol already in a position (index = trade).
    """
    n_sym, n_bars = open_.shape
    n = t_sym.shape[0]
    cash = initial_cash
    open_trade = np.full(n_sym, -1, dtype=np.int64)
    out = np.zeros((5, n))
    qty, entry_px, exit_px, fee_t, fund_t = out[0], out[1], out[2], out[3], out[4]
    prices = np.full(n_sym, np.nan)
    equity_out = np.empty(n_bars)
    exposure_out = np.empty(n_bars)
    totals = np.zeros(5)
    error = np.zeros(3, dtype=np.int64)
    nxt = 0
    for i in range(n_bars):
        for s in range(n_sym):
            if has_bar[s, i]:
                prices[s] = open_[s, i]
        for k in range(settle_open_ptr[i], settle_open_ptr[i + 1]):
            cash -= _settle(k, rates, open_trade, t_dir, qty, prices, fund_t, totals, error)
            if error[0] != 0:
                return equity_out, exposure_out, out, totals, error
        # exits at the open
        for s in range(n_sym):
            j = open_trade[s]
            if j >= 0 and t_exit_bar[j] == i and t_phase[j] == K.AT_OPEN:
                raw = t_exit_raw[j] if t_exit_raw[j] == t_exit_raw[j] else open_[s, i]
                cash += _exit(
                    j, s, raw, slip[s, i], exit_fee, t_dir, qty, entry_px, exit_px, fee_t, totals
                )
                open_trade[s] = -1
        # entries at the open, sized on the equity marked there
        if nxt < n and t_entry_bar[nxt] == i:
            eq_now = _mark(cash, open_trade, t_dir, qty, entry_px, prices)
            while nxt < n and t_entry_bar[nxt] == i:
                j = nxt
                nxt += 1
                s = t_sym[j]
                if open_trade[s] >= 0:
                    error[0], error[1], error[2] = OVERLAP, s, j
                    return equity_out, exposure_out, out, totals, error
                raw = t_entry_raw[j] if t_entry_raw[j] == t_entry_raw[j] else open_[s, i]
                base = initial_cash if fraction_of_initial else eq_now
                q = t_qty[j] if t_qty[j] == t_qty[j] else t_frac[j] * base / raw
                px = raw * (1.0 + t_dir[j] * slip[s, i])
                fee = entry_fee * q * px
                cash -= fee
                qty[j], entry_px[j], fee_t[j] = q, px, fee
                totals[0] += fee
                totals[2] += q * px
                totals[3] += q * raw * slip[s, i]
                open_trade[s] = j
        for k in range(settle_inside_ptr[i], settle_inside_ptr[i + 1]):
            cash -= _settle(k, rates, open_trade, t_dir, qty, prices, fund_t, totals, error)
            if error[0] != 0:
                return equity_out, exposure_out, out, totals, error
        # intrabar exits, then the close: close exits and the mark
        for phase in (K.INTRABAR, K.AT_CLOSE):
            if phase == K.AT_CLOSE:
                for s in range(n_sym):
                    if has_bar[s, i]:
                        prices[s] = close[s, i]
            for s in range(n_sym):
                j = open_trade[s]
                if j >= 0 and t_exit_bar[j] == i and t_phase[j] == phase:
                    raw = t_exit_raw[j] if t_exit_raw[j] == t_exit_raw[j] else close[s, i]
                    cash += _exit(
                        j,
                        s,
                        raw,
                        slip[s, i],
                        exit_fee,
                        t_dir,
                        qty,
                        entry_px,
                        exit_px,
                        fee_t,
                        totals,
                    )
                    open_trade[s] = -1
        eq = _mark(cash, open_trade, t_dir, qty, entry_px, prices)
        gross = 0.0
        for s in range(n_sym):
            j = open_trade[s]
            if j >= 0:
                gross += qty[j] * prices[s]
        if gross > 0.0:
            totals[4] += 1.0
        equity_out[i] = eq
        exposure_out[i] = gross / eq if eq > 0.0 else np.nan
    return equity_out, exposure_out, out, totals, error


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
    if schedule is None:
        ptr_open = ptr_inside = np.zeros(n_bars + 1, dtype=np.int64)
        rates = np.zeros((0, n_sym))
        opens = inside = np.zeros(0, dtype=np.int64)
        times = pd.DatetimeIndex([], tz="UTC")
    else:
        ptr_open, ptr_inside, rates_open, rates_inside, opens, inside, times = _settlement_pointers(
            schedule, n_bars
        )
        rates = np.ascontiguousarray(np.vstack([rates_open, rates_inside]))
        ptr_inside = ptr_inside + len(opens)
    slip = np.zeros(grid.open.shape) if slip is None else slip
    if equity_fraction is None:
        qty, frac = fills.quantity[order], np.full(len(fills), np.nan)
    else:
        qty, frac = np.full(len(fills), np.nan), np.asarray(equity_fraction, np.float64)[order]
    equity, exposure, per_trade, totals, error = replay_kernel(
        grid.open,
        grid.close,
        grid.has_bar,
        np.ascontiguousarray(slip, dtype=np.float64),
        ptr_open.astype(np.int64),
        ptr_inside.astype(np.int64),
        rates,
        fills.symbol[order],
        fills.direction[order],
        fills.entry_bar[order],
        fills.exit_bar[order],
        fills.phase[order],
        np.ascontiguousarray(qty, dtype=np.float64),
        np.ascontiguousarray(frac, dtype=np.float64),
        np.ascontiguousarray(fills.entry_raw[order], dtype=np.float64),
        np.ascontiguousarray(fills.exit_raw[order], dtype=np.float64),
        float(entry_fee),
        float(exit_fee),
        float(initial_equity),
        fraction_of == "initial",
    )
    if error[0] == K.MISSING_FUNDING:
        k = int(error[2])
        when = times[opens[k]] if k < len(opens) else times[inside[k - len(opens)]]
        raise MissingFundingError(
            f"no funding rate for {grid.symbols[int(error[1])]} at {when.isoformat()} "
            "while a replayed position was held"
        )
    if error[0] == OVERLAP:
        raise InputError(f"replayed trades overlap on {grid.symbols[int(error[1])]}")
    ordered = Fills(**{name: getattr(fills, name)[order] for name in Fills.__dataclass_fields__})
    ordered = replace(ordered, quantity=per_trade[0].copy())
    index = pd.DatetimeIndex(grid.timestamps, name="timestamp")
    return BacktestResult(
        equity=pd.Series(equity, index=index, name="equity"),
        trades=_trades(ordered, per_trade, grid),
        fees_paid=float(totals[0]),
        funding_paid=float(totals[1]),
        initial_equity=float(initial_equity),
        exposure=pd.Series(exposure, index=index, name="exposure"),
        traded_notional=float(totals[2]),
        bars_in_market=int(totals[4]),
        fills=ordered,
        slippage_paid=float(totals[3]),
    )


def _trades(fills: Fills, per_trade: np.ndarray, grid: MarketGrid) -> pd.DataFrame:
    """The replayed round trips as a trades frame (``book.TRADE_COLUMNS`` + ``gross_pnl``)."""
    qty, entry_px, exit_px, fees, funding = per_trade
    d = fills.direction.astype(np.float64)
    gross = d * qty * (exit_px - entry_px)
    grid_ns = grid.timestamps.asi8
    columns = {
        "symbol": _labels(grid.symbols, fills.symbol),
        "side": _labels(["short", "long"], (fills.direction > 0).astype(np.int64)),
        "entry_time": ns_index(grid_ns[fills.entry_bar]),
        "entry_price": entry_px,
        "exit_time": ns_index(grid_ns[fills.exit_bar]),
        "exit_price": exit_px,
        "quantity": qty,
        "notional": qty * entry_px,
        "risk_amount": np.full(len(qty), np.nan),
        "pnl": gross - fees - funding,
        "fees": fees,
        "funding": funding,
        "exit_reason": _labels(EXIT_REASONS, fills.exit_reason),
        "gross_pnl": gross,
    }
    return pd.DataFrame({name: columns[name] for name in (*TRADE_COLUMNS, "gross_pnl")})


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
