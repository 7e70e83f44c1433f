"""Look-ahead detection by recomputation on truncated data (freqtrade's lookahead-analysis idea),
and warm-up sensitivity (freqtrade's recursive-analysis idea).

A causal feature at row ``t`` depends on candles stamped ``<= t`` and funding settled ``<= t``
only, so recomputing on the data cut at ``T`` must reproduce every value at rows ``<= T``
exactly. Any difference is reported as a :class:`LeakReport`. Reused by the Dagster asset check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.timing import to_utc

__all__ = [
    "ComputeFeatures",
    "LeakReport",
    "WarmupReport",
    "find_lookahead",
    "find_warmup_sensitivity",
    "sample_cut_times",
]

ComputeFeatures = Callable[[pd.DataFrame, pd.DataFrame | None], pd.DataFrame]
_KEYS = ("timestamp", "symbol")


@dataclass(frozen=True)
class LeakReport:
    """One feature value that changed when the future was removed."""

    column: str
    symbol: str
    timestamp: pd.Timestamp
    cut_time: pd.Timestamp
    full_value: float
    truncated_value: float

    def describe(self) -> str:
        return (
            f"{self.column} of {self.symbol} at {self.timestamp}: {self.full_value!r} on all data, "
            f"{self.truncated_value!r} on data cut at {self.cut_time}"
        )


def _differs(full: np.ndarray, cut: np.ndarray, rtol: float) -> np.ndarray:
    both_nan = np.isnan(full) & np.isnan(cut)
    close = np.isclose(full, cut, rtol=rtol, atol=0.0) if rtol > 0 else full == cut
    return ~(both_nan | close)


def find_lookahead(
    compute: ComputeFeatures,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    cut_times: Iterable[object],
    *,
    rtol: float = 0.0,
    max_reports_per_column: int = 5,
) -> list[LeakReport]:
    """Compare ``compute(candles, funding)`` with ``compute`` on data cut at each time in
    ``cut_times`` (candles and settlements stamped ``<= T``) on the rows that survive the cut.

    ``compute`` must return one row per input row in input order (the ``compute_features``
    contract). Values are compared exactly (NaN equals NaN) unless ``rtol > 0``. Returns at most
    ``max_reports_per_column`` reports per (column, cut time); an empty list means no leak found.
    """
    full = compute(candles, funding)
    if len(full) != len(candles):
        raise InputError(f"compute returned {len(full)} rows for {len(candles)} input rows")
    candle_ts = candles["timestamp"].astype("datetime64[ns, UTC]")
    columns = [c for c in full.columns if c not in _KEYS]
    reports: list[LeakReport] = []
    for raw_cut in cut_times:
        cut = to_utc(raw_cut)
        keep = (candle_ts <= cut).to_numpy()
        cut_funding = None
        if funding is not None:
            cut_funding = funding[funding["timestamp"].astype("datetime64[ns, UTC]") <= cut]
        truncated = compute(candles[keep], cut_funding)
        if len(truncated) != int(keep.sum()):
            raise InputError(f"compute returned {len(truncated)} rows on data cut at {cut}")
        reference = full[keep].reset_index(drop=True)
        missing = [c for c in columns if c not in truncated.columns]
        if missing:
            raise InputError(f"columns {missing} vanish on data cut at {cut}")
        for column in columns:
            a = reference[column].to_numpy(dtype=np.float64)
            b = truncated[column].to_numpy(dtype=np.float64)
            bad = np.flatnonzero(_differs(a, b, rtol))[:max_reports_per_column]
            reports.extend(
                LeakReport(
                    column=column,
                    symbol=str(reference["symbol"].iloc[i]),
                    timestamp=reference["timestamp"].iloc[i],
                    cut_time=cut,
                    full_value=float(a[i]),
                    truncated_value=float(b[i]),
                )
                for i in bad
            )
    return reports


def sample_cut_times(
    timestamps: pd.Series | np.ndarray, n_cuts: int, *, first: float = 0.3
) -> list[pd.Timestamp]:
    """``n_cuts`` cut times spread over ``timestamps`` (quantiles ``first .. 1``, the last one
    before the final bar), plus one that falls between two bars. Deterministic."""
    stamps = np.sort(pd.Series(timestamps).astype("datetime64[ns, UTC]").unique())
    if len(stamps) < 3 or n_cuts < 1:
        return []
    positions = np.linspace(first, 1.0, n_cuts + 1)[:-1] if n_cuts > 1 else np.array([0.5])
    idx = sorted({min(int(q * len(stamps)), len(stamps) - 2) for q in positions})
    cuts = [pd.Timestamp(stamps[i]) for i in idx]
    mid = idx[len(idx) // 2]
    between = (
        pd.Timestamp(stamps[mid]) + (pd.Timestamp(stamps[mid + 1]) - pd.Timestamp(stamps[mid])) / 2
    )
    return sorted({*cuts, between})


@dataclass(frozen=True)
class WarmupReport:
    """A value after the declared warm-up that changed when less history preceded it."""

    column: str
    symbol: str
    timestamp: pd.Timestamp
    start_time: pd.Timestamp
    full_value: float
    truncated_value: float

    def describe(self) -> str:
        return (
            f"{self.column} of {self.symbol} at {self.timestamp}: {self.full_value!r} with all "
            f"history, {self.truncated_value!r} with history from {self.start_time}"
        )


def find_warmup_sensitivity(
    compute: ComputeFeatures,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    start_times: Iterable[object],
    warmup: pd.Timedelta,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_reports_per_column: int = 5,
) -> list[WarmupReport]:
    """Recompute with the data starting at each of ``start_times`` (candles and settlements
    stamped ``>= S``) and compare, on rows stamped ``>= S + warmup``, with the values computed on
    all the data. Values must agree within ``rtol``/``atol`` (NaN equals NaN)."""
    full = compute(candles, funding)
    if len(full) != len(candles):
        raise InputError(f"compute returned {len(full)} rows for {len(candles)} input rows")
    candle_ts = candles["timestamp"].astype("datetime64[ns, UTC]")
    columns = [c for c in full.columns if c not in _KEYS]
    reports: list[WarmupReport] = []
    for raw_start in start_times:
        start = to_utc(raw_start)
        keep = (candle_ts >= start).to_numpy()
        cut_funding = None
        if funding is not None:
            cut_funding = funding[funding["timestamp"].astype("datetime64[ns, UTC]") >= start]
        late = compute(candles[keep], cut_funding)
        if len(late) != int(keep.sum()):
            raise InputError(f"compute returned {len(late)} rows on data starting at {start}")
        reference = full[keep].reset_index(drop=True)
        settled = (late["timestamp"] >= start + warmup).to_numpy()
        for column in columns:
            if column not in late.columns:
                raise InputError(f"column {column} vanishes on data starting at {start}")
            a = reference[column].to_numpy(dtype=np.float64)
            b = late[column].to_numpy(dtype=np.float64)
            same = (np.isnan(a) & np.isnan(b)) | np.isclose(a, b, rtol=rtol, atol=atol)
            bad = np.flatnonzero(settled & ~same)[:max_reports_per_column]
            reports.extend(
                WarmupReport(
                    column=column,
                    symbol=str(reference["symbol"].iloc[i]),
                    timestamp=reference["timestamp"].iloc[i],
                    start_time=start,
                    full_value=float(a[i]),
                    truncated_value=float(b[i]),
                )
                for i in bad
            )
    return reports
