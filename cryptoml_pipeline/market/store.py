"""``ParquetStore``: read and write candles/funding in the layout of ``../shared/data``.

Reads select only the needed columns and push the ``[start, end)`` window down to pyarrow.
Writes merge with the existing file (new rows win on equal timestamps), sort, validate and replace
the file atomically (temporary file in the same directory + ``os.replace``).

``replace_*_range`` is the idempotent write of a daily partition: every stored row in
``[start, end)`` is replaced by the new rows (re-materialising a day never duplicates a row), rows
outside the range stay byte-for-byte what they were, and a failure before the final rename leaves
the old file untouched.

**Reading a file: one rule for every kind** (spot and perpetual candles, funding, open interest),
described in :mod:`.input_files`: every problem is one :class:`InputFileError` line (the file's
path, then the problem; an :class:`~cryptoml_pipeline.errors.InputError`, so the CLI prints it and
exits 2), every repair is recorded. In short: naive timestamps are rejected, another zone is
converted to UTC; unsorted rows are sorted, exact duplicates dropped, conflicting ones rejected;
then the pandera schema of the kind (and the grid, for candles). The repairs of a read are logged,
kept per file in :attr:`ParquetStore.read_repairs` and carried by the frame in
``frame.attrs["input_repairs"]``, which :func:`~cryptoml_pipeline.market.repair.repair_candles`
adds to its report (``report.json -> data.quality``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market.input_files import (
    Coverage,
    InputFileError,
    coverage,
    named,
    read_all,
    read_window,
    repair_rows,
    window_timestamps,
)
from cryptoml_pipeline.market.layout import (
    candles_path,
    funding_path,
    open_interest_path,
    perpetual_symbol,
)
from cryptoml_pipeline.market.repair import INPUT_REPAIRS
from cryptoml_pipeline.market.schemas import (
    CANDLE_COLUMNS,
    FUNDING_COLUMNS,
    OPEN_INTEREST_COLUMNS,
    OPEN_INTEREST_VALUES,
    PRICE_COLUMNS,
    normalise_timestamps,
    validate_candles,
    validate_funding,
    validate_grid,
    validate_open_interest,
)
from cryptoml_pipeline.timing import to_utc

__all__ = ["Coverage", "InputFileError", "ParquetStore"]

log = logging.getLogger(__name__)

# Column order of the shared files.
CANDLE_FILE_COLUMNS: tuple[str, ...] = (
    "timestamp",
    *PRICE_COLUMNS,
    "volume",
    "symbol",
    "timeframe",
)
FUNDING_FILE_COLUMNS: tuple[str, ...] = FUNDING_COLUMNS
Validator = Callable[..., pd.DataFrame]


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
        return coverage(self.candles_path(symbol, timeframe))

    def funding_coverage(self, perp_symbol: str) -> Coverage | None:
        """(first, last) funding settlement time, or ``None`` when there is no file / no rows."""
        return coverage(self.funding_path(perp_symbol))

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
        return window_timestamps(path, start, end)

    def count_rows(self, path: Path, start: pd.Timestamp, end: pd.Timestamp) -> int:
        """Number of stored rows stamped in ``[start, end)`` (0 when the file does not exist)."""
        if not path.is_file():
            return 0
        return len(window_timestamps(path, start, end))

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
        with named(path):
            df, converted = read_window(path, wanted, start, end, what=what)
            if as_symbol is not None:
                df["symbol"] = as_symbol
            df, counts = repair_rows(df[list(columns)], columns[2:], kind=kind, source=source)
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
        old = read_all(path, columns)
        keep = old[(old["timestamp"] < start) | (old["timestamp"] >= end)]
        if len(keep) and len(new):
            merged = pd.concat([keep[columns], new[columns]], ignore_index=True)
        elif len(keep):
            merged = keep[columns]
    return merged.sort_values("timestamp", kind="stable").reset_index(drop=True)


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
        old = read_all(path, columns)
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
