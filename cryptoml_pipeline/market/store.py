"""``ParquetStore``: read and write candles/funding in the layout of ``../shared/data``.

Reads select only the needed columns and push the ``[start, end)`` window down to pyarrow.
Writes merge with the existing file (new rows win on equal timestamps), sort, validate and replace
the file atomically (temporary file in the same directory + ``os.replace``).

``replace_*_range`` is the idempotent write of a daily partition: every stored row in
``[start, end)`` is replaced by the new rows (re-materialising a day never duplicates a row), rows
outside the range stay byte-for-byte what they were, and a failure before the final rename leaves
the old file untouched.

**Reading a file: one rule for every kind** (spot and perpetual candles, funding, open interest).
Each read checks, in this order, and either repairs and records or stops with one line
(:class:`InputFileError`, an :class:`~cryptoml_pipeline.errors.InputError`, whose message starts
with the file's path and names the problem; the CLI prints it and exits 2):

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
import logging
import operator
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.market.layout import (
    candles_path,
    funding_path,
    open_interest_path,
    perpetual_symbol,
)
from cryptoml_pipeline.market.repair import (
    INPUT_REPAIRS,
    drop_exact_duplicates,
    sort_rows,
)
from cryptoml_pipeline.market.schemas import (
    CANDLE_COLUMNS,
    FUNDING_COLUMNS,
    OPEN_INTEREST_COLUMNS,
    OPEN_INTEREST_VALUES,
    PRICE_COLUMNS,
    normalise_timestamps,
    numeric_values,
    utc_timestamps,
    validate_candles,
    validate_funding,
    validate_grid,
    validate_open_interest,
)
from cryptoml_pipeline.timing import to_utc

log = logging.getLogger(__name__)

_TS_TYPE = pa.timestamp("ns", tz="UTC")
_NAT = np.iinfo(np.int64).min
# Column order of the shared files.
CANDLE_FILE_COLUMNS: tuple[str, ...] = (
    "timestamp",
    *PRICE_COLUMNS,
    "volume",
    "symbol",
    "timeframe",
)
FUNDING_FILE_COLUMNS: tuple[str, ...] = FUNDING_COLUMNS
Coverage = tuple[pd.Timestamp, pd.Timestamp]
Validator = Callable[..., pd.DataFrame]


class InputFileError(InputError, DataValidationError):
    """A file of the store that can't be used: one line, the file's path first, then the problem.

    Both an :class:`InputError` (the CLI prints it and exits 2) and a
    :class:`DataValidationError` (what schema failures of stored data always were)."""


class ParquetStore:
    """Market data under ``root`` (``root/market/*.parquet``, ``root/funding/*.parquet``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._read_repairs: dict[str, dict[str, int]] = {}

    @property
    def read_repairs(self) -> dict[str, dict[str, int]]:
        """What reads of this store repaired, per file path (nonzero counts only)."""
        return {path: dict(counts) for path, counts in self._read_repairs.items()}

    def __repr__(self) -> str:
        return f"ParquetStore({str(self.root)!r})"

    # ------------------------------------------------------------------ paths
    def candles_path(self, symbol: str, timeframe: str) -> Path:
        return candles_path(self.root, symbol, timeframe)

    def funding_path(self, perp_symbol: str) -> Path:
        return funding_path(self.root, perp_symbol)

    def has_candles(self, symbol: str, timeframe: str) -> bool:
        return self.candles_path(symbol, timeframe).is_file()

    def has_funding(self, perp_symbol: str) -> bool:
        return self.funding_path(perp_symbol).is_file()

    # ------------------------------------------------------------------ reads
    def read_candles(
        self,
        symbol: str,
        timeframe: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        *,
        as_symbol: str | None = None,
    ) -> pd.DataFrame:
        """Validated long candles of ``symbol`` for open times in ``[start, end)``.

        The ``symbol`` column is ``as_symbol`` when given (e.g. the user symbol ``BTC/USDT`` for
        the candles of ``BTC/USDT:USDT``); the file's ``timeframe`` column is dropped.
        """
        path = self.candles_path(symbol, timeframe)
        return self._read(
            path,
            CANDLE_COLUMNS,
            start,
            end,
            what=f"{symbol} {timeframe} candles",
            kind="candles",
            as_symbol=as_symbol,
            validate=validate_candles,
            timeframe=timeframe,
        )

    def read_funding(
        self,
        perp_symbol: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
        *,
        as_symbol: str | None = None,
    ) -> pd.DataFrame:
        """Validated long funding of the perpetual for settlement times in ``[start, end)``."""
        path = self.funding_path(perp_symbol)
        return self._read(
            path,
            FUNDING_COLUMNS,
            start,
            end,
            what=f"{perp_symbol} funding",
            kind="funding",
            as_symbol=as_symbol,
            validate=validate_funding,
        )

    def candle_coverage(self, symbol: str, timeframe: str) -> Coverage | None:
        """(first, last) candle open time, or ``None`` when there is no file or it is empty."""
        return _coverage(self.candles_path(symbol, timeframe))

    def funding_coverage(self, perp_symbol: str) -> Coverage | None:
        """(first, last) funding settlement time, or ``None`` when there is no file / no rows."""
        return _coverage(self.funding_path(perp_symbol))

    # ----------------------------------------------------------------- writes
    def write_candles(self, df: pd.DataFrame, symbol: str, timeframe: str) -> Path:
        """Merge ``df`` into the candles file of ``symbol`` (new rows win) and write atomically."""
        path = self.candles_path(symbol, timeframe)
        new = _prepare(df, CANDLE_COLUMNS[2:], symbol, source=f"new {symbol} {timeframe} candles")
        new["timeframe"] = timeframe
        merged = _merge(path, new, list(CANDLE_FILE_COLUMNS))
        validate_candles(merged, source=str(path))
        _atomic_write(merged, path)
        log.info("wrote %d %s %s candles to %s", len(merged), symbol, timeframe, path)
        return path

    def write_funding(self, df: pd.DataFrame, perp_symbol: str) -> Path:
        """Merge ``df`` into the funding file of the perpetual (new rows win), atomically."""
        perp = perpetual_symbol(perp_symbol)
        path = self.funding_path(perp)
        new = _prepare(df, FUNDING_COLUMNS[2:], perp, source=f"new {perp} funding")
        merged = _merge(path, new, list(FUNDING_FILE_COLUMNS))
        validate_funding(merged, source=str(path))
        _atomic_write(merged, path)
        log.info("wrote %d %s funding rows to %s", len(merged), perp, path)
        return path

    # ------------------------------------------------------- partition writes
    def replace_candles_range(
        self,
        df: pd.DataFrame,
        symbol: str,
        timeframe: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
    ) -> Path:
        """Replace the stored candles with open times in ``[start, end)`` by ``df``, atomically."""
        path = self.candles_path(symbol, timeframe)
        new = _prepare(df, CANDLE_COLUMNS[2:], symbol, source=f"new {symbol} {timeframe} candles")
        new["timeframe"] = timeframe
        # rows outside the range were validated when written, and the new rows lie inside it:
        # validating the new rows keeps the whole file sorted, unique and valid
        validate_candles(new.drop(columns="timeframe"), source=f"new {symbol} {timeframe} candles")
        merged = _replace(path, new, list(CANDLE_FILE_COLUMNS), start, end)
        _atomic_write(merged, path)
        log.info(
            "replaced %s %s candles in [%s, %s): %d rows", symbol, timeframe, start, end, len(new)
        )
        return path

    def replace_funding_range(
        self, df: pd.DataFrame, perp_symbol: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> Path:
        """Replace the stored funding settlements in ``[start, end)`` by ``df``, atomically."""
        perp = perpetual_symbol(perp_symbol)
        path = self.funding_path(perp)
        new = _prepare(df, FUNDING_COLUMNS[2:], perp, source=f"new {perp} funding")
        validate_funding(new, source=f"new {perp} funding")
        merged = _replace(path, new, list(FUNDING_FILE_COLUMNS), start, end)
        _atomic_write(merged, path)
        return path

    def open_interest_path(self, perp_symbol: str, period: str) -> Path:
        return open_interest_path(self.root, perp_symbol, period)

    def replace_open_interest_range(
        self,
        df: pd.DataFrame,
        perp_symbol: str,
        period: str,
        start: pd.Timestamp,
        end: pd.Timestamp,
    ) -> Path:
        """Replace the stored open interest stamped in ``[start, end)`` by ``df``, atomically."""
        perp = perpetual_symbol(perp_symbol)
        path = self.open_interest_path(perp, period)
        new = _prepare(df, OPEN_INTEREST_VALUES, perp, source=f"new {perp} open interest")
        validate_open_interest(new, source=f"new {perp} open interest")
        merged = _replace(path, new, list(OPEN_INTEREST_COLUMNS), start, end)
        _atomic_write(merged, path)
        return path

    def read_open_interest(
        self,
        perp_symbol: str,
        period: str,
        start: pd.Timestamp | None = None,
        end: pd.Timestamp | None = None,
    ) -> pd.DataFrame:
        """Validated long open interest of the perpetual stamped in ``[start, end)``."""
        path = self.open_interest_path(perp_symbol, period)
        return self._read(
            path,
            OPEN_INTEREST_COLUMNS,
            start,
            end,
            what=f"{perp_symbol} open interest",
            kind="open interest",
            as_symbol=None,
            validate=validate_open_interest,
        )

    def read_timestamps(self, path: Path, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
        """The stored timestamps in ``[start, end)`` (ns UTC) of any file of the store."""
        return _window_timestamps(path, start, end)

    def count_rows(self, path: Path, start: pd.Timestamp, end: pd.Timestamp) -> int:
        """Number of stored rows stamped in ``[start, end)`` (0 when the file does not exist)."""
        if not path.is_file():
            return 0
        return len(_window_timestamps(path, start, end))

    def _read(
        self,
        path: Path,
        columns: tuple[str, ...],
        start: pd.Timestamp | None,
        end: pd.Timestamp | None,
        *,
        what: str,
        kind: str,
        as_symbol: str | None,
        validate: Validator,
        timeframe: str | None = None,
    ) -> pd.DataFrame:
        """One file read by the rules of the module docstring: validated frame, repairs in
        ``attrs["input_repairs"]``; any problem is one :class:`InputFileError` line."""
        source = str(path)
        wanted = [c for c in columns if c != "symbol" or as_symbol is None]
        with _named(path):
            df, converted = _read_window(path, wanted, start, end, what=what)
            if as_symbol is not None:
                df["symbol"] = as_symbol
            df, counts = _repair_rows(df[list(columns)], columns[2:], kind=kind, source=source)
            out = validate(df, source=source)
            if timeframe is not None:
                validate_grid(out, timeframe, source=source)
        counts = {"timestamps_converted_to_utc": converted, **counts}
        counts = {name: n for name, n in counts.items() if n}
        if counts:
            log.warning("%s: repaired on read: %s", source, counts)
            self._read_repairs[source] = counts
            out.attrs[INPUT_REPAIRS] = {source: counts}
        return out


def _replace(
    path: Path,
    new: pd.DataFrame,
    columns: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """Stored rows outside ``[start, end)`` + ``new`` (which must lie inside it), sorted."""
    start, end = to_utc(start), to_utc(end)
    outside = new[(new["timestamp"] < start) | (new["timestamp"] >= end)]
    if len(outside):
        raise InputError(
            f"{path.name}: new row at {outside['timestamp'].iloc[0]} lies outside the partition "
            f"[{start}, {end})"
        )
    merged = new[columns]
    if path.is_file():
        old = _read_all(path, columns)
        keep = old[(old["timestamp"] < start) | (old["timestamp"] >= end)]
        if len(keep) and len(new):
            merged = pd.concat([keep[columns], new[columns]], ignore_index=True)
        elif len(keep):
            merged = keep[columns]
    return merged.sort_values("timestamp", kind="stable").reset_index(drop=True)


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
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


def _read_window(
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
    with _named(path):
        df["timestamp"], converted = utc_timestamps(df["timestamp"], source=str(path))
    return (df if exact else _in_window(df, start, end)), converted


def _read_all(path: Path, columns: list[str]) -> pd.DataFrame:
    """Every row of a stored file (for a merge), timestamps validated and ns UTC."""
    return _read_window(path, columns, None, None, what="stored rows")[0]


def _window_timestamps(path: Path, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    df, _ = _read_window(path, ["timestamp"], start, end, what="stored rows")
    return df["timestamp"]


def _repair_rows(
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


def _coverage(path: Path) -> Coverage | None:
    if not path.is_file():
        return None
    column = _read_table(path, ["timestamp"], None, None)[0].column("timestamp")
    if len(column) == 0 or column.null_count == len(column):
        return None
    if pa.types.is_timestamp(column.type) and column.type.tz is not None:
        bounds = pc.min_max(column.cast(_TS_TYPE))
        return to_utc(bounds["min"].as_py()), to_utc(bounds["max"].as_py())
    with _named(path):
        stamps, _ = utc_timestamps(column.to_pandas(), source=str(path))
    stamps = stamps.dropna()
    return (stamps.min(), stamps.max()) if len(stamps) else None


def _prepare(
    df: pd.DataFrame, values: tuple[str, ...], symbol: str, *, source: str
) -> pd.DataFrame:
    missing = [c for c in ("timestamp", *values) if c not in df.columns]
    if missing:
        raise InputError(f"{source}: frame lacks column(s) {missing}")
    out = df[["timestamp", *values]].copy()
    out["timestamp"] = normalise_timestamps(out["timestamp"], source=source)
    out["symbol"] = symbol
    return out


def _merge(path: Path, new: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Existing rows + ``new``; on equal timestamps the new row wins; sorted by timestamp."""
    merged = new[columns]
    if path.is_file():
        old = _read_all(path, columns)
        if len(old) and len(new):
            merged = pd.concat([old[columns], new[columns]], ignore_index=True)
        elif len(old):
            merged = old[columns]
    merged = merged.drop_duplicates(subset="timestamp", keep="last")
    return merged.sort_values("timestamp", kind="stable").reset_index(drop=True)


def _atomic_write(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
