"""The deployed-model directory (``OUTPUT/models/deployed``): the one source of truth until the
Management issue adds a registry. Writes are atomic: a half-written model never becomes deployed."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cryptoml_pipeline.modeling.models import ZOO, Fitted


def deployed_dir(output_dir: Path) -> Path:
    return output_dir / "models" / "deployed"


def deploy(output_dir: Path, model: Fitted, manifest: dict[str, Any]) -> Path:
    """Write the model (``ZOO[model.name].save``, with ``manifest``) into a temp dir beside
    ``deployed/`` and swap it in; the previous deployed model is kept as ``models/previous``."""
    target = deployed_dir(output_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".deploying."))
    model.manifest = dict(manifest)
    ZOO[str(model.name)].save(model, tmp)
    previous = target.parent / "previous"
    if target.exists():
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(target, previous)
    os.replace(tmp, target)
    return target
