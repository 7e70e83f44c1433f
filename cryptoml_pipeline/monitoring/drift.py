"""Feature drift: population stability index (PSI) of recent feature values vs the model's
training window. PSI = sum((a - e) * ln(a / e)) over bins cut at the reference's quantiles;
rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant shift."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError

EPS = 1e-4


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float | None:
    """PSI of ``current`` against ``reference`` (non-finite values dropped); None if either side
    is empty. Bins are the reference's quantiles, open-ended at both sides."""
    if bins < 2:
        raise InputError(f"psi needs at least 2 bins, got {bins}")
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref = ref[np.isfinite(ref)]
    cur = cur[np.isfinite(cur)]
    if len(ref) == 0 or len(cur) == 0:
        return None
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    a = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
    e_frac = np.clip(e / len(ref), EPS, None)
    a_frac = np.clip(a / len(cur), EPS, None)
    return float(np.sum((a_frac - e_frac) * np.log(a_frac / e_frac)))


def feature_psi(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], bins: int = 10
) -> pd.Series:
    """PSI per feature column, sorted descending (NaN where undefined)."""
    missing = [c for c in columns if c not in reference.columns or c not in current.columns]
    if missing:
        raise InputError(f"feature drift: columns {missing[:5]} are missing")
    values = {c: psi(reference[c].to_numpy(), current[c].to_numpy(), bins) for c in columns}
    series = pd.Series({c: np.nan if v is None else v for c, v in values.items()}, dtype=float)
    return series.sort_values(ascending=False)
