"""Retrain policy (spec ModelPerformanceTracker.should_retrain, first cut)."""

from __future__ import annotations


def should_retrain(acc_recent: float | None, acc_prior: float | None, degradation: float) -> bool:
    """True when recent accuracy fell below ``(1 - degradation)`` x prior accuracy.

    The spec: recent 50 predictions vs the prior 150, 10 % degradation. Undefined inputs (not enough
    predictions yet) never trigger a retrain.
    """
    if acc_recent is None or acc_prior is None:
        return False
    return acc_recent < (1.0 - degradation) * acc_prior
