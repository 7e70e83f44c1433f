"""Candidates in the registry: save + register a trained model, load a verified one."""

from __future__ import annotations

from pathlib import Path

from cryptoml_pipeline.modeling.forecast_model import (
    ForecastModel,
    load_forecast_model,
    save_forecast_model,
)
from cryptoml_pipeline.registry.model_registry import ModelRegistry, ModelVersion


def registry_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "models" / "registry"


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
