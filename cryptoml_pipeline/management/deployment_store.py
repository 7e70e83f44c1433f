"""The deployed-model directory (``OUTPUT/models/deployed``): the one source of truth until the
Management issue adds a registry. Writes are atomic: a half-written model never becomes deployed."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from cryptoml_pipeline.modeling.persistence import save_model


def deployed_dir(output_dir: Path) -> Path:
    return output_dir / "models" / "deployed"


def read_deployed_manifest(output_dir: Path) -> dict[str, Any] | None:
    path = deployed_dir(output_dir) / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def deploy(output_dir: Path, model: nn.Module, manifest: dict[str, Any]) -> Path:
    """Write the model into a temp dir beside ``deployed/`` and swap it in; the previous deployed
    model is kept as ``models/previous``."""
    target = deployed_dir(output_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".deploying."))
    save_model(tmp, model, manifest)
    previous = target.parent / "previous"
    if target.exists():
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(target, previous)
    os.replace(tmp, target)
    return target
