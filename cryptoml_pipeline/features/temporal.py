"""Calendar features of the candle's open time (spec TemporalFeatures): cyclical hour/day-of-week
and trading-session indicators. They depend on the row's own timestamp only."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.settings import FeatureConfig, SessionBoundaries

__all__ = [
    "CALENDAR_NAMES",
    "SESSION_NAMES",
    "cyclical_time_features",
    "session_indicators",
    "temporal_features",
]

SESSION_NAMES: tuple[str, ...] = ("asian", "european", "us")
CALENDAR_NAMES: tuple[str, ...] = (
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    *(f"session_{s}" for s in SESSION_NAMES),
)


def _as_utc_index(timestamps: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.Series(timestamps).astype("datetime64[ns, UTC]"))


def cyclical_time_features(
    timestamps: pd.Series | pd.DatetimeIndex, *, timezone: str = "UTC"
) -> dict[str, np.ndarray]:
    """``hour_sin, hour_cos`` (period 24 h, minutes included) and ``dow_sin, dow_cos``
    (period 7 days, Monday = 0), in local time of ``timezone``."""
    t = _as_utc_index(timestamps).tz_convert(timezone)
    hour = t.hour.to_numpy(dtype=np.float64) + t.minute.to_numpy(dtype=np.float64) / 60.0
    dow = t.dayofweek.to_numpy(dtype=np.float64)
    hour_angle = 2.0 * np.pi * hour / 24.0
    dow_angle = 2.0 * np.pi * dow / 7.0
    return {
        "hour_sin": np.sin(hour_angle),
        "hour_cos": np.cos(hour_angle),
        "dow_sin": np.sin(dow_angle),
        "dow_cos": np.cos(dow_angle),
    }


def _in_session(hour: np.ndarray, bounds: tuple[int, int]) -> np.ndarray:
    begin, end = bounds
    # begin > end wraps midnight, e.g. (22, 6)
    inside = (hour >= begin) & (hour < end) if begin <= end else (hour >= begin) | (hour < end)
    return inside.astype(np.float64)


def session_indicators(
    timestamps: pd.Series | pd.DatetimeIndex, boundaries: SessionBoundaries
) -> dict[str, np.ndarray]:
    """``session_asian``, ``session_european``, ``session_us``: 1.0 when the UTC hour of the open
    time lies in the session's ``[begin, end)`` (wrapping midnight if begin > end), else 0.0."""
    hour = _as_utc_index(timestamps).hour.to_numpy()
    return {
        f"session_{name}": _in_session(hour, getattr(boundaries, name)) for name in SESSION_NAMES
    }


def temporal_features(
    timestamps: pd.Series | pd.DatetimeIndex, config: FeatureConfig
) -> dict[str, np.ndarray]:
    """The calendar part of the temporal block, in contract column order (the regime part, which
    needs prices, is :mod:`cryptoml_pipeline.features.regimes`)."""
    return {
        **cyclical_time_features(timestamps, timezone=config.temporal.timezone),
        **session_indicators(timestamps, config.temporal.session_boundaries),
    }
