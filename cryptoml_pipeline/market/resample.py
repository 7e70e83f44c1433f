"""Higher timeframes resampled from a base timeframe (candle open-time convention).

Buckets are left-closed and left-labelled: the 4h bar stamped 08:00 aggregates the base bars with
open times in ``[08:00, 12:00)``: open = first open, high = max, low = min, close = last close,
volume = sum. A resampled bar exists only when every base bar of its bucket is present (and none
of them is a forward-filled bar); with ``keep_partial=True`` incomplete buckets are kept and
marked ``is_partial = True`` instead of being dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market.schemas import CANDLE_COLUMNS
from cryptoml_pipeline.timing import timeframe_to_timedelta

_EPOCH = pd.Timestamp(0, tz="UTC")


@dataclass(frozen=True)
class ResampleReport:
    bars_out: int
    complete_bars: int
    partial_bars: int  # kept (keep_partial) or dropped


def resample_candles(
    candles: pd.DataFrame, base: str, target: str, *, keep_partial: bool = False
) -> tuple[pd.DataFrame, ResampleReport]:
    """``candles`` (long, validated, timeframe ``base``) aggregated to ``target``.

    Returns ``CANDLE_COLUMNS`` + ``is_partial`` sorted by (symbol, timestamp), and the counts.
    """
    base_td, target_td = timeframe_to_timedelta(base), timeframe_to_timedelta(target)
    if target_td <= base_td or target_td % base_td != pd.Timedelta(0):
        raise InputError(f"cannot resample {base} to {target}: not a whole multiple")
    per_bucket = int(target_td // base_td)
    df = candles.sort_values(["symbol", "timestamp"], kind="stable")
    bucket = _EPOCH + ((df["timestamp"] - _EPOCH) // target_td) * target_td
    real = ~df["is_filled"] if "is_filled" in df.columns else pd.Series(True, index=df.index)
    grouped = df.assign(bucket=bucket, real=real.astype("int64")).groupby(
        ["symbol", "bucket"], sort=True
    )
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        n=("real", "sum"),
    ).reset_index()
    out = out.rename(columns={"bucket": "timestamp"})
    out["is_partial"] = out["n"].to_numpy() < per_bucket
    partial = int(out["is_partial"].sum())
    if not keep_partial:
        out = out[~out["is_partial"]]
    out = out[[*CANDLE_COLUMNS, "is_partial"]].reset_index(drop=True)
    out["timestamp"] = out["timestamp"].astype(candles["timestamp"].dtype)
    out["volume"] = out["volume"].astype(np.float64)
    report = ResampleReport(
        bars_out=len(out), complete_bars=int((~out["is_partial"]).sum()), partial_bars=partial
    )
    return out, report
