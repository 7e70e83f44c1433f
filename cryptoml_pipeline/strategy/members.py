"""Spec ``MLPredictionEngine``: several models -> one signal in -2..2, a confidence in 0..1 and
the individual predictions.

Each member is a :class:`ModelMember`: a callable returning class probabilities ``[n, 5]`` (class
``k`` = label ``k - 2``) and its kind. Confidence per the spec: ``"proba"`` models (tree models
with ``predict_proba``) use the top-two margin, ``"net"`` models (softmax networks) use
``1 - entropy / ln 5``. The ensemble averages the members' probabilities weighted by
``weight * confidence`` (members switched off by the risk layer get weight 0); the signal is the
ensemble's argmax - 2, the confidence the same weighted mean of the members' confidences, and the
``agreement`` the weighted share of members whose direction matches the ensemble's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.predictions import (
    N_CLASSES,
    entropy_confidence,
    margin_confidence,
    probs_to_signal,
)

ModelKind = Literal["proba", "net"]


@dataclass(frozen=True)
class ModelMember:
    predict_proba: Callable[[np.ndarray], np.ndarray]
    kind: ModelKind = "net"
    weight: float = 1.0


@dataclass(frozen=True)
class EnsembleSignal:
    signal: np.ndarray  # int64 -2..2 per row
    confidence: np.ndarray  # 0..1 per row
    agreement: np.ndarray  # 0..1 per row
    probabilities: np.ndarray  # [n, 5] ensemble probabilities
    individual: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def member_confidence(probs: np.ndarray, kind: ModelKind) -> np.ndarray:
    """The spec's confidence of one model's probabilities."""
    return margin_confidence(probs) if kind == "proba" else entropy_confidence(probs)


def combine(
    outputs: Mapping[str, np.ndarray],
    kinds: Mapping[str, ModelKind],
    weights: Mapping[str, float | np.ndarray],
) -> EnsembleSignal:
    """Combine member probabilities (all ``[n, 5]``) into an :class:`EnsembleSignal`.

    A weight is a number, or an ``[n]`` array of per-row weights (e.g. 0 where the risk layer
    switched the model off, or its accuracy in the row's regime)."""
    if not outputs:
        raise InputError("the prediction engine has no model to combine")
    names = list(outputs)
    probs = np.stack([np.asarray(outputs[m], dtype=np.float64) for m in names])  # [M, n, 5]
    if probs.ndim != 3 or probs.shape[2] != N_CLASSES:
        raise InputError(f"every model must return [n, {N_CLASSES}] probabilities")
    conf = np.stack([member_confidence(probs[j], kinds[m]) for j, m in enumerate(names)])
    n = probs.shape[1]
    base = np.stack(
        [
            np.clip(
                np.broadcast_to(np.asarray(weights.get(m, 1.0), dtype=np.float64), (n,)), 0, None
            )
            for m in names
        ]
    )
    w = base * conf  # [M, n]
    total = w.sum(axis=0)
    safe = np.where(total > 0, total, 1.0)
    ens = np.einsum("mn,mnk->nk", w, probs) / safe[:, None]
    ens = np.where(total[:, None] > 0, ens, probs.mean(axis=0))
    signal = probs_to_signal(ens)
    member_signal = np.argmax(probs, axis=2) - 2  # [M, n]
    agree = (np.sign(member_signal) == np.sign(signal)[None, :]).astype(np.float64)
    agreement = np.where(total > 0, (w * agree).sum(axis=0) / safe, agree.mean(axis=0))
    confidence = np.where(total > 0, (w * conf).sum(axis=0) / safe, 0.0)
    individual = {
        m: {"signal": member_signal[j].astype(np.int64), "confidence": conf[j]}
        for j, m in enumerate(names)
    }
    return EnsembleSignal(signal, np.clip(confidence, 0, 1), agreement, ens, individual)


class MLPredictionEngine:
    """Spec MLPredictionEngine over pre-built feature inputs (the caller builds features)."""

    def __init__(self, models: Mapping[str, ModelMember]) -> None:
        if not models:
            raise InputError("MLPredictionEngine needs at least one model")
        self.models = dict(models)
        self.enabled = dict.fromkeys(self.models, True)

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Switch a model off/on (e.g. when its tracked performance degraded)."""
        if name not in self.models:
            raise InputError(f"unknown model {name!r}")
        self.enabled[name] = enabled

    def generate_signal(
        self, inputs: np.ndarray, weights: Mapping[str, float] | None = None
    ) -> EnsembleSignal:
        """Predict every enabled model on ``inputs`` and combine (``weights`` e.g. by regime)."""
        active = [m for m in self.models if self.enabled[m]]
        if not active:
            raise InputError("every model of the prediction engine is switched off")
        outputs = {m: self.models[m].predict_proba(inputs) for m in active}
        kinds = {m: self.models[m].kind for m in active}
        base = {m: self.models[m].weight * (weights or {}).get(m, 1.0) for m in active}
        return combine(outputs, kinds, base)


def combine_expected(
    expected: Mapping[str, np.ndarray],
    confidence: Mapping[str, np.ndarray],
    weights: Mapping[str, float | np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine members on the prediction schema: ``(expected_return, confidence, agreement)``.

    The expected return is the average of the members' expected returns weighted by
    ``weight x confidence`` (weights: e.g. recent out-of-sample skill, 0 where the risk layer
    switched a member off); the confidence is the weighted mean confidence; the agreement is the
    weighted share of members whose expected return has the ensemble's sign. A row where every
    weight is 0 gets expected return 0 (no trade)."""
    if not expected:
        raise InputError("the prediction engine has no model to combine")
    names = list(expected)
    er = np.stack([np.asarray(expected[m], dtype=np.float64) for m in names])  # [M, n]
    conf = np.stack([np.nan_to_num(np.asarray(confidence[m], np.float64)) for m in names])
    n = er.shape[1]
    base = np.stack(
        [
            np.clip(np.broadcast_to(np.asarray(weights.get(m, 1.0), np.float64), (n,)), 0, None)
            for m in names
        ]
    )
    w = np.where(np.isfinite(er), base * conf, 0.0)
    total = w.sum(axis=0)
    safe = np.where(total > 0, total, 1.0)
    combined = np.where(total > 0, (w * np.nan_to_num(er)).sum(axis=0) / safe, 0.0)
    agree = (np.sign(np.nan_to_num(er)) == np.sign(combined)[None, :]).astype(np.float64)
    agreement = np.where(total > 0, (w * agree).sum(axis=0) / safe, 0.0)
    confidence_out = np.where(total > 0, (w * conf).sum(axis=0) / safe, 0.0)
    return combined, np.clip(confidence_out, 0.0, 1.0), agreement
