"""Deploy gate (first cut): a candidate replaces the deployed model only when its outputs are sane
and its walk-forward net Sharpe is not worse than the deployed model's record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class GateDecision:
    deploy: bool
    reason: str


def outputs_are_sane(probs: np.ndarray) -> tuple[bool, str]:
    """Probabilities must be finite, in [0, 1] and sum to 1 per row."""
    if probs.size == 0:
        return False, "the candidate produced no output on the sanity sample"
    if not np.isfinite(probs).all():
        return False, "the candidate produced non-finite outputs"
    if (probs < 0).any() or (probs > 1).any() or not np.allclose(probs.sum(axis=1), 1, atol=1e-4):
        return False, "the candidate's outputs are not probability distributions"
    return True, f"outputs finite on {len(probs)} sample rows"


COMPARABLE_KEYS = ("timeframe", "symbols", "feature_cols", "label_config")


def incomparable_fields(candidate: dict[str, Any], deployed: dict[str, Any]) -> list[str]:
    """Manifest fields that differ, making walk-forward records of two models incomparable."""
    return [k for k in COMPARABLE_KEYS if candidate.get(k) != deployed.get(k)]


def evaluate_gate(
    *,
    sane: bool,
    sanity_reason: str,
    evaluation_current: bool,
    candidate_sharpe: float | None,
    candidate_folds: list[str],
    candidate_manifest: dict[str, Any],
    deployed_manifest: dict[str, Any] | None,
    margin: float = 0.0,
) -> GateDecision:
    """Decide whether the candidate is deployed.

    Rejected when its outputs are not sane or when the walk-forward evaluation it would be judged
    by is not the current one (other window or fold plan). With nothing deployed, or a deployed
    model of another configuration (timeframe, symbols, features, labels), sanity suffices. Else
    its walk-forward net Sharpe must be at least the deployed one's + ``margin`` (default 0:
    "not worse").
    """
    if not sane:
        return GateDecision(False, f"rejected: {sanity_reason}")
    if not evaluation_current:
        return GateDecision(
            False,
            "rejected: the walk-forward backtest is not for the current window/fold plan; "
            "train the folds and evaluate before deploying",
        )
    if deployed_manifest is None:
        return GateDecision(True, f"no model deployed yet; sanity checks passed ({sanity_reason})")
    differ = incomparable_fields(candidate_manifest, deployed_manifest)
    if differ:
        return GateDecision(
            True,
            f"deployed model has another configuration ({', '.join(differ)} differ): not "
            f"comparable; replaced after sanity checks ({sanity_reason})",
        )
    record = deployed_manifest.get("walk_forward", {})
    deployed_sharpe = record.get("sharpe")
    same = sorted(record.get("folds", [])) == sorted(candidate_folds)
    scope = "on the same folds" if same else "on different fold windows (data moved on)"
    if candidate_sharpe is None:
        return GateDecision(False, "rejected: the candidate's walk-forward Sharpe is undefined")
    if deployed_sharpe is None:
        return GateDecision(True, f"deployed model has no Sharpe on record; candidate {scope}")
    if candidate_sharpe + 1e-12 >= deployed_sharpe + margin:
        return GateDecision(
            True,
            f"candidate walk-forward Sharpe {candidate_sharpe:.3f} >= deployed "
            f"{deployed_sharpe:.3f} + margin {margin:g} {scope}",
        )
    return GateDecision(
        False,
        f"kept as candidate: walk-forward Sharpe {candidate_sharpe:.3f} < deployed "
        f"{deployed_sharpe:.3f} + margin {margin:g} {scope}",
    )
