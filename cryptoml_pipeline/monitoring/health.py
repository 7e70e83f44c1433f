"""Model health: the tracker's accuracy windows, feature drift (PSI) and model age, combined
into the retrain decision. Pure apart from reading the tracker."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from cryptoml_pipeline.monitoring.drift import feature_psi
from cryptoml_pipeline.monitoring.retrain_policy import retrain_decision
from cryptoml_pipeline.monitoring.tracker import ModelPerformanceTracker, model_age_days
from cryptoml_pipeline.registry.model_registry import ModelVersion
from cryptoml_pipeline.settings import RetrainConfig


@dataclass(frozen=True)
class ModelHealth:
    version: str
    n_predictions: int
    n_resolved: int
    acc_recent: float | None
    acc_prior: float | None
    max_psi: float | None
    drifted_feature: str | None
    model_age_days: float | None
    should_retrain: bool
    summary: str

    def as_dict(self) -> dict:
        return asdict(self)


def drift_frames(
    features: pd.DataFrame,
    train_start: pd.Timestamp,
    train_end: pd.Timestamp,
    end: pd.Timestamp,
    drift_days: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the model's training rows, the last ``drift_days`` before ``end``)."""
    ts = features["timestamp"]
    reference = features[(ts >= train_start) & (ts < train_end)]
    recent = features[(ts >= end - pd.Timedelta(days=drift_days)) & (ts < end)]
    return reference, recent


def assess(
    tracker: ModelPerformanceTracker,
    model: ModelVersion,
    reference: pd.DataFrame,
    recent: pd.DataFrame,
    config: RetrainConfig,
    now: datetime | None = None,
) -> tuple[ModelHealth, pd.Series]:
    frame = tracker.frame(model.version)
    recent_acc, prior_acc = tracker.accuracy_windows(
        model.version, config.recent_window, config.prior_window
    )
    psi = (
        feature_psi(reference, recent, model.feature_cols, config.psi_bins)
        if len(reference) and len(recent)
        else pd.Series(dtype=float)
    )
    finite = psi[np.isfinite(psi.to_numpy())]
    max_psi = float(finite.iloc[0]) if len(finite) else None
    drifted = str(finite.index[0]) if len(finite) else None
    age = model_age_days(model.deployed_at, now)
    decision = retrain_decision(
        acc_recent=recent_acc,
        acc_prior=prior_acc,
        max_psi=max_psi,
        drifted_feature=drifted,
        model_age_days=age,
        config=config,
    )
    health = ModelHealth(
        version=model.version,
        n_predictions=len(frame),
        n_resolved=int(frame["correct"].notna().sum()) if len(frame) else 0,
        acc_recent=recent_acc,
        acc_prior=prior_acc,
        max_psi=max_psi,
        drifted_feature=drifted,
        model_age_days=age,
        should_retrain=decision.retrain,
        summary=decision.summary,
    )
    return health, psi
