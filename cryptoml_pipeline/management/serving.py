"""Glue between modeling and the registry: save + register a candidate, load a verified model,
score models on the candidate's purged validation window, and a cheap feature importance."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryptoml_pipeline.management.gate import ValidationScore, score_predictions
from cryptoml_pipeline.management.registry import ModelRegistry, ModelVersion
from cryptoml_pipeline.modeling.fold_training import (
    PROB_COLUMNS,
    FoldModel,
    fold_model_from_saved,
    predict_rows,
)
from cryptoml_pipeline.modeling.folds import fold_row_masks
from cryptoml_pipeline.modeling.persistence import load_model, save_model
from cryptoml_pipeline.settings import PipelineSettings


def registry_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "models" / "registry"


def feature_importance(model: FoldModel, top: int = 20) -> dict[str, float]:
    """L2 norm of each input feature's column in the input projection (inputs are standardised,
    so the norms are comparable), normalised to sum to 1; the ``top`` largest."""
    layer = getattr(model.model, "input_projection", None)
    if layer is None:
        return {}
    weights = layer.weight.detach().to(torch.float64).cpu().numpy()
    norms = np.linalg.norm(weights, axis=0)
    share = norms / norms.sum() if norms.sum() > 0 else norms
    order = np.argsort(-share)[:top]
    return {model.feature_cols[i]: float(share[i]) for i in order}


def save_and_register(
    registry: ModelRegistry, output_dir: Path, model: FoldModel, metrics: dict
) -> ModelVersion:
    """Write the candidate's artifact under ``models/registry/<version>`` (atomic) and register
    it with its checksums as a candidate."""
    version = str(model.manifest["version"])
    target = registry_dir(output_dir) / version
    if registry.get(version) is None:
        save_model(target, model.model, model.manifest)
    return registry.register(
        version=version, artifact_dir=target, manifest=model.manifest, metrics=metrics
    )


def load_verified(registry: ModelRegistry, version: str) -> FoldModel:
    """Load ``version`` after its registry checksums verified (raises on corruption)."""
    return fold_model_from_saved(*load_model(registry.verified_dir(version)))


@dataclass(frozen=True)
class WindowScores:
    candidate: ValidationScore
    deployed: ValidationScore | None
    rows: int


def validation_mask(
    model: FoldModel, features: pd.DataFrame, settings: PipelineSettings, timeframe: str
) -> np.ndarray:
    """The candidate's purged validation rows (never in its fit slice)."""
    return fold_row_masks(
        features["timestamp"],
        model.fold,
        horizon=settings.target.reach,
        timeframe=timeframe,
        embargo_bars=settings.walk_forward.embargo_bars,
    ).val


def score_on_window(
    model: FoldModel,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    mask: np.ndarray,
    settings: PipelineSettings,
    timeframe: str,
) -> ValidationScore:
    started = time.perf_counter()
    preds = predict_rows(model, features, labels, mask, settings, timeframe, tag="gate")
    seconds = time.perf_counter() - started
    labels_cls = preds["label"].to_numpy(dtype=float) + 2
    return score_predictions(preds[PROB_COLUMNS].to_numpy(dtype=float), labels_cls, seconds)
