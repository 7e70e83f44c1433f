"""Look-ahead detection by recomputation on truncated data (freqtrade's lookahead-analysis idea).

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

__all__ = ["ComputeFeatures", "LeakReport", "find_lookahead"]

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
