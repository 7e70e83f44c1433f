"""Model files without pickle: ``model.pt`` (a ``state_dict`` of tensors) + ``manifest.json``.

``save_model`` writes the weights to a temporary file and ``os.replace``-s it into place, then the
manifest (holding the weights' SHA-256) the same way, last: a reader never sees a manifest whose
weights are not yet complete. ``load_model`` verifies the checksum and loads with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.modeling.nets.transformer import CryptoTransformer
from cryptoml_pipeline.settings import ModelConfig

WEIGHTS_FILE = "model.pt"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


class ModelChecksumError(DataValidationError):
    """``model.pt`` does not match the ``weights_sha256`` recorded in its manifest."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy -> Python/lists, timestamps -> ISO strings, NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    raise InputError(f"manifest value of type {type(value).__name__} is not JSON-serialisable")


def _atomic_write(target: Path, write: Any) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def save_model(directory: Path, model: nn.Module, manifest: dict) -> Path:
    """Write ``model.pt`` and ``manifest.json`` into ``directory`` (created if needed); returns it.

    The stored manifest is ``manifest`` plus ``weights_sha256``, ``weights_file``,
    ``format_version`` and — from a :class:`CryptoTransformer` — ``model_class``,
    ``model_config`` (``ModelConfig.model_dump``), ``input_dim`` and ``n_classes``. Callers add the
    feature list (``feature_cols``) and scaler stats (``scaler``) needed to use the model.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights_path = directory / WEIGHTS_FILE
    _atomic_write(weights_path, lambda fh: torch.save(state, fh))
    full = dict(manifest)
    if isinstance(model, CryptoTransformer):
        full.update(
            model_class="CryptoTransformer",
            model_config=model.config.model_dump(mode="json"),
            input_dim=model.input_dim,
            n_classes=model.n_classes,
        )
    full.update(
        format_version=FORMAT_VERSION,
        weights_file=WEIGHTS_FILE,
        weights_sha256=file_sha256(weights_path),
    )
    text = json.dumps(to_jsonable(full), indent=2, sort_keys=True, allow_nan=False)
    _atomic_write(directory / MANIFEST_FILE, lambda fh: fh.write(text.encode("utf-8")))
    return directory


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        raise InputError(f"no model manifest at {path}")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_model(directory: Path) -> tuple[CryptoTransformer, dict]:
    """Rebuild the model from ``manifest.json`` and load ``model.pt`` after verifying its checksum.

    Raises :class:`ModelChecksumError` (a ``DataValidationError``) naming the file on a mismatch.
    The model is returned on CPU, in eval mode.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    weights_path = directory / str(manifest.get("weights_file", WEIGHTS_FILE))
    if not weights_path.is_file():
        raise InputError(f"model weights missing: {weights_path}")
    expected = manifest.get("weights_sha256")
    actual = file_sha256(weights_path)
    if actual != expected:
        raise ModelChecksumError(
            f"checksum mismatch for {weights_path}: sha256 {actual} != manifest {expected}"
        )
    if manifest.get("model_class", "CryptoTransformer") != "CryptoTransformer":
        raise InputError(
            f"{directory / MANIFEST_FILE}: unsupported model {manifest['model_class']}"
        )
    for key in ("model_config", "input_dim", "n_classes"):
        if key not in manifest:
            raise InputError(f"{directory / MANIFEST_FILE} lacks {key!r}")
    config = ModelConfig.model_validate(manifest["model_config"])
    model = CryptoTransformer(
        int(manifest["input_dim"]), config, n_classes=int(manifest["n_classes"])
    )
    state = torch.load(weights_path, weights_only=True, map_location="cpu")
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, manifest
