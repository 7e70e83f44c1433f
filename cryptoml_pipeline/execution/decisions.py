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


def utc_ns(values: pd.Series | pd.Index | np.ndarray) -> np.ndarray:
    """Timestamps -> int64 nanoseconds since the epoch (UTC); naive values are read as UTC.

    Zero-copy for a ``datetime64[ns, UTC]`` column (the normal case).
    """
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return np.asarray(pd.DatetimeIndex(values).as_unit("ns").asi8)
    index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return np.asarray(index.as_unit("ns").asi8)


def ns_index(ns: np.ndarray) -> pd.DatetimeIndex:
    """int64 UTC nanoseconds -> ``DatetimeIndex`` (datetime64[ns, UTC])."""
    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("datetime64[ns]")).tz_localize(
        "UTC"
    )


def stamp(ns: int | np.integer) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz="UTC")


def _runs(values: pd.Series) -> np.ndarray | None:
    """Start positions of runs of equal symbols (arrow-backed strings only), else ``None``."""
    array = values.array
    if len(array) < 2 or not hasattr(array, "__arrow_array__"):
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow = pa.array(array)
    if arrow.null_count:
        return None
    change = pc.not_equal(arrow.slice(1), arrow.slice(0, len(arrow) - 1))
    return np.concatenate([[0], np.flatnonzero(change.to_numpy(zero_copy_only=False)) + 1])


def symbol_codes(values: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer code per row into the alphabetically sorted tuple of symbol names (as ``str``).

    Rows grouped by symbol (the usual layout) are coded from their runs without hashing them.
    """
    starts = _runs(values)
    if starts is not None and len(starts) <= 256:
        run_names = [str(v) for v in values.iloc[starts]]
        symbols = tuple(sorted(set(run_names)))
        code_of = {name: k for k, name in enumerate(symbols)}
        lengths = np.diff(np.append(starts, len(values)))
        run_codes = np.array([code_of[name] for name in run_names], dtype=np.int64)
        return np.repeat(run_codes, lengths), symbols
    codes, uniques = pd.factorize(values)
    if (codes < 0).any():  # missing symbols: name them as ``astype(str)`` does
        codes, uniques = pd.factorize(pd.Series(values).astype(str))
    names = [str(u) for u in uniques]
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names), dtype=np.int64)
    return rank[codes], tuple(names[k] for k in order)


def bar_positions(grid_ns: np.ndarray, ts: np.ndarray, bar_ns: int) -> np.ndarray:
    """Index of each ``ts`` in the sorted ``grid_ns``, -1 where absent.

    Arithmetic on a gap-free grid (the usual case), binary search otherwise.
    """
    n = len(grid_ns)
    if n and int(grid_ns[-1]) - int(grid_ns[0]) == (n - 1) * bar_ns:
        pos, rest = np.divmod(ts - grid_ns[0], bar_ns)
        ok = (rest == 0) & (pos >= 0) & (pos < n)
        return np.where(ok, pos, -1)
    pos = np.searchsorted(grid_ns, ts)
    inside = pos < n
    found = inside.copy()
    found[inside] = grid_ns[pos[inside]] == ts[inside]
    return np.where(found, pos, -1)


def runs_of(flat: np.ndarray, ok: np.ndarray, max_runs: int = 64) -> list[tuple[int, int]] | None:
    """Row ranges ``(start, stop)`` of ``ok`` rows whose ``flat`` positions are consecutive
    (the usual layout: each symbol's decisions in time order); ``None`` when there are many."""
    n = len(flat)
    if n == 0:
        return []
    cont = np.zeros(n, dtype=bool)  # row continues the run of the row before it
    cont[1:] = ok[1:] & ok[:-1] & (flat[1:] - flat[:-1] == 1)
    starts = np.flatnonzero(ok & ~cont)
    if len(starts) > max_runs:
        return None
    stops = np.flatnonzero(ok & ~np.append(cont[1:], False)) + 1
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def scatter_into(
    shape: tuple[int, int],
    fill: float,
    flat: np.ndarray,
    values: np.ndarray | None,
    ok: np.ndarray,
    runs: list[tuple[int, int]] | None,
) -> np.ndarray:
    """A ``shape`` array of ``fill`` with ``ravel()[flat[ok]] = values[ok]`` (``values`` None:
    all ``fill``). With ``runs`` (:func:`runs_of`) every cell is written once, runs as slices."""
    if values is None:
        return np.full(shape, fill)
    if runs is None:
        out = np.full(shape, fill)
        out.reshape(-1)[flat[ok]] = values[ok]
        return out
    out = np.empty(shape)
    cells = out.reshape(-1)
    done = 0
    for lo, hi in sorted(runs, key=lambda run: int(flat[run[0]])):
        start = int(flat[lo])
        cells[done:start] = fill
        cells[start : start + hi - lo] = values[lo:hi]
        done = start + hi - lo
    cells[done:] = fill
    return out


def sort_keys(sym: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """Permutation sorting rows by (symbol, time), ``None`` when they are already sorted; and
    whether a repeated (symbol, time) is possible (False: strictly increasing, no duplicate)."""
    if len(sym) < 2:
        return None, False
    dsym, dts = np.diff(sym), np.diff(ts)
    later_symbol = dsym > 0
    same_symbol = dsym == 0
    if (later_symbol | (same_symbol & (dts > 0))).all():
        return None, False
    if (later_symbol | (same_symbol & (dts >= 0))).all():
        return None, True
    return np.lexsort((ts, sym)), True


def first_duplicate(sym: np.ndarray, ts: np.ndarray) -> int | None:
    """Position of a repeated (symbol, time) in rows sorted by (symbol, time), else ``None``."""
    dup = (sym[1:] == sym[:-1]) & (ts[1:] == ts[:-1])
    if dup.any():
        return int(np.argmax(dup)) + 1
    return None


@dataclass(frozen=True)
class DecisionArrays:
    """Validated decision columns as arrays, in the caller's row order."""

    ts: np.ndarray  # int64 UTC nanoseconds
    sym: np.ndarray  # int64 code into ``symbols``
    symbols: tuple[str, ...]  # sorted
    values: dict[
        str, np.ndarray
    ]  # signal (NaN -> 0), confidence, volatility, atr_pct, expected_return


def _float_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    column = frame[name]
    if column.dtype == np.float64:
        return column.to_numpy()
    coerced = pd.to_numeric(column, errors="coerce")
    return np.asarray(coerced.to_numpy(np.float64, na_value=np.nan), dtype=np.float64)


def decision_arrays(decisions: pd.DataFrame) -> DecisionArrays:
    """:func:`validate_decisions` without building a frame (same checks, same errors)."""
    require_columns(decisions, DECISION_COLUMNS, "decisions")
    ts = utc_ns(decisions["timestamp"])
    sym, symbols = symbol_codes(decisions["symbol"])
    values = {name: _float_column(decisions, name) for name in DECISION_COLUMNS[2:]}
    values[OPTIONAL_COLUMN] = (  # None: absent (all NaN)
        _float_column(decisions, OPTIONAL_COLUMN) if OPTIONAL_COLUMN in decisions.columns else None
    )
    signal = np.where(np.isnan(values["signal"]), 0.0, values["signal"])
    bad = (np.abs(signal) > 2) | (signal != np.round(signal))
    if bad.any():
        k = int(np.argmax(bad))
        raise InputError(
            f"decision signal must be an integer in -2..2: {symbols[sym[k]]} at {stamp(ts[k])}"
        )
    values["signal"] = signal
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
