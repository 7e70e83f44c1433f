"""Deploy gate, on the prediction schema: a candidate replaces the deployed model only when

1. its artifact verifies (checksums) and its outputs are sane: finite expected returns,
   confidences in [0, 1] (probability distributions where it has them), its confidence checked
   against the realised sign — the confidence is a rank of forecast strength, so "calibrated"
   means more confident calls hit the realised sign at least as often: the sign hit rate of the
   less confident half minus that of the more confident half, beyond two standard errors
   (``calibration_error``, 0 when confidence is informative or the gap is noise) <= bound — and
   batch latency per row <= bound; and
2. it beats the deployed model on the recent purged validation window (the candidate's own
   validation slice, purged from its fit rows) by ``margin`` in rank IC of its expected return
   against the realised return — unless nothing is deployed or the deployed model has another
   configuration (then it is not comparable).

Deployment for trading additionally demands walk-forward evidence (:func:`evidence_failure`:
deflated Sharpe, rank-IC t and number of trades above the declared thresholds). Otherwise it
stays a candidate and the reason is recorded in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.settings import GateConfig


@dataclass(frozen=True)
class GateDecision:
    deploy: bool
    reason: str
    blocking: bool = False  # a sanity/integrity failure (not merely "not better")


@dataclass(frozen=True)
class ValidationScore:
    """A model's predictions on the validation window: forecast skill and sanity."""

    n_rows: int
    rank_ic: float | None
    hit_rate: float | None
    calibration_error: float | None
    latency_ms_per_row: float | None


def outputs_are_sane(
    expected: np.ndarray, confidence: np.ndarray, probs: np.ndarray
) -> tuple[bool, str]:
    """Expected returns finite (> -100 %), confidences in [0, 1], probability rows (where the
    model has them) finite and summing to 1."""
    expected, confidence = np.asarray(expected, float), np.asarray(confidence, float)
    if expected.size == 0:
        return False, "the candidate produced no output on the sanity sample"
    if not np.isfinite(expected).all() or (expected <= -1).any():
        return False, "the candidate produced non-finite expected returns"
    if not np.isfinite(confidence).all() or (confidence < 0).any() or (confidence > 1).any():
        return False, "the candidate's confidences are not in [0, 1]"
    probs = np.asarray(probs, float)
    if probs.size and np.isfinite(probs).any():
        if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
            return False, "the candidate's probabilities are not finite in [0, 1]"
        if not np.allclose(probs.sum(axis=1), 1, atol=1e-4):
            return False, "the candidate's outputs are not probability distributions"
    return True, f"outputs finite on {len(expected)} sample rows"


def sign_calibration_error(
    expected: np.ndarray, confidence: np.ndarray, realised: np.ndarray
) -> float:
    """How much confidence is anti-informative about the realised sign, beyond chance: the hit
    rate of the rows below the median confidence minus that of the rows at or above it, less
    two standard errors of that difference, floored at 0 (so an uninformative confidence on a
    few hundred rows does not fail by sampling noise)."""
    e, c, r = (np.asarray(x, dtype=np.float64) for x in (expected, confidence, realised))
    keep = np.isfinite(e) & np.isfinite(c) & np.isfinite(r) & (e != 0) & (r != 0)
    e, c, r = e[keep], c[keep], r[keep]
    if len(e) < 4:
        return float("nan")
    hit = (np.sign(e) == np.sign(r)).astype(np.float64)
    high = c >= np.median(c)
    if high.all() or not high.any():
        return 0.0
    p = float(hit.mean())
    se = np.sqrt(max(p * (1 - p), 1e-12) * (1 / (~high).sum() + 1 / high.sum()))
    return float(max(0.0, hit[~high].mean() - hit[high].mean() - 2.0 * se))


def score_predictions(
    expected: np.ndarray, confidence: np.ndarray, realised: np.ndarray, seconds: float | None
) -> ValidationScore:
    """Score expected returns against realised returns (rows without one are dropped)."""
    e, c, r = (np.asarray(x, dtype=np.float64) for x in (expected, confidence, realised))
    keep = np.isfinite(r) & np.isfinite(e)
    n = int(keep.sum())
    if n == 0:
        return ValidationScore(0, None, None, None, None)
    latency = None if seconds is None else 1000.0 * seconds / max(len(e), 1)
    ek, rk = e[keep], r[keep]
    ranks = pd.Series(ek).rank().to_numpy(), pd.Series(rk).rank().to_numpy()  # average ties
    ic = float(np.corrcoef(*ranks)[0, 1]) if n > 2 and ek.std() > 0 and rk.std() > 0 else None
    called = (ek != 0) & (rk != 0)
    hit = float((np.sign(ek[called]) == np.sign(rk[called])).mean()) if called.any() else None
    return ValidationScore(
        n_rows=n,
        rank_ic=ic,
        hit_rate=hit,
        calibration_error=sign_calibration_error(e, c, r),
        latency_ms_per_row=latency,
    )


def evidence_failure(evidence: dict[str, Any], config: GateConfig) -> str | None:
    """Why the walk-forward evidence does not support trading the model (None when it does):
    the strategy's deflated Sharpe, the forecast's rank-IC t and the number of trades must
    reach ``config.min_dsr``, ``config.min_rank_ic_t`` and ``config.min_trades``."""
    problems = []
    dsr, t, trades = evidence.get("dsr"), evidence.get("rank_ic_t"), evidence.get("n_trades")
    if dsr is None or not np.isfinite(dsr) or dsr < config.min_dsr:
        problems.append(f"deflated Sharpe {_fmt(dsr)} < {config.min_dsr:g}")
    if t is None or not np.isfinite(t) or t < config.min_rank_ic_t:
        problems.append(f"rank-IC t {_fmt(t)} < {config.min_rank_ic_t:g}")
    if trades is None or trades < config.min_trades:
        problems.append(f"{trades} trades < {config.min_trades}")
    return "; ".join(problems) or None


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3f}"


COMPARABLE_KEYS = ("timeframe", "symbols", "feature_cols", "label_config", "target")


def incomparable_fields(candidate: dict[str, Any], deployed: dict[str, Any]) -> list[str]:
    """Manifest fields that differ, making validation scores of two models incomparable."""
    return [k for k in COMPARABLE_KEYS if candidate.get(k) != deployed.get(k)]


def sanity_failure(
    sane: bool, sanity_reason: str, candidate: ValidationScore, config: GateConfig
) -> str | None:
    """The reason the candidate is unfit to serve at all, or None."""
    if not sane:
        return sanity_reason
    if candidate.n_rows < config.min_validation_rows or candidate.rank_ic is None:
        return f"only {candidate.n_rows} labelled validation rows (< {config.min_validation_rows})"
    ece = candidate.calibration_error
    if ece is None or not np.isfinite(ece) or ece > config.max_calibration_error:
        bound = config.max_calibration_error
        return f"confidence inverted on the realised sign by {ece:.3f} > {bound}"
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
    checks = (
        f"confidence inversion {candidate.calibration_error:.3f}, "
        f"{candidate.latency_ms_per_row:.2f} ms/row"
    )
    if deployed_manifest is None:
        return GateDecision(True, f"no model deployed yet; sanity checks passed ({checks})")
    differ = incomparable_fields(candidate_manifest, deployed_manifest)
    if differ:
        return GateDecision(
            True,
            f"deployed model has another configuration ({', '.join(differ)} differ): not "
            f"comparable; replaced after sanity checks ({checks})",
        )
    if deployed is None or deployed.rank_ic is None:
        return GateDecision(True, f"deployed model has no validation score; ({checks})")
    if not np.isfinite(deployed.rank_ic):  # e.g. constant expected returns: no ranking at all
        return GateDecision(
            True,
            f"deployed model's rank IC is undefined on the validation window (its expected "
            f"returns do not vary): replaced after sanity checks ({checks})",
        )
    assert candidate.rank_ic is not None  # sanity_failure guarantees it
    window = f"on {candidate.n_rows} recent purged validation rows"
    if candidate.rank_ic >= deployed.rank_ic + config.margin - 1e-12:
        return GateDecision(
            True,
            f"candidate rank IC {candidate.rank_ic:.4f} >= deployed {deployed.rank_ic:.4f} "
            f"+ margin {config.margin:g} {window} ({checks})",
        )
    return GateDecision(
        False,
        f"kept as candidate: rank IC {candidate.rank_ic:.4f} < deployed "
        f"{deployed.rank_ic:.4f} + margin {config.margin:g} {window}",
    )
