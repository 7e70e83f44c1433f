"""Explicit, recorded repairs of a long candles frame, then strict validation.

:func:`repair_candles` returns ``(clean frame, RepairReport)``. The rules, in order:

1. Timestamps must be tz-aware (naive ones are an error, never localised); numeric columns must be
   numbers (a string such as ``"abc"`` is an error naming the column, symbol and timestamp).
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
    normalise_timestamps,
    validate_candles,
    validate_grid,
)
from cryptoml_pipeline.timing import timeframe_to_timedelta

VALUE_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")
FLAG_COLUMNS: tuple[str, ...] = ("is_filled", "is_zero_volume", "is_spike")
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class RepairReport:
    """Counts of every repair and flag; ``longest_gap_bars`` is a maximum, the rest are sums."""

    rows_in: int = 0
    rows_out: int = 0
    rows_reordered: int = 0
    exact_duplicates_dropped: int = 0
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
    out["timestamp"] = normalise_timestamps(out["timestamp"], source=source)
    out["symbol"] = out["symbol"].astype("str")
    for col in VALUE_COLUMNS:
        out[col] = _numeric(out, col, source)
    rows_in = len(out)

    step = out.groupby("symbol", sort=False)["timestamp"].diff()
    reordered = int((step < pd.Timedelta(0)).sum())
    out = out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)

    out, exact = _drop_duplicates(out, source)
    validate_grid(out, timeframe, source=source)
    out = validate_candles(out, source=source)

    gaps = _gaps(out, bar)
    filled = _fill(out, gaps, bar, max_fill_bars)
    out = pd.concat([out.assign(is_filled=False), filled], ignore_index=True)
    out = out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    out["is_zero_volume"] = (out["volume"] == 0) & ~out["is_filled"]
    out["is_spike"] = spike_flags(out, k=outlier_k, window=outlier_window)

    missing_bars = gaps["missing"].to_numpy()
    report = RepairReport(
        rows_in=rows_in,
        rows_out=len(out),
        rows_reordered=reordered,
        exact_duplicates_dropped=exact,
        missing_bars=int(missing_bars.sum()),
        gap_events=len(missing_bars),
        longest_gap_bars=int(missing_bars.max()) if len(missing_bars) else 0,
        filled_bars=len(filled),
        zero_volume_bars=int(out["is_zero_volume"].sum()),
        spike_bars=int(out["is_spike"].sum()),
    )
    return out, report


def _numeric(df: pd.DataFrame, col: str, source: str) -> pd.Series:
    values = df[col]
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna() & values.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(
            f"{source}: non-numeric value {values.iloc[i]!r} in column '{col}' "
            f"({df['symbol'].iloc[i]} at {df['timestamp'].iloc[i]}; {int(bad.sum())} such rows)"
        )
    return parsed.astype("float64")


def _drop_duplicates(df: pd.DataFrame, source: str) -> tuple[pd.DataFrame, int]:
    keys = ["symbol", "timestamp"]
    exact = df.duplicated(keep="first")
    out = df[~exact]
    clash = out.duplicated(subset=keys, keep=False)
    if clash.any():
        rows = out[clash]
        first = rows.iloc[0]
        both = rows[(rows["symbol"] == first["symbol"]) & (rows["timestamp"] == first["timestamp"])]
        shown = " vs ".join(
            "(" + ", ".join(f"{c}={r[c]}" for c in VALUE_COLUMNS) + ")"
            for _, r in both.head(2).iterrows()
        )
        raise DataValidationError(
            f"{source}: conflicting duplicate candles for {first['symbol']} at "
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
