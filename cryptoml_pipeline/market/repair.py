"""Explicit, recorded repairs of a long candles frame, then strict validation.

:func:`repair_candles` returns ``(clean frame, RepairReport)``. The rules, in order:

1. Timestamps must be tz-aware (naive ones are an error, never localised); a zone other than UTC
   (or text with offsets) is converted to UTC (``timestamps_converted_to_utc``). Numeric columns
   must be numbers: numeric text (``"12.5"``) is parsed (``numeric_strings_parsed``), other text
   (``"abc"``) is an error naming the column, symbol and timestamp.
2. Unsorted rows are sorted (counted as ``rows_reordered``).
3. Exact duplicate rows are dropped (``exact_duplicates_dropped``); duplicates of a
   (symbol, timestamp) with different values are an error that shows both rows.
4. Hard rules (an error, nothing is repaired): timestamps on the timeframe's grid, no NaN, prices
   > 0, volume >= 0, ``low <= min(open, close)``, ``high >= max(open, close)``.
5. Gaps are counted (``missing_bars``, ``gap_events``, ``longest_gap_bars``) and never silently
   filled. Only with ``max_fill_bars > 0`` are gaps of at most that many bars forward-filled
   (open = high = low = close = previous close, volume 0) and those rows get ``is_filled = True``.
6. Zero-volume bars are flagged (``is_zero_volume``); spikes are flagged (``is_spike``): a close
   return beyond ``k`` robust sigmas (1.4826 × the trailing median absolute return, previous
   ``window`` bars) that the next bar reverses (opposite sign, at least half the size). The spike
   flag looks one bar ahead: it is a data-quality flag, never a model feature.

Rules 1-3 are the same when :class:`~cryptoml_pipeline.market.store.ParquetStore` reads a file (of
any kind: candles, funding, open interest): what it repaired travels with the frame in
``frame.attrs["input_repairs"]`` (``{file path: {count name: n}}``, JSON-able) and
:func:`repair_candles` adds those counts to its report, so they reach ``report.json ->
data.quality`` like its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import DataValidationError
from cryptoml_pipeline.market.schemas import (
    CANDLE_COLUMNS,
    PRICE_COLUMNS,
    numeric_values,
    utc_timestamps,
    validate_candles,
    validate_grid,
)
from cryptoml_pipeline.timing import timeframe_to_timedelta

VALUE_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")
FLAG_COLUMNS: tuple[str, ...] = ("is_filled", "is_zero_volume", "is_spike")
_MAD_TO_SIGMA = 1.4826
INPUT_REPAIRS = "input_repairs"  # frame.attrs key: {file path: {count name: n}} of a store read
# the repairs a store read can make (names shared with RepairReport)
READ_REPAIRS: tuple[str, ...] = (
    "timestamps_converted_to_utc",
    "numeric_strings_parsed",
    "rows_reordered",
    "exact_duplicates_dropped",
)


@dataclass(frozen=True)
class RepairReport:
    """Counts of every repair and flag; ``longest_gap_bars`` is a maximum, the rest are sums."""

    rows_in: int = 0
    rows_out: int = 0
    rows_reordered: int = 0
    exact_duplicates_dropped: int = 0
    timestamps_converted_to_utc: int = 0
    numeric_strings_parsed: int = 0
    missing_bars: int = 0
    gap_events: int = 0
    longest_gap_bars: int = 0
    filled_bars: int = 0
    zero_volume_bars: int = 0
    spike_bars: int = 0

    def as_metadata(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @property
    def warnings(self) -> dict[str, int]:
        """The soft findings (non-blocking): gaps, zero-volume bars, spikes."""
        return {
            "missing_bars": self.missing_bars,
            "zero_volume_bars": self.zero_volume_bars,
            "spike_bars": self.spike_bars,
        }

    @staticmethod
    def combine(reports: Iterable[RepairReport]) -> RepairReport:
        total = RepairReport()
        for rep in reports:
            summed = {
                f.name: getattr(total, f.name) + getattr(rep, f.name)
                for f in dataclasses.fields(RepairReport)
            }
            summed["longest_gap_bars"] = max(total.longest_gap_bars, rep.longest_gap_bars)
            total = RepairReport(**summed)
        return total


def repair_candles(
    df: pd.DataFrame,
    timeframe: str,
    *,
    source: str,
    max_fill_bars: int = 0,
    outlier_k: float = 8.0,
    outlier_window: int = 288,
) -> tuple[pd.DataFrame, RepairReport]:
    """Clean long candles (``CANDLE_COLUMNS`` + ``FLAG_COLUMNS``) and the report of what was done.

    Raises :class:`DataValidationError` (one line naming ``source``, the symbol and the first
    offending timestamp) on any hard error; ``df`` itself is never modified.
    """
    bar = timeframe_to_timedelta(timeframe)
    missing = [c for c in CANDLE_COLUMNS if c not in df.columns]
    if missing:
        raise DataValidationError(f"{source}: candles frame lacks column(s) {missing}")
    out = df[list(CANDLE_COLUMNS)].reset_index(drop=True)
    out["timestamp"], converted = utc_timestamps(out["timestamp"], source=source)
    out["symbol"] = out["symbol"].astype("str")
    parsed = 0
    for col in VALUE_COLUMNS:
        out[col], n = numeric_values(out, col, source=source)
        parsed += n
    rows_in = len(out)

    out, reordered = sort_rows(out)
    out, exact = drop_exact_duplicates(out, VALUE_COLUMNS, kind="candles", source=source)
    validate_grid(out, timeframe, source=source)
    out = validate_candles(out, source=source)

    gaps = _gaps(out, bar)
    filled = _fill(out, gaps, bar, max_fill_bars)
    out = pd.concat([out.assign(is_filled=False), filled], ignore_index=True)
    out = out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    out["is_zero_volume"] = (out["volume"] == 0) & ~out["is_filled"]
    out["is_spike"] = spike_flags(out, k=outlier_k, window=outlier_window)

    missing_bars = gaps["missing"].to_numpy()
    read = read_repair_counts(df)
    report = RepairReport(
        rows_in=rows_in + read["exact_duplicates_dropped"],
        rows_out=len(out),
        rows_reordered=reordered + read["rows_reordered"],
        exact_duplicates_dropped=exact + read["exact_duplicates_dropped"],
        timestamps_converted_to_utc=converted + read["timestamps_converted_to_utc"],
        numeric_strings_parsed=parsed + read["numeric_strings_parsed"],
        missing_bars=int(missing_bars.sum()),
        gap_events=len(missing_bars),
        longest_gap_bars=int(missing_bars.max()) if len(missing_bars) else 0,
        filled_bars=len(filled),
        zero_volume_bars=int(out["is_zero_volume"].sum()),
        spike_bars=int(out["is_spike"].sum()),
    )
    return out, report


def read_repair_counts(df: pd.DataFrame) -> dict[str, int]:
    """The store-read repairs ``df`` carries (``attrs["input_repairs"]``), summed over its files."""
    files = df.attrs.get(INPUT_REPAIRS) or {}
    return {name: sum(int(c.get(name, 0)) for c in files.values()) for name in READ_REPAIRS}


def merge_input_repairs(frames: Iterable[pd.DataFrame]) -> dict[str, dict[str, int]]:
    """The ``attrs["input_repairs"]`` of several frames in one (e.g. for a concatenation, which
    keeps ``attrs`` only when all inputs have equal ones)."""
    merged: dict[str, dict[str, int]] = {}
    for frame in frames:
        merged |= frame.attrs.get(INPUT_REPAIRS) or {}
    return merged


def sort_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Rows sorted by (symbol, timestamp), stable, and the number of backward steps repaired."""
    step = df.groupby("symbol", sort=False)["timestamp"].diff()
    reordered = int((step < pd.Timedelta(0)).sum())
    if reordered == 0 and df["symbol"].nunique() <= 1:
        return df.reset_index(drop=True), 0
    return df.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True), reordered


def drop_exact_duplicates(
    df: pd.DataFrame, values: tuple[str, ...], *, kind: str, source: str
) -> tuple[pd.DataFrame, int]:
    """``df`` (sorted) without exact duplicate rows and their number; duplicates of a
    (symbol, timestamp) with different ``values`` are a :class:`DataValidationError` showing both
    rows."""
    keys = ["symbol", "timestamp"]
    exact = df.duplicated(subset=[*keys, *values], keep="first")
    out = df[~exact]
    clash = out.duplicated(subset=keys, keep=False)
    if clash.any():
        rows = out[clash]
        first = rows.iloc[0]
        both = rows[(rows["symbol"] == first["symbol"]) & (rows["timestamp"] == first["timestamp"])]
        shown = " vs ".join(
            "(" + ", ".join(f"{c}={r[c]}" for c in values) + ")" for _, r in both.head(2).iterrows()
        )
        raise DataValidationError(
            f"{source}: conflicting duplicate {kind} for {first['symbol']} at "
            f"{first['timestamp']}: {shown} ({int(clash.sum())} rows conflict)"
        )
    return out.reset_index(drop=True), int(exact.sum())


def _gaps(df: pd.DataFrame, bar: pd.Timedelta) -> pd.DataFrame:
    """One row per gap: the row before it (index ``after``) and the number of missing bars."""
    steps = df.groupby("symbol", sort=False)["timestamp"].diff() / bar
    missing = (steps - 1).where(steps > 1)
    idx = np.flatnonzero(missing.notna().to_numpy())
    return pd.DataFrame(
        {"after": idx - 1, "missing": missing.iloc[idx].round().astype("int64").to_numpy()}
    )


def _fill(df: pd.DataFrame, gaps: pd.DataFrame, bar: pd.Timedelta, max_bars: int) -> pd.DataFrame:
    """Rows forward-filling the gaps of at most ``max_bars`` bars (none when ``max_bars`` is 0)."""
    short = gaps[gaps["missing"] <= max_bars] if max_bars > 0 else gaps.iloc[:0]
    counts = short["missing"].to_numpy()
    prev = np.repeat(short["after"].to_numpy(), counts)
    offset = np.concatenate([np.arange(1, n + 1) for n in counts]) if len(counts) else []
    base = df.iloc[prev].reset_index(drop=True)
    close = base["close"].to_numpy()
    return pd.DataFrame(
        {
            "timestamp": base["timestamp"] + bar * np.asarray(offset, dtype="int64"),
            "symbol": base["symbol"],
            **{c: close for c in PRICE_COLUMNS},
            "volume": np.zeros(len(base)),
            "is_filled": np.ones(len(base), dtype=bool),
        }
    )


def spike_flags(df: pd.DataFrame, *, k: float, window: int) -> pd.Series:
    """True where the close jumps beyond ``k`` robust sigmas and the next bar reverses it."""
    ret = np.log(df["close"]).groupby(df["symbol"], sort=False).diff()
    scale = (
        ret.abs()
        .groupby(df["symbol"], sort=False)
        .transform(lambda s: s.shift(1).rolling(window, min_periods=min(window, 20)).median())
    )
    sigma = _MAD_TO_SIGMA * scale
    nxt = ret.groupby(df["symbol"], sort=False).shift(-1)
    jump = ret.abs() > k * sigma
    reverses = (np.sign(nxt) == -np.sign(ret)) & (nxt.abs() >= 0.5 * ret.abs())
    return (jump & reverses & (sigma > 0)).fillna(False).astype(bool)


def hard_rule_violations(candles: pd.DataFrame, timeframe: str) -> dict[str, int]:
    """Rows breaking each hard rule (all zero for a clean frame); never raises on bad values."""
    from cryptoml_pipeline.market.schemas import off_grid

    values = candles[list(VALUE_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    prices = values[list(PRICE_COLUMNS)]
    step = candles.groupby("symbol", sort=False)["timestamp"].diff()
    low_ok = values["low"] <= np.minimum(values["open"], values["close"])
    high_ok = values["high"] >= np.maximum(values["open"], values["close"])
    return {
        "off_grid": int(off_grid(candles["timestamp"], timeframe).sum()),
        "duplicate_timestamps": int(candles.duplicated(subset=["symbol", "timestamp"]).sum()),
        "unsorted": int((step < pd.Timedelta(0)).sum()),
        "nan_values": int(values.isna().any(axis=1).sum()),
        "non_positive_prices": int((prices <= 0).any(axis=1).sum()),
        "negative_volume": int((values["volume"] < 0).sum()),
        "ohlc_inconsistent": int((~(low_ok & high_ok) & values.notna().all(axis=1)).sum()),
    }
