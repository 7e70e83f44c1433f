"""Reading one market-data file of the store: the same rules for every kind (spot and perpetual
candles, funding, open interest), each problem one :class:`InputFileError` line, each repair
counted. Used by :class:`~cryptoml_pipeline.market.store.ParquetStore`.

**Reading a file: one rule for every kind** (spot and perpetual candles, funding, open interest).
Each read checks, in this order, and either repairs and records or stops with one line
(:class:`InputFileError`, an :class:`~cryptoml_pipeline.errors.InputError`, whose message holds
the file's path — first, for every problem of an existing file — and names the problem; the CLI
prints it and exits 2):

* unreadable / corrupt parquet, or a required column missing -> error;
* timestamps: tz-aware UTC is kept; **naive timestamps are rejected** (a naive time is never
  guessed to be UTC); a tz-aware zone other than UTC (``Europe/Berlin``) or text with offsets,
  mixed ones included, is converted to UTC -> repair ``timestamps_converted_to_utc``;
* numeric columns: numeric text is parsed (``numeric_strings_parsed``), other text -> error;
* unsorted rows are sorted (``rows_reordered``); exact duplicate rows are dropped
  (``exact_duplicates_dropped``); duplicates of a timestamp with different values -> error showing
  both rows;
* the pandera schema of the kind (NaN, prices > 0, OHLC consistency, funding finite, open interest
  >= 0) and, for candles, the timeframe's grid -> error.

The window ``[start, end)`` is pushed down to pyarrow only in the file's own timestamp type
(tz-aware columns), and always applied exactly after the timestamps are validated, so a naive or
text column gives the error above, never an arrow traceback. The repairs of a read are logged,
kept per file in :attr:`ParquetStore.read_repairs` and carried by the frame in
``frame.attrs["input_repairs"]`` (``{path: {count: n}}``), which
:func:`~cryptoml_pipeline.market.repair.repair_candles` adds to its report (``report.json ->
data.quality``).
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.market.repair import drop_exact_duplicates, sort_rows
from cryptoml_pipeline.market.schemas import numeric_values, utc_timestamps
from cryptoml_pipeline.timing import to_utc

_TS_TYPE = pa.timestamp("ns", tz="UTC")
_NAT = np.iinfo(np.int64).min
Coverage = tuple[pd.Timestamp, pd.Timestamp]


class InputFileError(InputError, DataValidationError):
    """A file of the store that can't be used: one line, the file's path first, then the problem.

    Both an :class:`InputError` (the CLI prints it and exits 2) and a
    :class:`DataValidationError` (what schema failures of stored data always were)."""


@contextlib.contextmanager
def named(path: Path) -> Iterator[None]:
    """Turn a validation failure of ``path`` into an :class:`InputFileError` (the same line)."""
    try:
        yield
    except InputFileError:
        raise
    except DataValidationError as exc:
        raise InputFileError(str(exc)) from None


def _read_table(
    path: Path, columns: list[str], start: pd.Timestamp | None, end: pd.Timestamp | None
) -> tuple[pa.Table, bool]:
    """The columns of ``path`` and whether the window was applied exactly: it is pushed down where
    the file's timestamp type allows it (tz-aware timestamps); any arrow / IO failure is one
    :class:`InputFileError` line."""
    try:
        schema = pq.read_schema(path)
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise InputFileError(
                f"{path}: file lacks column(s) {missing} (it has {list(schema.names)})"
            )
        ts_type = schema.field("timestamp").type
        aware = pa.types.is_timestamp(ts_type) and ts_type.tz is not None
        filters, exact = _window_filter(start, end, ts_type) if aware else (None, False)
        table = pq.read_table(path, columns=columns, filters=filters)
        return table, exact or (start is None and end is None)
    except (pa.ArrowException, OSError, KeyError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputFileError(f"{path}: cannot read parquet file ({reason})") from None


def _window_filter(
    start: pd.Timestamp | None, end: pd.Timestamp | None, ts_type: pa.DataType
) -> tuple[pc.Expression | None, bool]:
    """``(start <= timestamp < end`` in the file's own timestamp type, whether that is exact)``;
    a bound that this type can't hold exactly is left to the exact filter after reading."""
    expr, exact = None, True
    for bound, op in ((start, operator.ge), (end, operator.lt)):
        if bound is None:
            continue
        try:
            value = pa.scalar(to_utc(bound).as_unit("ns").value, type=_TS_TYPE).cast(ts_type)
        except pa.ArrowInvalid:
            exact = False
            continue
        term = op(pc.field("timestamp"), value)
        expr = term if expr is None else expr & term
    return expr, exact


def _in_window(
    df: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None
) -> pd.DataFrame:
    ts = df["timestamp"]
    keep = pd.Series(True, index=df.index)
    if start is not None:
        keep &= ts >= to_utc(start)
    if end is not None:
        keep &= ts < to_utc(end)
    return df[keep.to_numpy()].reset_index(drop=True)


def read_window(
    path: Path,
    columns: list[str],
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    *,
    what: str,
) -> tuple[pd.DataFrame, int]:
    """Rows of ``path`` in ``[start, end)``, timestamps ns UTC, and the rows converted to UTC."""
    if not path.is_file():
        raise InputFileError(f"no {what}: file {path} does not exist")
    table, exact = _read_table(path, columns, start, end)
    df = table.to_pandas()
    with named(path):
        df["timestamp"], converted = utc_timestamps(df["timestamp"], source=str(path))
    return (df if exact else _in_window(df, start, end)), converted


def read_all(path: Path, columns: list[str]) -> pd.DataFrame:
    """Every row of a stored file (for a merge), timestamps validated and ns UTC."""
    return read_window(path, columns, None, None, what="stored rows")[0]


def window_timestamps(path: Path, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    df, _ = read_window(path, ["timestamp"], start, end, what="stored rows")
    return df["timestamp"]


def repair_rows(
    df: pd.DataFrame, values: tuple[str, ...], *, kind: str, source: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Numbers parsed, rows sorted and exact duplicates dropped (repair rules 1-3 of
    :mod:`.repair`); a clean file (one symbol, strictly increasing timestamps) skips the work."""
    parsed = 0
    for col in values:
        df[col], n = numeric_values(df, col, source=source)
        parsed += n
    counts = {"numeric_strings_parsed": parsed, "rows_reordered": 0, "exact_duplicates_dropped": 0}
    # strictly increasing timestamps (NaT is the smallest int64, so only a first NaT can hide):
    # already sorted, no duplicates of any kind
    stamps = df["timestamp"].array.asi8
    if len(stamps) == 0 or (stamps[0] != _NAT and bool((np.diff(stamps) > 0).all())):
        return df, counts
    df, counts["rows_reordered"] = sort_rows(df)
    df, counts["exact_duplicates_dropped"] = drop_exact_duplicates(
        df, values, kind=kind, source=source
    )
    return df, counts


def coverage(path: Path) -> Coverage | None:
    if not path.is_file():
        return None
    column = _read_table(path, ["timestamp"], None, None)[0].column("timestamp")
    if len(column) == 0 or column.null_count == len(column):
        return None
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        bounds = pc.min_max(column.cast(_TS_TYPE))
        return to_utc(bounds["min"].as_py()), to_utc(bounds["max"].as_py())
    with named(path):
        stamps, _ = utc_timestamps(column.to_pandas(), source=str(path))
    stamps = stamps.dropna()
    return (stamps.min(), stamps.max()) if len(stamps) else None
