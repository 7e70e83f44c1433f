"""The decisions frame: what the simulator consumes, one row per (timestamp, symbol).

Columns: ``timestamp`` (datetime64[ns, UTC], the candle open time of the row the decision was
computed from), ``symbol`` (str), ``signal`` (int64 in -2..2), ``confidence`` (float, 0..1),
``volatility`` (float, ANNUALISED volatility of 1-bar log returns), ``atr_pct`` (float, ATR as a
fraction of price). Optional: ``expected_return`` (float, the model's expected move over the
holding horizon; NaN = unknown, the cost filter is then not applied). A decision from row ``t``
is known at ``t + one bar`` and fills at that bar's open.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.execution.kernel import _jit, _jit_inline, _jit_loop
from cryptoml_pipeline.timing import bars_per_day

DECISION_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "symbol",
    "signal",
    "confidence",
    "volatility",
    "atr_pct",
)

OPTIONAL_COLUMN = "expected_return"

DAYS_PER_YEAR = 365.0  # crypto trades every calendar day


def bars_per_year(timeframe: str) -> float:
    return bars_per_day(timeframe) * DAYS_PER_YEAR


def annualise_volatility(per_bar_volatility: pd.Series | np.ndarray, timeframe: str) -> np.ndarray:
    """Per-bar std of log returns -> annualised: ``x * sqrt(bars per year)`` (365-day year)."""
    return np.asarray(per_bar_volatility, dtype=np.float64) * np.sqrt(bars_per_year(timeframe))


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what} is missing column(s) {missing}")


@_jit
def _scaled(values, factor, limit, out):
    """``out = values * factor``; False where a value is beyond ``+-limit`` (would overflow; NaT
    included), ``out`` then meaningless."""
    ok = True
    for k in range(values.shape[0]):
        v = values[k]
        ok &= (v >= -limit) & (v <= limit)
        out[k] = v * factor
    return ok


NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000}
INT64_MAX = int(np.iinfo(np.int64).max)


def utc_ns(values: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Timestamps -> int64 nanoseconds since the epoch (UTC); naive values are read as UTC.

    Zero-copy for a ``datetime64[ns, UTC]`` column (the normal case); a tz-aware column of
    coarser unit is scaled in one compiled pass (pandas' conversion where a value would overflow).
    """
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, pd.DatetimeTZDtype):
        if dtype.unit == "ns":
            return np.asarray(values.array.asi8, dtype=np.int64)
        factor = NS_PER_UNIT.get(dtype.unit)
        if factor is not None:
            raw = np.asarray(values.array.asi8, dtype=np.int64)
            out = np.empty(len(raw), dtype=np.int64)
            if _scaled(raw, factor, INT64_MAX // factor, out):
                return out
        return np.asarray(pd.DatetimeIndex(values).as_unit("ns").asi8)
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return np.asarray(index.as_unit("ns").asi8)


UTC_NS = pd.DatetimeTZDtype("ns", "UTC")


def ns_index(ns: np.ndarray, *, copy: bool = True) -> pd.DatetimeIndex:
    """int64 UTC nanoseconds -> ``DatetimeIndex`` (datetime64[ns, UTC]); ``copy=False``: on
    ``ns`` itself, for an array nothing else holds."""
    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64), dtype=UTC_NS, copy=copy)


def stamp(ns: int | np.integer) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz="UTC")


MAX_RUNS = 256  # rows in more runs of equal symbols than this are coded by hashing


@_jit
def _string_runs(offsets, data, max_runs):
    """Start rows of the runs of equal strings of an Arrow string array (row ``k`` is
    ``data[offsets[k]:offsets[k + 1]]``), and their count (-1: more than ``max_runs``)."""
    starts = np.zeros(max_runs, dtype=np.int64)
    n, m = offsets.shape[0] - 1, 1
    base, width = offsets[0], offsets[1] - offsets[0]
    equal_widths = True
    for k in range(n + 1):
        if offsets[k] != base + k * width:
            equal_widths = False
            break
    k = 1
    while k < n:
        if equal_widths:
            # equal widths (the usual symbols): row k differs from row k - 1 where the bytes
            # differ from those one width earlier; scanned in blocks without a branch per byte
            j, end = base + k * width, base + n * width
            while j < end:
                stop = min(j + 4096, end)
                if _differ(data[j - width : stop - width], data[j:stop]):
                    while data[j] == data[j - width]:
                        j += 1
                    break
                j = stop
            if j >= end:
                break
            k = (j - base) // width
        elif _same_string(offsets, data, k):
            k += 1
            continue
        if m == max_runs:
            return starts, -1
        starts[m] = k
        m += 1
        k += 1
    return starts, m


@_jit
def _differ(a, b):
    """Whether the byte blocks ``a`` and ``b`` differ (no branch per byte: vectorised)."""
    acc = 0
    for x in range(a.shape[0]):
        acc |= a[x] ^ b[x]
    return acc != 0


@_jit
def _same_string(offsets, data, k):
    a, b, n = offsets[k - 1], offsets[k], offsets[k + 1] - offsets[k]
    if b - a != n:
        return False
    for j in range(n):  # noqa: SIM110 - compiled: a loop, no generator
        if data[a + j] != data[b + j]:
            return False
    return True


def symbol_runs(values: pd.Series) -> tuple[np.ndarray, list[str]] | None:
    """Start positions of runs of equal symbols and the symbol of each run (arrow-backed
    strings only, at most :data:`MAX_RUNS` runs), else ``None``."""
    array = values.array
    if len(array) < 2 or not hasattr(array, "__arrow_array__"):
        return None
    import pyarrow as pa

    arrow = pa.array(array)
    if isinstance(arrow, pa.ChunkedArray):
        arrow = arrow.combine_chunks()
    if arrow.null_count or not (
        pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type)
    ):
        return None
    _, offsets_buf, data_buf = arrow.buffers()
    wide = np.int64 if pa.types.is_large_string(arrow.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=wide)[arrow.offset : arrow.offset + len(arrow) + 1]
    data = np.zeros(0, np.uint8) if data_buf is None else np.frombuffer(data_buf, dtype=np.uint8)
    starts, m = _string_runs(offsets, data, MAX_RUNS)
    if m < 0:
        return None
    names = [data[offsets[k] : offsets[k + 1]].tobytes().decode() for k in starts[:m].tolist()]
    return starts[:m], names


def codes_of_runs(
    runs: tuple[np.ndarray, list[str]], n_rows: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """:func:`symbol_codes` of ``n_rows`` rows from their :func:`symbol_runs`."""
    starts, run_names = runs
    symbols = tuple(sorted(set(run_names)))
    code_of = {name: k for k, name in enumerate(symbols)}
    stops = [*starts[1:].tolist(), n_rows]
    codes = np.zeros(n_rows, dtype=np.int64)  # written only where not 0
    for start, stop, name in zip(starts.tolist(), stops, run_names, strict=True):
        if code_of[name]:
            codes[start:stop] = code_of[name]
    return codes, symbols


def symbol_codes(values: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer code per row into the alphabetically sorted tuple of symbol names (as ``str``).

    Rows grouped by symbol (the usual layout) are coded from their runs without hashing them.
    """
    runs = symbol_runs(values)
    if runs is not None:
        return codes_of_runs(runs, len(values))
    codes, uniques = pd.factorize(values)
    if (codes < 0).any():  # missing symbols: name them as ``astype(str)`` does
        codes, uniques = pd.factorize(pd.Series(values).astype(str))
    names = [str(u) for u in uniques]
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names), dtype=np.int64)
    return rank[codes], tuple(names[k] for k in order)


# Row scans compiled like the kernel: one pass each over arrays of every row, where NumPy would
# build several temporaries of that length (their allocation, not the arithmetic, is the cost).


@_jit_inline
def _position(t, prev_t, prev_p, grid_ns, bar_ns, uniform):
    """Index of ``t`` in the sorted ``grid_ns`` (-1: absent). ``prev_p``: the index of the row
    before (at ``prev_t``), so that the next bar is found without a division or a search;
    ``uniform``: the grid has no gap (an index is arithmetic)."""
    n = grid_ns.shape[0]
    if prev_p >= 0 and t - prev_t == bar_ns and prev_p + 1 < n and grid_ns[prev_p + 1] == t:
        return prev_p + 1
    if uniform:
        d = t - grid_ns[0]
        if d < 0 or d % bar_ns != 0 or d // bar_ns >= n:
            return -1
        return d // bar_ns
    p = np.searchsorted(grid_ns, t)
    return p if p < n and grid_ns[p] == t else -1


@_jit_loop
def _positions(grid_ns, ts, bar_ns, uniform, out):
    prev_t, prev_p = 0, -1
    for k in range(ts.shape[0]):
        prev_t, prev_p = ts[k], _position(ts[k], prev_t, prev_p, grid_ns, bar_ns, uniform)
        out[k] = prev_p


@_jit_loop
def _cells(grid_ns, ts, shift, bar_ns, uniform, sym, row_of, has_bar, out):
    """Flat cell ``row * n_bars + bar`` of each row at ``ts + shift`` on the grid (row =
    ``row_of[sym]``); -1 where that is no bar of the row's symbol."""
    prev_t, prev_p = 0, -1
    for k in range(ts.shape[0]):
        t = ts[k] + shift
        prev_t, prev_p = t, _position(t, prev_t, prev_p, grid_ns, bar_ns, uniform)
        row = row_of[sym[k]]
        out[k] = row * grid_ns.shape[0] + prev_p if prev_p >= 0 and has_bar[row, prev_p] else -1


def _uniform(grid_ns: np.ndarray, bar_ns: int) -> bool:
    n = len(grid_ns)
    return bool(n) and int(grid_ns[-1]) - int(grid_ns[0]) == (n - 1) * bar_ns


def bar_positions(grid_ns: np.ndarray, ts: np.ndarray, bar_ns: int) -> np.ndarray:
    """Index of each ``ts`` in the sorted ``grid_ns``, -1 where absent.

    Arithmetic on a gap-free grid (the usual case), binary search otherwise; the bar after the
    previous row's needs neither.
    """
    grid_ns = np.asarray(grid_ns, dtype=np.int64)
    out = np.empty(len(ts), dtype=np.int64)
    _positions(grid_ns, np.asarray(ts, dtype=np.int64), bar_ns, _uniform(grid_ns, bar_ns), out)
    return out


@_jit_loop
def _cell_runs(grid_ns, ts, shift, bar_ns, uniform, sym, row_of, has_bar, lo, hi, cell):
    """:func:`_cells` as runs of rows ``lo..hi-1`` placed on consecutive cells from ``cell``,
    without a cell per row; returns the number of runs (-1: more than ``lo`` holds)."""
    m, prev_t, prev_p, prev_cell = 0, 0, -1, -2
    for k in range(ts.shape[0]):
        t = ts[k] + shift
        prev_t, prev_p = t, _position(t, prev_t, prev_p, grid_ns, bar_ns, uniform)
        row = row_of[sym[k]]
        if prev_p < 0 or not has_bar[row, prev_p]:
            continue
        c = row * grid_ns.shape[0] + prev_p
        if m > 0 and hi[m - 1] == k and c == prev_cell + 1:
            hi[m - 1] = k + 1  # the row continues the run of the row before it
        elif m == lo.shape[0]:
            return -1
        else:
            lo[m], hi[m], cell[m] = k, k + 1, c
            m += 1
        prev_cell = c
    return m


def place_rows(
    grid_ns: np.ndarray,
    ts: np.ndarray,
    shift: int,
    bar_ns: int,
    sym: np.ndarray,
    row_of: np.ndarray,
    has_bar: np.ndarray,
    max_runs: int = 64,
) -> tuple[list[tuple[int, int, int]] | None, np.ndarray | None]:
    """Where each row at ``ts + shift`` lands on a grid whose row ``row_of[sym]`` has the bars
    ``has_bar`` (flat cell ``row * len(grid_ns) + bar``): as runs ``(first row, end row, first
    cell)`` of rows on consecutive cells, in cell order (the usual layout: each symbol's rows in
    time order), or, with more than ``max_runs`` runs, as the cell of every row (-1: no such
    bar). Returns ``(runs, None)`` or ``(None, cells)``."""
    uniform = _uniform(grid_ns, bar_ns)
    lo, hi, cell = (np.zeros(max_runs, dtype=np.int64) for _ in range(3))
    m = _cell_runs(grid_ns, ts, shift, bar_ns, uniform, sym, row_of, has_bar, lo, hi, cell)
    if m >= 0:
        runs = zip(lo[:m].tolist(), hi[:m].tolist(), cell[:m].tolist(), strict=True)
        return sorted(runs, key=lambda run: run[2]), None
    flat = np.empty(len(ts), dtype=np.int64)
    _cells(grid_ns, ts, shift, bar_ns, uniform, sym, row_of, has_bar, flat)
    return None, flat


def scatter_into(
    shape: tuple[int, int],
    fill: float,
    values: np.ndarray | None,
    runs: list[tuple[int, int, int]] | None,
    flat: np.ndarray | None = None,
) -> np.ndarray:
    """A ``shape`` array of ``fill`` with the ``values`` of rows placed on cells (``values``
    None: all ``fill``): by the ``runs`` of :func:`place_rows` (every cell written once, runs as
    slices) or, where they are None, by its ``flat`` cell of each row (-1: not placed)."""
    if values is None:
        return np.full(shape, fill)
    if runs is None:
        assert flat is not None
        ok = flat >= 0
        out = np.full(shape, fill)
        out.reshape(-1)[flat[ok]] = values[ok]
        return out
    out = np.empty(shape)
    cells = out.reshape(-1)
    done = 0
    for lo, hi, start in runs:
        cells[done:start] = fill
        cells[start : start + hi - lo] = values[lo:hi]
        done = start + hi - lo
    cells[done:] = fill
    return out


@_jit
def _order_status(sym, ts):
    """0: rows strictly increasing by (symbol, time); 1: non-decreasing with a repeat; 2: not
    sorted."""
    status = 0
    for k in range(1, sym.shape[0]):
        if sym[k] > sym[k - 1]:
            continue
        if sym[k] < sym[k - 1] or ts[k] < ts[k - 1]:
            return 2
        if ts[k] == ts[k - 1]:
            status = 1
    return status


def sort_keys(sym: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """Permutation sorting rows by (symbol, time), ``None`` when they are already sorted; and
    whether a repeated (symbol, time) is possible (False: strictly increasing, no duplicate)."""
    status = _order_status(sym, ts)
    if status == 2:
        return np.lexsort((ts, sym)), True
    return None, status == 1


@_jit
def _first_repeat(sym, ts):
    for k in range(1, sym.shape[0]):
        if sym[k] == sym[k - 1] and ts[k] == ts[k - 1]:
            return k
    return -1


def first_duplicate(sym: np.ndarray, ts: np.ndarray) -> int | None:
    """Position of a repeated (symbol, time) in rows sorted by (symbol, time), else ``None``."""
    k = _first_repeat(sym, ts)
    return None if k < 0 else int(k)


@_jit
def _signal_ok(signal):
    """(every value is NaN or an integer in -2..2, any NaN): one pass without a branch per
    row (vectorised); :func:`_signal_scan` names the first bad row."""
    ok, has_nan = True, False
    for k in range(signal.shape[0]):
        v = signal[k]
        nan = v != v
        has_nan |= nan
        ok &= nan | ((v >= -2) & (v <= 2) & (v == np.floor(v)))
    return ok, has_nan


@_jit
def _signal_scan(signal):
    """(any NaN, first row that is not NaN or an integer in -2..2, or -1)."""
    has_nan, bad = False, -1
    for k in range(signal.shape[0]):
        v = signal[k]
        if v != v:
            has_nan = True
        elif bad < 0 and (abs(v) > 2.0 or v != np.floor(v)):
            bad = k
    return has_nan, bad


@dataclass(frozen=True)
class DecisionArrays:
    """Validated decision columns as arrays, in the caller's row order."""

    ts: np.ndarray  # int64 UTC nanoseconds
    sym: np.ndarray  # int64 code into ``symbols``
    symbols: tuple[str, ...]  # sorted
    values: dict[
        str, np.ndarray
    ]  # signal (NaN -> 0; an integer column as it is), confidence, volatility, atr_pct,
    # expected_return


def _float_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    column = frame[name]
    if column.dtype == np.float64:
        return column.to_numpy()
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iub":
        return column.to_numpy(np.float64)
    coerced = pd.to_numeric(column, errors="coerce")
    return np.asarray(coerced.to_numpy(np.float64, na_value=np.nan), dtype=np.float64)


def decision_values(decisions: pd.DataFrame) -> tuple[dict[str, np.ndarray | None], int]:
    """The value columns of :class:`DecisionArrays` and the first row whose signal is not NaN
    or an integer in -2..2 (-1: none, and the signal's NaN are then 0)."""
    values: dict[str, np.ndarray | None] = {
        name: _float_column(decisions, name) for name in DECISION_COLUMNS[3:]
    }
    column = decisions["signal"]
    integer = isinstance(column.dtype, np.dtype) and column.dtype.kind == "i"
    signal = column.to_numpy() if integer else _float_column(decisions, "signal")
    values["signal"] = signal
    values[OPTIONAL_COLUMN] = (  # None: absent (all NaN)
        _float_column(decisions, OPTIONAL_COLUMN) if OPTIONAL_COLUMN in decisions.columns else None
    )
    ok, has_nan = _signal_ok(signal)
    k = -1 if ok else int(_signal_scan(signal)[1])
    if k < 0 and has_nan:
        values["signal"] = np.where(np.isnan(signal), 0.0, signal)
    return values, k


def decision_arrays(decisions: pd.DataFrame) -> DecisionArrays:
    """:func:`validate_decisions` without building a frame (same checks, same errors)."""
    require_columns(decisions, DECISION_COLUMNS, "decisions")
    ts = utc_ns(decisions["timestamp"])
    sym, symbols = symbol_codes(decisions["symbol"])
    values, k = decision_values(decisions)
    if k >= 0:
        raise InputError(
            f"decision signal must be an integer in -2..2: {symbols[sym[k]]} at {stamp(ts[k])}"
        )
    order, maybe_dup = sort_keys(sym, ts)
    k = None
    if maybe_dup:
        k = first_duplicate(sym, ts) if order is None else first_duplicate(sym[order], ts[order])
    if k is not None:
        if order is not None:
            k = int(order[k])
        raise InputError(f"duplicate decision for {symbols[sym[k]]} at {stamp(ts[k])}")
    return DecisionArrays(ts=ts, sym=sym, symbols=symbols, values=values)


def validate_decisions(decisions: pd.DataFrame) -> pd.DataFrame:
    """A normalised copy: ns UTC timestamps, int64 signal (NaN -> 0), sorted by symbol, timestamp.

    Raises :class:`InputError` on missing columns, signals outside -2..2 or duplicate rows.
    """
    require_columns(decisions, DECISION_COLUMNS, "decisions")
    out = decisions.loc[:, list(DECISION_COLUMNS)].copy()
    out[OPTIONAL_COLUMN] = (
        pd.to_numeric(decisions[OPTIONAL_COLUMN], errors="coerce").to_numpy(np.float64)
        if OPTIONAL_COLUMN in decisions.columns
        else np.nan
    )
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    out["symbol"] = out["symbol"].astype(str)
    signal = pd.to_numeric(out["signal"], errors="coerce").fillna(0.0).to_numpy(np.float64)
    bad = (np.abs(signal) > 2) | (signal != np.round(signal))
    if bad.any():
        row = out.loc[bad].iloc[0]
        raise InputError(
            f"decision signal must be an integer in -2..2: {row['symbol']} at {row['timestamp']}"
        )
    out["signal"] = signal.astype(np.int64)
    for col in ("confidence", "volatility", "atr_pct"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(np.float64)
    dup = out.duplicated(["symbol", "timestamp"])
    if dup.any():
        row = out.loc[dup].iloc[0]
        raise InputError(f"duplicate decision for {row['symbol']} at {row['timestamp']}")
    return out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)


def make_decisions(
    timestamps: pd.Series,
    symbols: pd.Series,
    signal: np.ndarray | pd.Series,
    confidence: np.ndarray | pd.Series | float,
    volatility: np.ndarray | pd.Series,
    atr_pct: np.ndarray | pd.Series,
    expected_return: np.ndarray | pd.Series | None = None,
) -> pd.DataFrame:
    """Assemble and validate a decisions frame from aligned columns."""
    frame = pd.DataFrame(
        {
            "timestamp": pd.Series(timestamps).reset_index(drop=True),
            "symbol": pd.Series(symbols).reset_index(drop=True).astype(str),
            "signal": np.asarray(signal, dtype=np.float64),
            "confidence": np.broadcast_to(
                np.asarray(confidence, dtype=np.float64), len(timestamps)
            ),
            "volatility": np.asarray(volatility, dtype=np.float64),
            "atr_pct": np.asarray(atr_pct, dtype=np.float64),
        }
    )
    if expected_return is not None:
        frame[OPTIONAL_COLUMN] = np.asarray(expected_return, dtype=np.float64)
    return validate_decisions(frame)
