"""Deploy gate: a candidate replaces the deployed model only when

1. its artifact verifies (checksums) and its outputs are sane: finite probability distributions,
   expected calibration error <= bound, batch inference latency per row <= bound; and
2. it beats the deployed model on the recent purged validation window (the candidate's own
   validation slice, purged from its fit rows) by ``margin`` accuracy — unless nothing is
   deployed or the deployed model has another configuration (then it is not comparable).

Otherwise it stays a candidate and the reason is recorded in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cryptoml_pipeline.settings import GateConfig


@dataclass(frozen=True)
class GateDecision:
    deploy: bool
    reason: str
    blocking: bool = False  # a sanity/integrity failure (not merely "not better")


@dataclass(frozen=True)
class ValidationScore:
    """A model's predictions on the validation window: accuracy and sanity measurements."""

    n_rows: int
    accuracy: float | None
    calibration_error: float | None
    latency_ms_per_row: float | None


def outputs_are_sane(probs: np.ndarray) -> tuple[bool, str]:
    """Probabilities must be finite, in [0, 1] and sum to 1 per row."""
    if probs.size == 0:
        return False, "the candidate produced no output on the sanity sample"
    if not np.isfinite(probs).all():
        return False, "the candidate produced non-finite outputs"
    if (probs < 0).any() or (probs > 1).any() or not np.allclose(probs.sum(axis=1), 1, atol=1e-4):
        return False, "the candidate's outputs are not probability distributions"
    return True, f"outputs finite on {len(probs)} sample rows"


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE of the top-class probability: sum over confidence bins of |accuracy - confidence|
    weighted by the bin's share of rows. ``labels`` are class indices 0..4."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if len(probs) == 0:
        return float("nan")
    top = probs.max(axis=1)
    hit = (probs.argmax(axis=1) == labels).astype(np.float64)
    which = np.clip((top * bins).astype(int), 0, bins - 1)
    acc = np.bincount(which, weights=hit, minlength=bins)
    conf = np.bincount(which, weights=top, minlength=bins)
    return float(np.abs(acc - conf).sum() / len(probs))


def score_predictions(
    probs: np.ndarray, labels: np.ndarray, seconds: float | None
) -> ValidationScore:
    """Score probabilities against class indices (rows with a non-finite label are dropped)."""
    labels = np.asarray(labels, dtype=np.float64)
    keep = np.isfinite(labels)
    p, y = np.asarray(probs)[keep], labels[keep].astype(int)
    n = len(p)
    if n == 0:
        return ValidationScore(0, None, None, None)
    latency = None if seconds is None else 1000.0 * seconds / max(len(probs), 1)
    return ValidationScore(
        n_rows=n,
        accuracy=float((p.argmax(axis=1) == y).mean()),
        calibration_error=expected_calibration_error(p, y),
        latency_ms_per_row=latency,
    )


COMPARABLE_KEYS = ("timeframe", "symbols", "feature_cols", "label_config")


def incomparable_fields(candidate: dict[str, Any], deployed: dict[str, Any]) -> list[str]:
    """Manifest fields that differ, making validation scores of two models incomparable."""
    return [k for k in COMPARABLE_KEYS if candidate.get(k) != deployed.get(k)]


def sanity_failure(
    sane: bool, sanity_reason: str, candidate: ValidationScore, config: GateConfig
) -> str | None:
    """The reason the candidate is unfit to serve at all, or None."""
    if not sane:
        return sanity_reason
    if candidate.n_rows < config.min_validation_rows or candidate.accuracy is None:
        return f"only {candidate.n_rows} labelled validation rows (< {config.min_validation_rows})"
    ece = candidate.calibration_error
    if ece is None or not np.isfinite(ece) or ece > config.max_calibration_error:
        return f"calibration error {ece:.3f} > bound {config.max_calibration_error}"
    latency = candidate.latency_ms_per_row
    if latency is None or latency > config.max_latency_ms_per_row:
        return f"inference latency {latency} ms/row > bound {config.max_latency_ms_per_row}"
    return None


def evaluate_gate(
    *,
    sane: bool,
    sanity_reason: str,
    candidate: ValidationScore,
    deployed: ValidationScore | None,
    candidate_manifest: dict[str, Any],
    deployed_manifest: dict[str, Any] | None,
    config: GateConfig,
) -> GateDecision:
    """Decide whether the candidate is deployed (see the module docstring)."""
    failure = sanity_failure(sane, sanity_reason, candidate, config)
    if failure is not None:
        return GateDecision(False, f"rejected: {failure}", blocking=True)
    checks = f"ECE {candidate.calibration_error:.3f}, {candidate.latency_ms_per_row:.2f} ms/row"
    if deployed_manifest is None:
        return GateDecision(True, f"no model deployed yet; sanity checks passed ({checks})")
    differ = incomparable_fields(candidate_manifest, deployed_manifest)
    if differ:
        return GateDecision(
            True,
            f"deployed model has another configuration ({', '.join(differ)} differ): not "
            f"comparable; replaced after sanity checks ({checks})",
        )
    if deployed is None or deployed.accuracy is None:
        return GateDecision(True, f"deployed model has no validation score; ({checks})")
    assert candidate.accuracy is not None  # sanity_failure guarantees it
    window = f"on {candidate.n_rows} recent purged validation rows"
    if candidate.accuracy >= deployed.accuracy + config.margin - 1e-12:
        return GateDecision(
            True,
            f"candidate accuracy {candidate.accuracy:.4f} >= deployed {deployed.accuracy:.4f} "
            f"+ margin {config.margin:g} {window} ({checks})",
        )
    return GateDecision(
        False,
        f"kept as candidate: accuracy {candidate.accuracy:.4f} < deployed "
        f"{deployed.accuracy:.4f} + margin {config.margin:g} {window}",
    )
