"""Label shuffling for the shuffled-label control model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError


def shuffle_training_labels(
    labels: pd.DataFrame, train_start: pd.Timestamp, train_end: pd.Timestamp, *, seed: int
) -> pd.DataFrame:
    """A copy of ``labels`` whose ``label`` values are permuted among the rows with
    ``train_start <= timestamp < train_end`` (labelled rows only); every other row is unchanged,
    so the test window keeps its true labels for scoring."""
    if "label" not in labels.columns or "timestamp" not in labels.columns:
        raise InputError("labels need 'timestamp' and 'label' columns to shuffle")
    out = labels.copy()
    ts = pd.to_datetime(out["timestamp"], utc=True)
    inside = ((ts >= train_start) & (ts < train_end) & out["label"].notna()).to_numpy()
    rng = np.random.default_rng(seed)
    perm = rng.permutation(int(inside.sum()))
    # every forward-looking column moves together: the target, its classes, returns, weights
    for col in ("label", "target", "forward_return", "realised_return", "weight"):
        if col in out.columns:
            values = out[col].to_numpy(copy=True)
            values[inside] = values[inside][perm]
            out[col] = values
    return out
