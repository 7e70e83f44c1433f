"""The timing convention, written once.

* Every timestamp is the candle's **open time**, tz-aware UTC.
* A row stamped ``t`` is complete — and so *known* — at ``t + one bar``.
* A decision computed from row ``t`` is executed at the **open of the next bar**
  (``t + one bar``), never on the bar whose close produced it.
* A funding settlement stamped ``s`` is known from ``s`` on. It is paid on the position carried
  into ``s`` (a fill at the open of bar ``s`` happens after the settlement).
"""

from __future__ import annotations

import pandas as pd

_UNITS = {"m": "min", "h": "h", "d": "D", "w": "W"}


def timeframe_to_timedelta(timeframe: str) -> pd.Timedelta:
    """``"1h"`` -> 1 hour. Raises ``ValueError`` on an unknown timeframe string."""
    if len(timeframe) < 2 or timeframe[-1] not in _UNITS or not timeframe[:-1].isdigit():
        raise ValueError(f"unsupported timeframe {timeframe!r} (expected e.g. 5m, 1h, 4h, 1d)")
    return pd.Timedelta(int(timeframe[:-1]), unit=_UNITS[timeframe[-1]])


def bars_per_day(timeframe: str) -> float:
    return pd.Timedelta(days=1) / timeframe_to_timedelta(timeframe)


def known_at(timestamps: pd.Series | pd.DatetimeIndex, timeframe: str) -> pd.Series:
    """When a row becomes known: its open time plus one bar."""
    return pd.Series(timestamps) + timeframe_to_timedelta(timeframe)


def to_utc(value: object) -> pd.Timestamp:
    """Parse a date/time into a tz-aware UTC ``Timestamp`` (naive input is taken as UTC)."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
