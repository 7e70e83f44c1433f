"""Candles, decisions and funding laid out on one bar grid (the union of all symbols' bar times).

Arrays are ``[n_symbols, n_bars]`` with NaN where a symbol has no bar. Funding settlements are the
instants every ``interval_hours`` aligned to 00:00 UTC (00/08/16 for 8h) inside the grid's span,
each attached to the grid bar that contains it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.execution.decisions import (
    bar_positions,
    decision_arrays,
    first_duplicate,
    ns_index,
    require_columns,
    runs_of,
    scatter_into,
    sort_keys,
    stamp,
    symbol_codes,
    utc_ns,
)
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
    times: pd.DatetimeIndex  # expected settlement instants inside the grid span
    bar_index: np.ndarray  # grid index of the bar containing each settlement
    at_open: np.ndarray  # bool: the settlement is that bar's open instant
    rates: np.ndarray  # [n_symbols, n_settlements], NaN where the funding frame has no rate


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
    if not all(v.min() > 0 and v.max() < np.inf for v in values):  # NaN fails both
        bad = np.zeros(len(ts), dtype=bool)
        for v in values:
            bad |= ~np.isfinite(v) | (v <= 0)
        k = int(np.argmax(bad))
        raise DataValidationError(
            f"non-finite or non-positive price: {symbols[sym[k]]} at {stamp(ts[k])}"
        )
    bar = timeframe_to_timedelta(timeframe)
    bar_ns = int(bar.value)
    same = sym[1:] == sym[:-1]
    steps = np.diff(ts)
    off_grid = same & (steps != bar_ns)  # a step of exactly one bar (the usual case) is on grid
    if off_grid.any():
        off_grid &= (steps % bar_ns) != 0
    if off_grid.any():
        k = int(np.argmax(off_grid)) + 1
        raise InputError(
            f"candles of {symbols[sym[k]]} are not {timeframe} bars (step ending {stamp(ts[k])})"
        )
    starts = np.flatnonzero(np.concatenate([[True], ~same]))
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


def align_decisions(decisions: pd.DataFrame, grid: MarketGrid) -> dict[str, np.ndarray]:
    """Validate decisions and place them at the grid bar where they FILL: the open of ``t + bar``.

    Validation is :func:`decisions.validate_decisions`'s (same errors). A decision whose next bar
    does not exist for its symbol (end of data, gap) is dropped. Returns signal/confidence/
    volatility/atr_pct/expected_return arrays ``[n_symbols, n_bars]`` (signal 0, the others NaN
    where no decision fills).
    """
    cols = decision_arrays(decisions)
    unknown = sorted(set(cols.symbols) - set(grid.symbols))
    if unknown:
        raise InputError(f"decisions name symbol(s) without candles: {unknown}")
    shape = (len(grid.symbols), len(grid.timestamps))
    grid_ns = grid.timestamps.asi8
    bar_ns = int(grid.bar.value)
    bar_pos = bar_positions(grid_ns, cols.ts + bar_ns, bar_ns)
    sym_pos = pd.Index(grid.symbols).get_indexer(list(cols.symbols))[cols.sym]
    flat = sym_pos * len(grid_ns) + bar_pos
    ok = bar_pos >= 0
    if not grid.has_bar.all():
        ok[ok] = grid.has_bar.ravel()[flat[ok]]
    n_dropped = len(ok) - int(np.count_nonzero(ok))
    if n_dropped:
        logger.info("%d decisions have no next bar to fill at and are dropped", n_dropped)
    runs = runs_of(flat, ok)
    out = {}
    for name, fill in (
        ("signal", 0.0),
        ("confidence", np.nan),
        ("volatility", np.nan),
        ("atr_pct", np.nan),
        ("expected_return", np.nan),
    ):
        out[name] = scatter_into(shape, fill, flat, cols.values[name], ok, runs)
    return out


def funding_schedule(
    grid: MarketGrid, funding: pd.DataFrame, *, interval_hours: int = 8
) -> FundingSchedule:
    """Expected settlements in ``[first bar open, last bar close)`` and each symbol's rate there."""
    require_columns(funding, ["timestamp", "symbol", "funding_rate"], "funding")
    interval = pd.Timedelta(hours=interval_hours)
    start = grid.timestamps[0].ceil(interval)
    end = grid.timestamps[-1] + grid.bar
    times = pd.date_range(start, end, freq=interval, inclusive="left").astype("datetime64[ns, UTC]")
    times = times[times < end]
    prev = grid.timestamps.searchsorted(times, side="right") - 1
    inside = np.asarray(times < grid.timestamps[prev] + grid.bar, dtype=bool)
    # a settlement inside a data gap belongs to the first bar after it, charged at its open on
    # the positions carried through the gap
    bar_index = np.where(inside, prev, grid.timestamps.searchsorted(times, side="left"))
    at_open = np.asarray(grid.timestamps[bar_index] == times, dtype=bool) | ~inside
    rates = np.full((len(grid.symbols), len(times)), np.nan)
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
        pos = bar_positions(times.asi8, ts, int(interval.value))
        on_schedule = pos >= 0
        in_span = (ts >= grid.timestamps.asi8[0]) & (ts < end.value)
        off = in_span & ~on_schedule
        if off.any():
            k = int(np.argmax(off))
            raise DataValidationError(
                f"funding for {names[sym[k]]} at {stamp(ts[k])} is off the {interval_hours}h "
                "settlement schedule; set data.funding_interval_hours to the exchange's interval"
            )
        row = pd.Index(grid.symbols).get_indexer(list(names))[sym]
        use = on_schedule & (row >= 0)
        rates[row[use], pos[use]] = rate[use]
    return FundingSchedule(times=times, bar_index=bar_index, at_open=at_open, rates=rates)
