"""From class probabilities to a trading signal and a confidence (spec "Prediction Engine").

Probabilities are ``[n, 5]`` arrays whose column ``k`` is the class ``k`` = label ``k - 2``
(strong sell .. strong buy). A 1-D array is taken as a single row.
"""

from __future__ import annotations

import numpy as np

from cryptoml_pipeline.errors import InputError

N_CLASSES = 5


def _as_rows(probs: np.ndarray) -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise InputError(f"probabilities must be [n, K>=2], got shape {np.shape(probs)}")
    return arr


def entropy_confidence(probs: np.ndarray) -> np.ndarray:
    """``1 - H(p) / ln(K)`` per row: 0 for a uniform distribution, 1 for a one-hot one.

    ``0 * ln 0`` is taken as 0 (no epsilon bias); the result is clipped to ``[0, 1]``.
    Rows containing NaN give NaN.
    """
    p = _as_rows(probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    plogp = np.where(np.isnan(p), np.nan, plogp)
    entropy = -plogp.sum(axis=1)
    return np.clip(1.0 - entropy / np.log(p.shape[1]), 0.0, 1.0)


def margin_confidence(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row (the spec's ``predict_proba`` branch)."""
    p = _as_rows(probs)
    top2 = np.sort(p, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def probs_to_signal(probs: np.ndarray) -> np.ndarray:
    """``argmax - 2`` as int64: the 5-class prediction as a signal in ``-2..2``."""
    p = _as_rows(probs)
    if p.shape[1] != N_CLASSES:
        raise InputError(f"probs_to_signal needs {N_CLASSES} classes, got {p.shape[1]}")
    return (np.argmax(p, axis=1) - 2).astype(np.int64)


def class_returns(weak_threshold: float, strong_threshold: float) -> np.ndarray:
    """Representative forward return of each class (labels -2..2), from the label thresholds.

    Conservative: a strong class counts its boundary ``±strong`` (the least it moved), a weak
    class the middle of its band ``±(weak + strong) / 2``, the flat class 0.
    """
    mid = (weak_threshold + strong_threshold) / 2.0
    return np.array([-strong_threshold, -mid, 0.0, mid, strong_threshold], dtype=np.float64)


def expected_move(probs: np.ndarray, returns_by_class: np.ndarray) -> np.ndarray:
    """Probability-weighted forward return per row: ``sum_k p_k * r_k``."""
    p = _as_rows(probs)
    r = np.asarray(returns_by_class, dtype=np.float64)
    if p.shape[1] != len(r):
        raise InputError(f"{p.shape[1]} class probabilities but {len(r)} class returns")
    return p @ r
