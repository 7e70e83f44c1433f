"""Glue between modeling and the registry: save + register a candidate, load a verified model,
score models on the candidate's purged validation window, and a cheap feature importance."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryptoml_pipeline.management.gate import ValidationScore, score_predictions
from cryptoml_pipeline.management.registry import ModelRegistry, ModelVersion
from cryptoml_pipeline.modeling.folds import fold_row_masks
from cryptoml_pipeline.modeling.forecast_model import (
    ForecastModel,
    load_forecast_model,
    predict_forecast,
    save_forecast_model,
)
from cryptoml_pipeline.modeling.gbm import GbmFoldModel
from cryptoml_pipeline.modeling.labels import scoring_returns
from cryptoml_pipeline.settings import PipelineSettings


def registry_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "models" / "registry"


def feature_importance(model: ForecastModel, top: int = 20) -> dict[str, float]:
    """LightGBM: total split gain per feature (lags summed into their feature); the transformer:
    L2 norm of each input feature's column in the input projection (inputs are standardised, so
    the norms are comparable). Normalised to sum to 1; the ``top`` largest."""
    if isinstance(model, GbmFoldModel):
        gain = model.booster.feature_importance(importance_type="gain")
        names = model.booster.feature_name()
        totals: dict[str, float] = {}
        for name, g in zip(names, gain, strict=True):
            base = name.split("__lag")[0]
            totals[base] = totals.get(base, 0.0) + float(g)
        total = sum(totals.values()) or 1.0
        ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
        return {k: v / total for k, v in ranked}
    layer = getattr(model.model, "input_projection", None)
    if layer is None:
        return {}
    weights = layer.weight.detach().to(torch.float64).cpu().numpy()
    norms = np.linalg.norm(weights, axis=0)
    share = norms / norms.sum() if norms.sum() > 0 else norms
    order = np.argsort(-share)[:top]
    return {model.feature_cols[i]: float(share[i]) for i in order}


def save_and_register(
    registry: ModelRegistry, output_dir: Path, model: ForecastModel, metrics: dict
) -> ModelVersion:
    """Write the candidate's artifact under ``models/registry/<version>`` (atomic) and register
    it with its checksums as a candidate."""
    version = str(model.manifest["version"])
    target = registry_dir(output_dir) / version
    if registry.get(version) is None:
        save_forecast_model(target, model)
    return registry.register(
        version=version, artifact_dir=target, manifest=model.manifest, metrics=metrics
    )


def load_verified(registry: ModelRegistry, version: str) -> ForecastModel:
    """Load ``version`` after its registry checksums verified (raises on corruption)."""
    return load_forecast_model(registry.verified_dir(version))


def validation_mask(
    model: ForecastModel, features: pd.DataFrame, settings: PipelineSettings, timeframe: str
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
    model: ForecastModel,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    mask: np.ndarray,
    settings: PipelineSettings,
    timeframe: str,
) -> ValidationScore:
    """Rank IC / hit rate / sign calibration of ``model`` on the ``mask`` rows."""
    started = time.perf_counter()
    preds = predict_forecast(model, features, labels, mask, settings, timeframe, tag="gate")
    seconds = time.perf_counter() - started
    keyed = labels[["timestamp", "symbol"]].assign(_r=scoring_returns(labels))
    keyed["timestamp"] = pd.to_datetime(keyed["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    realised = preds[["timestamp", "symbol"]].merge(keyed, how="left")["_r"].to_numpy(float)
    return score_predictions(
        preds["expected_return"].to_numpy(dtype=float),
        preds["confidence"].to_numpy(dtype=float),
        realised,
        seconds,
    )
