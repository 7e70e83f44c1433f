"""save_model / load_model: no pickle, checksum verified, identical outputs after a round trip."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cryptoml_pipeline.errors import DataValidationError
from cryptoml_pipeline.modeling import persistence
from cryptoml_pipeline.modeling.nets.transformer import CryptoTransformer
from cryptoml_pipeline.modeling.persistence import ModelChecksumError, load_model, save_model
from cryptoml_pipeline.modeling.scaling import fit_scaler
from cryptoml_pipeline.settings import ModelConfig

CFG = ModelConfig(
    d_model=8, nhead=2, num_layers=1, dim_feedforward=16, head_hidden=8, sequence_length=5
)


def _saved(tmp_path: Path) -> tuple[CryptoTransformer, Path]:
    torch.manual_seed(3)
    model = CryptoTransformer(3, CFG).eval()
    scaler = fit_scaler(np.array([[1.0, 2.0, 3.0], [2.0, 4.0, np.nan]]))
    manifest = {
        "feature_cols": ["a", "b", "c"],
        "scaler": scaler.to_dict(),
        "val_accuracy": np.float64(0.5),
        "nan_metric": float("nan"),
        "test_start": "2024-01-01T00:00:00+00:00",
    }
    return model, save_model(tmp_path / "m", model, manifest)


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    model, directory = _saved(tmp_path)
    loaded, manifest = load_model(directory)
    x = torch.randn(4, 5, 3)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training
    assert manifest["model_config"] == CFG.model_dump(mode="json")
    assert manifest["input_dim"] == 3 and manifest["n_classes"] == 5
    assert manifest["feature_cols"] == ["a", "b", "c"]
    assert manifest["scaler"]["std"][2] == 1e-8  # one finite value: std 0 -> floor
    assert manifest["nan_metric"] is None and manifest["val_accuracy"] == 0.5
    assert sorted(p.name for p in directory.iterdir()) == ["manifest.json", "model.pt"]


def test_weights_are_a_plain_state_dict_loaded_weights_only(tmp_path: Path) -> None:
    _, directory = _saved(tmp_path)
    state = torch.load(directory / "model.pt", weights_only=True, map_location="cpu")
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert "weights_only=True" in inspect.getsource(persistence.load_model)
    assert "import pickle" not in inspect.getsource(persistence)
    json.loads((directory / "manifest.json").read_text())  # strict JSON (no NaN)


def test_tampered_weights_are_rejected(tmp_path: Path) -> None:
    _, directory = _saved(tmp_path)
    state = torch.load(directory / "model.pt", weights_only=True)
    state["classifier.3.bias"] = state["classifier.3.bias"] + 1.0
    torch.save(state, directory / "model.pt")
    with pytest.raises(ModelChecksumError, match=r"model\.pt") as err:
        load_model(directory)
    assert isinstance(err.value, DataValidationError)


def test_overwrite_replaces_both_files(tmp_path: Path) -> None:
    _, directory = _saved(tmp_path)
    torch.manual_seed(9)
    other = CryptoTransformer(3, CFG).eval()
    save_model(directory, other, {"feature_cols": ["a", "b", "c"]})
    loaded, manifest = load_model(directory)
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        assert torch.equal(other(x), loaded(x))
    assert "scaler" not in manifest
