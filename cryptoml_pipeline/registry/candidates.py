"""Candidates in the registry: save + register a trained model, load a verified one."""

from __future__ import annotations

from pathlib import Path

from cryptoml_pipeline.modeling.models import ZOO, Fitted, load_saved
from cryptoml_pipeline.registry.model_registry import ModelRegistry, ModelVersion


def registry_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "models" / "registry"


def save_and_register(
    registry: ModelRegistry, output_dir: Path, model: Fitted, metrics: dict
) -> ModelVersion:
    """Write the candidate's artifact (``ZOO[model.name].save``) under
    ``models/registry/<version>`` (atomic) and register it with its checksums as a candidate."""
    version = str(model.manifest["version"])
    target = registry_dir(output_dir) / version
    if registry.get(version) is None:
        ZOO[str(model.name)].save(model, target)
    return registry.register(
        version=version, artifact_dir=target, manifest=model.manifest, metrics=metrics
    )


def load_verified(registry: ModelRegistry, version: str) -> Fitted:
    """Load ``version`` after its registry checksums verified (raises on corruption); its
    manifest names the zoo model that loads it."""
    return load_saved(registry.verified_dir(version))
