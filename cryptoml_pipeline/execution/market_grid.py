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
    DECISION_COLUMNS,
    codes_of_runs,
    decision_arrays,
    decision_values,
    first_duplicate,
    ns_index,
    place_rows,
    require_columns,
    scatter_into,
    sort_keys,
    stamp,
    symbol_codes,
    symbol_runs,
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


@_jit
def _scan_runs(ts, starts, bar_ns):
    """:func:`decisions.sort_keys`' order status and :func:`_scan_bars`' first off-grid step in
    one pass over the times of rows grouped in runs of one symbol each, in symbol order (runs
    starting at ``starts``): 0 sorted, 1 a repeated time, 2 not sorted (the step then -1)."""
    status, off = 0, -1
    for r in range(starts.shape[0]):
        end = starts[r + 1] if r + 1 < starts.shape[0] else ts.shape[0]
        for k in range(starts[r] + 1, end):
            step = ts[k] - ts[k - 1]
            if step == bar_ns:
                continue
            if step < 0:
                return 2, -1
            if step == 0:
                status = 1
            elif off < 0 and step % bar_ns != 0:
                off = k
    return status, off


@dataclass(frozen=True)
class CandleRows:
    """The candle rows of a grid where they are its cells in order (:func:`grid_and_rows`): rows
    sorted by (symbol, time), every symbol on every bar of a gap-free grid, so that row
    ``starts[s] + j`` is bar ``j`` of symbol ``s``. Decisions on exactly these rows (the same
    timestamp column values and symbol runs) are placed without a search (:func:`align_decisions`).
    """

    timestamp: pd.api.extensions.ExtensionArray  # the candles' timestamp column, as given
    starts: np.ndarray  # first row of each symbol (one run each, in grid symbol order)
    names: list[str]  # the symbol of each run (= the grid's symbols)


def _sorted_runs(column: pd.Series) -> tuple[np.ndarray, list[str]] | None:
    """The symbol runs of ``column`` where each symbol is one run and they are in order."""
    runs = symbol_runs(column)
    if runs is None or any(a >= b for a, b in zip(runs[1], runs[1][1:], strict=False)):
        return None
    return runs


def _order_and_steps(
    sym: np.ndarray, ts: np.ndarray, runs: tuple[np.ndarray, list[str]] | None, bar_ns: int
) -> tuple[int, int | None]:
    """Order status of the rows (see :func:`_scan_runs`) and, where they are sorted and grouped
    in ``runs``, their first off-grid step (-1: none; None: not scanned)."""
    if runs is not None:
        status, off = _scan_runs(ts, runs[0], bar_ns)
        return int(status), (None if status == 2 else int(off))
    order, maybe_dup = sort_keys(sym, ts)
    return (2 if order is not None else int(maybe_dup)), None


def build_grid(candles: pd.DataFrame, timeframe: str) -> MarketGrid:
    """Validate long candles and pivot them onto the union bar grid."""
    return grid_and_rows(candles, timeframe)[0]


def grid_and_rows(candles: pd.DataFrame, timeframe: str) -> tuple[MarketGrid, CandleRows | None]:
    """:func:`build_grid`, and the :class:`CandleRows` where the rows are the grid's cells."""
    require_columns(candles, ["timestamp", "symbol", *OHLC], "candles")
    if candles.empty:
        raise InputError("candles are empty: nothing to simulate")
    ts = utc_ns(candles["timestamp"])
    runs = _sorted_runs(candles["symbol"])
    sym, symbols = symbol_codes(candles["symbol"]) if runs is None else codes_of_runs(runs, len(ts))
    bar = timeframe_to_timedelta(timeframe)
    status, off = _order_and_steps(sym, ts, runs, int(bar.value))
    order = np.lexsort((ts, sym)) if status == 2 else None
    if order is not None:
        ts, sym = ts[order], sym[order]
    k_dup = first_duplicate(sym, ts) if status > 0 else None
    if k_dup is not None:
        raise DataValidationError(
            f"duplicate candle for {symbols[sym[k_dup]]} at {stamp(ts[k_dup])}"
        )
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
    if off is None:
        off, starts = _scan_bars(sym, ts, int(bar.value), len(symbols))
    else:
        assert runs is not None  # an off-grid step is scanned only on grouped runs
        starts = runs[0]
    if off >= 0:
        raise InputError(
            f"candles of {symbols[sym[off]]} are not {timeframe} bars "
            f"(step ending {stamp(ts[off])})"
        )
    # one symbol's times that are this function's own (converted or sorted, not a view of the
    # frame's) can be the grid's as they are
    owned = ts.base is None and len(symbols) == 1
    grid, dense = _pivot(ts, sym, starts, values, symbols, bar, owned=owned)
    rows = None
    if dense and order is None and runs is not None and _uniform_grid(grid):
        rows = CandleRows(timestamp=candles["timestamp"].array, starts=starts, names=runs[1])
    return grid, rows


def _uniform_grid(grid: MarketGrid) -> bool:
    """Whether the grid's bars are consecutive (no gap)."""
    grid_ns = grid.timestamps.asi8
    return int(grid_ns[-1]) - int(grid_ns[0]) == (len(grid_ns) - 1) * int(grid.bar.value)


def _pivot(
    ts: np.ndarray,
    sym: np.ndarray,
    starts: np.ndarray,
    values: list[np.ndarray],
    symbols: tuple[str, ...],
    bar: pd.Timedelta,
    *,
    owned: bool = False,
) -> tuple[MarketGrid, bool]:
    """Rows sorted by (symbol, time) -> the grid; and whether every symbol has every bar (the
    sorted rows are then the grid's cells in order). ``owned``: nothing else holds ``ts``, the
    times of one symbol (the grid's times may then be ``ts`` itself)."""
    ends = np.append(starts[1:], len(ts))
    first = ts[starts[0] : ends[0]]
    dense = all(
        e - s == len(first) and np.array_equal(ts[s:e], first)
        for s, e in zip(starts[1:], ends[1:], strict=True)
    )
    if dense:
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
    grid = MarketGrid(
        timestamps=ns_index(grid_ns, copy=dense and not owned),  # np.unique's is a fresh array
        symbols=symbols,
        has_bar=has_bar,
        last_bar=last_bar,
        bar=bar,
        **arrays,
    )
    return grid, dense


def _rows(symbols: tuple[str, ...], names: tuple[str, ...]) -> np.ndarray:
    """The grid row of each of ``names`` (-1: not on the grid)."""
    row_of = {name: k for k, name in enumerate(symbols)}
    return np.array([row_of.get(name, -1) for name in names], dtype=np.int64)


def _same_rows(decisions: pd.DataFrame, rows: CandleRows) -> bool:
    """Whether the decisions' rows are the candle rows ``rows`` (same timestamp column values,
    same symbol runs), in the same order."""
    column = decisions["timestamp"]
    timestamp = rows.timestamp
    if len(column) != len(timestamp) or column.dtype != timestamp.dtype:
        return False
    if not (isinstance(column.dtype, pd.DatetimeTZDtype) or column.dtype.kind == "M"):
        return False
    if not np.array_equal(column.array.asi8, timestamp.asi8):
        return False
    runs = symbol_runs(decisions["symbol"])
    return runs is not None and runs[1] == rows.names and np.array_equal(runs[0], rows.starts)


def _placed_on_rows(
    decisions: pd.DataFrame, grid: MarketGrid, rows: CandleRows | None
) -> tuple[dict[str, np.ndarray | None], list[tuple[int, int, int]]] | None:
    """Decisions that are exactly the candle rows ``rows`` (and valid): their values and the
    runs of :func:`decisions.place_rows` (each symbol's rows but the last on the cells from its
    second bar on), found without a search; None where they are not (or invalid: the general
    path then raises its error)."""
    if rows is None or not _same_rows(decisions, rows):
        return None
    values, bad = decision_values(decisions)
    if bad >= 0:
        return None
    n_bars = len(grid.timestamps)
    ends = [*rows.starts[1:].tolist(), len(rows.timestamp)]
    runs = [
        (lo, hi - 1, s * n_bars + 1)
        for s, (lo, hi) in enumerate(zip(rows.starts.tolist(), ends, strict=True))
        if hi - 1 > lo
    ]
    return values, runs


def align_decisions(
    decisions: pd.DataFrame, grid: MarketGrid, rows: CandleRows | None = None
) -> dict[str, np.ndarray]:
    """Validate decisions and place them at the grid bar where they FILL: the open of ``t + bar``.

    Validation is :func:`decisions.validate_decisions`'s (same errors). A decision whose next bar
    does not exist for its symbol (end of data, gap) is dropped. Returns signal/confidence/
    volatility/atr_pct/expected_return arrays ``[n_symbols, n_bars]`` (signal 0, the others NaN
    where no decision fills); without an ``expected_return`` column, that one is
    ``[n_symbols, 1]`` of NaN (a per-symbol constant, see ``kernel.cell``). ``rows``: the grid's
    candle rows (:func:`grid_and_rows`); decisions on exactly those rows are placed directly.
    """
    require_columns(decisions, DECISION_COLUMNS, "decisions")
    shape = (len(grid.symbols), len(grid.timestamps))
    placed = _placed_on_rows(decisions, grid, rows)
    flat = None
    if placed is not None:
        values, runs_ = placed
        runs: list[tuple[int, int, int]] | None = runs_
    else:
        cols = decision_arrays(decisions)
        unknown = sorted(set(cols.symbols) - set(grid.symbols))
        if unknown:
            raise InputError(f"decisions name symbol(s) without candles: {unknown}")
        row_of = _rows(grid.symbols, cols.symbols)
        bar_ns = int(grid.bar.value)
        runs, flat = place_rows(
            grid.timestamps.asi8, cols.ts, bar_ns, bar_ns, cols.sym, row_of, grid.has_bar
        )
        values = cols.values
    if runs is None:
        n_dropped = int(np.count_nonzero(flat < 0))
    else:
        n_dropped = len(decisions) - sum(hi - lo for lo, hi, _ in runs)
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
        if values[name] is None:  # an absent optional column: NaN on every bar
            out[name] = np.full((shape[0], 1), fill)
        else:
            out[name] = scatter_into(shape, fill, values[name], runs, flat)
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
    # the union of the instants (one symbol's, without missing ones: already sorted, unique)
    times_ns = all_t if bool(np.all(all_t[1:] > all_t[:-1])) else np.unique(all_t)
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
        times=ns_index(times_ns, copy=False), bar_index=bar_index, at_open=at_open, rates=rates
    )
