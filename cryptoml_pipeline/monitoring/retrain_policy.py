"""Retrain policy (spec ModelPerformanceTracker.should_retrain) plus drift and model age."""

from __future__ import annotations

from dataclasses import dataclass

from cryptoml_pipeline.settings import RetrainConfig


def should_retrain(acc_recent: float | None, acc_prior: float | None, degradation: float) -> bool:
    """True when recent accuracy fell below ``(1 - degradation)`` x prior accuracy.

    The spec: recent 50 predictions vs the prior 150, 10 % degradation. Undefined inputs (not enough
    predictions yet) never trigger a retrain.
    """
    if acc_recent is None or acc_prior is None:
        return False
    return acc_recent < (1.0 - degradation) * acc_prior


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reasons: tuple[str, ...]  # every trigger that fired (empty when none did)
    summary: str  # one line for logs, run tags and the dashboard


def retrain_decision(
    *,
    acc_recent: float | None,
    acc_prior: float | None,
    max_psi: float | None,
    drifted_feature: str | None,
    model_age_days: float | None,
    config: RetrainConfig,
) -> RetrainDecision:
    """Accuracy degradation (spec), feature drift (PSI above threshold) or model age."""
    reasons: list[str] = []
    if should_retrain(acc_recent, acc_prior, config.degradation):
        reasons.append(
            f"accuracy degraded: recent {config.recent_window} = {acc_recent:.3f} < "
            f"{1 - config.degradation:.2f} x prior {config.prior_window} = {acc_prior:.3f}"
        )
    if max_psi is not None and max_psi > config.psi_threshold:
        reasons.append(
            f"feature drift: PSI({drifted_feature}) = {max_psi:.3f} > {config.psi_threshold}"
        )
    if model_age_days is not None and model_age_days > config.max_model_age_days:
        reasons.append(f"model age {model_age_days:.1f} d > {config.max_model_age_days:g} d")
    if reasons:
        return RetrainDecision(True, tuple(reasons), "; ".join(reasons))
    acc = "n/a" if acc_recent is None else f"{acc_recent:.3f}"
    prior = "n/a" if acc_prior is None else f"{acc_prior:.3f}"
    psi_txt = "n/a" if max_psi is None else f"{max_psi:.3f}"
    age = "n/a" if model_age_days is None else f"{model_age_days:.1f} d"
    return RetrainDecision(
        False, (), f"healthy: acc recent {acc} / prior {prior}, max PSI {psi_txt}, age {age}"
    )
