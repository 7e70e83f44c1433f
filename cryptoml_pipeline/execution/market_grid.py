"""Candles, decisions and funding laid out on one bar grid (the union of all symbols' bar times).

Arrays are ``[n_symbols, n_bars]`` with NaN where a symbol has no bar. Funding settlements are the
instants each symbol's funding rows hold inside the grid's span (any interval, per symbol,
changing over time: :mod:`market.settlements`), each attached to the grid bar that contains it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.execution.decisions import (
    decision_arrays,
    first_duplicate,
    ns_index,
    place_rows,
    require_columns,
    scatter_into,
    sort_keys,
    stamp,
    symbol_codes,
    utc_ns,
)
from cryptoml_pipeline.execution.kernel import _jit
from cryptoml_pipeline.market.settlements import missing_settlements
from cryptoml_pipeline.timing import timeframe_to_timedelta

logger = logging.getLogger(__name__)

OHLC = ("open", "high", "low", "close")


@dataclass(frozen=True)
class MarketGrid:
    timestamps: pd.DatetimeIndex  # union of bar open times, datetime64[ns, UTC]
    symbols: tuple[str, ...]  # sorted
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    has_bar: np.ndarray  # bool [n_symbols, n_bars]
    last_bar: np.ndarray  # int [n_symbols], grid index of each symbol's last bar
    bar: pd.Timedelta


@dataclass(frozen=True)
class FundingSchedule:
    times: pd.DatetimeIndex  # the union of the symbols' settlement instants inside the grid span
    bar_index: np.ndarray  # grid index of the bar containing each settlement
    at_open: np.ndarray  # bool: the settlement is that bar's open instant
    # [n_symbols, n_settlements]: the rate; 0 where the instant is not that symbol's settlement;
    # NaN where that symbol's settlement is missing from the data
    rates: np.ndarray


@_jit
def _positive_finite(values):
    """Whether every value is finite and > 0 (NaN fails), in one pass."""
    ok = True
    for k in range(values.shape[0]):
        v = values[k]
        ok &= (v > 0.0) & (v < np.inf)
    return ok


@_jit
def _scan_bars(sym, ts, bar_ns, n_symbols):
    """On rows sorted by (symbol, time): the first row whose step from the row before (same
    symbol) is not a whole number of bars (-1: none), and the first row of each symbol."""
    starts = np.zeros(n_symbols, dtype=np.int64)
    off, m = -1, 1
    for k in range(1, sym.shape[0]):
        if sym[k] != sym[k - 1]:
            starts[m] = k
            m += 1
        elif off < 0:
            step = ts[k] - ts[k - 1]
            if step != bar_ns and step % bar_ns != 0:
                off = k
    return off, starts


def build_grid(candles: pd.DataFrame, timeframe: str) -> MarketGrid:
    """Validate long candles and pivot them onto the union bar grid."""
    require_columns(candles, ["timestamp", "symbol", *OHLC], "candles")
    if candles.empty:
        raise InputError("candles are empty: nothing to simulate")
    ts = utc_ns(candles["timestamp"])
    sym, symbols = symbol_codes(candles["symbol"])
    order, maybe_dup = sort_keys(sym, ts)
    if order is not None:
        ts, sym = ts[order], sym[order]
    k = first_duplicate(sym, ts) if maybe_dup else None
    if k is not None:
        raise DataValidationError(f"duplicate candle for {symbols[sym[k]]} at {stamp(ts[k])}")
    values = [candles[name].to_numpy(np.float64) for name in OHLC]
    if order is not None:
        values = [v[order] for v in values]
    if not all(_positive_finite(v) for v in values):
        bad = np.zeros(len(ts), dtype=bool)
        for v in values:
            bad |= ~np.isfinite(v) | (v <= 0)
        k = int(np.argmax(bad))
        raise DataValidationError(
            f"non-finite or non-positive price: {symbols[sym[k]]} at {stamp(ts[k])}"
        )
    bar = timeframe_to_timedelta(timeframe)
    k, starts = _scan_bars(sym, ts, int(bar.value), len(symbols))
    if k >= 0:
        raise InputError(
            f"candles of {symbols[sym[k]]} are not {timeframe} bars (step ending {stamp(ts[k])})"
        )
    ends = np.append(starts[1:], len(ts))
    first = ts[starts[0] : ends[0]]
    if all(
        e - s == len(first) and np.array_equal(ts[s:e], first)
        for s, e in zip(starts[1:], ends[1:], strict=True)
    ):
        # every symbol has the same bars (the usual case): the sorted rows ARE the grid
        grid_ns = first
        shape = (len(symbols), len(grid_ns))
        arrays = {
            name: np.ascontiguousarray(v).reshape(shape)
            for name, v in zip(OHLC, values, strict=True)
        }
        has_bar = np.ones(shape, dtype=bool)
        last_bar = np.full(len(symbols), len(grid_ns) - 1, dtype=np.int64)
    else:
        grid_ns = np.unique(ts)
        bar_pos = np.searchsorted(grid_ns, ts)
        shape = (len(symbols), len(grid_ns))
        flat = sym * len(grid_ns) + bar_pos
        arrays = {}
        for name, v in zip(OHLC, values, strict=True):
            arr = np.full(shape, np.nan)
            arr.ravel()[flat] = v
            arrays[name] = arr
        has_bar = np.zeros(shape, dtype=bool)
        has_bar.ravel()[flat] = True
        last_bar = bar_pos[ends - 1].astype(np.int64)
    return MarketGrid(
        timestamps=ns_index(grid_ns),
        symbols=symbols,
        has_bar=has_bar,
        last_bar=last_bar,
        bar=bar,
        **arrays,
    )


def _rows(symbols: tuple[str, ...], names: tuple[str, ...]) -> np.ndarray:
    """The grid row of each of ``names`` (-1: not on the grid)."""
    row_of = {name: k for k, name in enumerate(symbols)}
    return np.array([row_of.get(name, -1) for name in names], dtype=np.int64)


def align_decisions(decisions: pd.DataFrame, grid: MarketGrid) -> dict[str, np.ndarray]:
    """Validate decisions and place them at the grid bar where they FILL: the open of ``t + bar``.

    Validation is :func:`decisions.validate_decisions`'s (same errors). A decision whose next bar
    does not exist for its symbol (end of data, gap) is dropped. Returns signal/confidence/
    volatility/atr_pct/expected_return arrays ``[n_symbols, n_bars]`` (signal 0, the others NaN
    where no decision fills); without an ``expected_return`` column, that one is
    ``[n_symbols, 1]`` of NaN (a per-symbol constant, see ``kernel.cell``).
    """
    cols = decision_arrays(decisions)
    unknown = sorted(set(cols.symbols) - set(grid.symbols))
    if unknown:
        raise InputError(f"decisions name symbol(s) without candles: {unknown}")
    shape = (len(grid.symbols), len(grid.timestamps))
    row_of = _rows(grid.symbols, cols.symbols)
    bar_ns = int(grid.bar.value)
    runs, flat = place_rows(
        grid.timestamps.asi8, cols.ts, bar_ns, bar_ns, cols.sym, row_of, grid.has_bar
    )
    if runs is None:
        n_dropped = int(np.count_nonzero(flat < 0))
    else:
        n_dropped = len(cols.ts) - sum(hi - lo for lo, hi, _ in runs)
    if n_dropped:
        logger.info("%d decisions have no next bar to fill at and are dropped", n_dropped)
    out = {}
    for name, fill in (
        ("signal", 0.0),
        ("confidence", np.nan),
        ("volatility", np.nan),
        ("atr_pct", np.nan),
        ("expected_return", np.nan),
    ):
        if cols.values[name] is None:  # an absent optional column: NaN on every bar
            out[name] = np.full((shape[0], 1), fill)
        else:
            out[name] = scatter_into(shape, fill, cols.values[name], runs, flat)
    return out


def funding_schedule(
    grid: MarketGrid, funding: pd.DataFrame, *, interval_hours: int = 8
) -> FundingSchedule:
    """Each symbol's settlements in ``[first bar open, last bar close)`` and its rate there.

    The settlements are the instants the funding rows hold, per symbol, whatever the interval
    and however it changes (:mod:`market.settlements`); ``times`` is their union. A symbol's
    rate is 0 at an instant of the union that is not one of its settlements (nothing due), and
    NaN where one of ITS settlements is missing (a gap longer than both neighbouring intervals,
    or before / after its data), so that a position held there stops the run with
    :class:`MissingFundingError`. ``interval_hours`` is used only where a symbol's data holds
    fewer than two settlements (no interval to read).
    """
    require_columns(funding, ["timestamp", "symbol", "funding_rate"], "funding")
    grid_ns = grid.timestamps.asi8
    lo, end = int(grid_ns[0]), int(grid_ns[-1]) + int(grid.bar.value)
    hint = int(pd.Timedelta(hours=interval_hours).value)
    n_sym = len(grid.symbols)
    ts = np.zeros(0, dtype=np.int64)
    sym = np.zeros(0, dtype=np.int64)
    rate = np.zeros(0)
    starts = np.zeros(1, dtype=np.int64)
    row_of_code = np.zeros(0, dtype=np.int64)
    if len(funding):
        ts = utc_ns(funding["timestamp"])
        sym, names = symbol_codes(funding["symbol"])
        order, maybe_dup = sort_keys(sym, ts)
        rate = funding["funding_rate"].to_numpy(np.float64)
        if order is not None:
            ts, sym, rate = ts[order], sym[order], rate[order]
        k = first_duplicate(sym, ts) if maybe_dup else None
        if k is not None:
            raise DataValidationError(
                f"duplicate funding rate for {names[sym[k]]} at {stamp(ts[k])}"
            )
        starts = np.searchsorted(sym, np.arange(len(names) + 1))
        row_of_code = _rows(grid.symbols, names)
    # per grid symbol: its settlements inside the span (rate known) and the missing ones (NaN)
    code_of_row = np.full(n_sym, -1, dtype=np.int64)
    known = row_of_code >= 0
    code_of_row[row_of_code[known]] = np.flatnonzero(known)
    parts_t, parts_r, parts_s = [], [], []
    for s in range(n_sym):
        c = code_of_row[s]
        own = ts[starts[c] : starts[c + 1]] if c >= 0 else ts[:0]
        own_rate = rate[starts[c] : starts[c + 1]] if c >= 0 else rate[:0]
        inside = (own >= lo) & (own < end)
        gone = missing_settlements(own, lo, end, hint)
        parts_t += [own[inside], gone]
        parts_r += [own_rate[inside], np.full(gone.shape[0], np.nan)]
        parts_s.append(np.full(int(inside.sum()) + gone.shape[0], s, dtype=np.int64))
    all_t = np.concatenate(parts_t) if parts_t else np.zeros(0, dtype=np.int64)
    times_ns = np.unique(all_t)
    rates = np.zeros((n_sym, len(times_ns)))
    if len(all_t):
        rates[np.concatenate(parts_s), np.searchsorted(times_ns, all_t)] = np.concatenate(parts_r)
    prev = np.searchsorted(grid_ns, times_ns, side="right") - 1
    inside_bar = times_ns < grid_ns[prev] + int(grid.bar.value)
    # a settlement inside a data gap belongs to the first bar after it, charged at its open on
    # the positions carried through the gap
    bar_index = np.where(inside_bar, prev, np.searchsorted(grid_ns, times_ns, side="left"))
    at_open = (grid_ns[bar_index] == times_ns) | ~inside_bar
    return FundingSchedule(
        times=ns_index(times_ns), bar_index=bar_index, at_open=at_open, rates=rates
    )
