"""Pluggable sources for features with no offline data: whale movements and social sentiment.

A source implements :class:`SentimentSource` and returns a :class:`SourceResult`: either
``available`` with a frame ``timestamp, symbol, value`` (``timestamp`` = when the value became
known) or ``unavailable`` with a reason. Sources are passed to ``build_features`` by name
(``sources={"my_whales": source}``) and chosen in ``SentimentFlowConfig.whale_source`` /
``social_source``. With no source configured — the default, since no offline source exists — the
feature is absent and listed as unavailable in the asset metadata; a value is never invented.
Values are as-of aligned backward: row ``t`` sees the last value stamped ``<= t``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError

__all__ = [
    "SOURCE_FEATURES",
    "SentimentSource",
    "SourceResult",
    "asof_values",
    "resolve_source",
]

SourceKind = Literal["whale", "social"]
SOURCE_FEATURES: dict[SourceKind, str] = {
    "whale": "whale_movement",
    "social": "social_sentiment",
}


@dataclass(frozen=True)
class SourceResult:
    state: Literal["available", "unavailable"]
    frame: pd.DataFrame | None
    reason: str = ""


class SentimentSource(Protocol):
    """A provider of one time series per symbol (whale net flow, social sentiment score...)."""

    name: str

    def fetch(
        self, symbols: Sequence[str], start: pd.Timestamp, end: pd.Timestamp
    ) -> SourceResult: ...


def resolve_source(
    kind: SourceKind,
    configured: str | None,
    sources: Mapping[str, SentimentSource] | None,
    symbols: Sequence[str],
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> SourceResult:
    """Fetch the configured source of ``kind`` or say why it is unavailable."""
    if configured is None:
        return SourceResult("unavailable", None, f"no {kind} source configured (none offline)")
    if not sources or configured not in sources:
        return SourceResult(
            "unavailable", None, f"{kind} source {configured!r} is configured but not provided"
        )
    if start is None or end is None:
        return SourceResult("unavailable", None, "no candles to align the source to")
    result = sources[configured].fetch(symbols, start, end)
    if result.state == "available":
        frame = result.frame
        if frame is None or not {"timestamp", "symbol", "value"} <= set(frame.columns):
            raise InputError(
                f"{kind} source {configured!r} must return columns timestamp, symbol, value"
            )
        if frame.empty:
            return SourceResult("unavailable", None, f"{kind} source {configured!r} had no data")
    return result


def asof_values(
    timestamps: pd.Series, symbols: pd.Series, frame: pd.DataFrame, column: str
) -> np.ndarray:
    """``frame[column]`` as of each row (last stamp ``<= timestamp`` of the same symbol)."""
    n = len(timestamps)
    left = pd.DataFrame(
        {
            "timestamp": pd.Series(timestamps).astype("datetime64[ns, UTC]").array,
            "symbol": pd.Series(symbols).astype(str).array,
            "_pos": np.arange(n),
        }
    ).sort_values("timestamp", kind="stable")
    right = pd.DataFrame(
        {
            "timestamp": frame["timestamp"].astype("datetime64[ns, UTC]").array,
            "symbol": frame["symbol"].astype(str).array,
            "_v": frame[column].to_numpy(dtype=np.float64),
        }
    ).sort_values("timestamp", kind="stable")
    merged = pd.merge_asof(left, right, on="timestamp", by="symbol", direction="backward")
    out = np.empty(n)
    out[merged["_pos"].to_numpy()] = merged["_v"].to_numpy(dtype=np.float64)
    return out
