"""train_model / predict_proba: learns, deterministic, early stopping, autocast path."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.datasets import SequenceDataset
from cryptoml_pipeline.modeling.training import (
    _evaluate,
    _loader,
    inverse_frequency_weights,
    predict_proba,
    resolve_device,
    train_model,
)
from cryptoml_pipeline.settings import ModelConfig, TrainingConfig

L, F = 6, 3
MODEL = ModelConfig(
    d_model=16,
    nhead=2,
    num_layers=1,
    dim_feedforward=32,
    head_hidden=16,
    sequence_length=L,
    dropout=0.0,
    head_dropout=0.0,
)
TRAIN = TrainingConfig(
    batch_size=32,
    learning_rate=3e-3,
    epochs=12,
    early_stopping_patience=12,
    t0=4,
    device="cpu",
    num_threads=1,
)


def _separable(n: int, seed: int, noise_labels: bool = False) -> SequenceDataset:
    """Class c puts feature 0 of the window's last row at c - 2 (+ small noise): separable."""
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(n + L - 1, F)).astype(np.float32)
    rows = np.arange(L - 1, n + L - 1)
    classes = rng.integers(0, 5, size=n)
    matrix[rows, 0] = (classes - 2) + 0.1 * rng.normal(size=n)
    if noise_labels:
        classes = rng.integers(0, 5, size=n)
    return SequenceDataset(matrix, rows, classes, L)


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_learns_a_separable_task() -> None:
    res = train_model(
        _separable(400, 0),
        _separable(200, 1),
        input_dim=F,
        model_config=MODEL,
        training_config=TRAIN,
    )
    assert max(h.val_accuracy for h in res.history) > 0.9
    probs = predict_proba(res.model, _separable(200, 2), batch_size=64, device="cpu")
    acc = (probs.argmax(1) == _separable(200, 2).classes).mean()
    assert acc > 0.9
    assert probs.shape == (200, 5)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    assert res.device == "cpu" and res.train_seconds > 0
    assert res.class_weights == list(TRAIN.class_weights)


def test_training_is_deterministic_on_cpu() -> None:
    cfg = TRAIN.model_copy(update={"epochs": 2})
    model_cfg = MODEL.model_copy(update={"dropout": 0.1, "head_dropout": 0.2})
    runs = [
        train_model(
            _separable(160, 0),
            _separable(64, 1),
            input_dim=F,
            model_config=model_cfg,
            training_config=cfg,
        )
        for _ in range(2)
    ]
    assert _same_state(runs[0].model, runs[1].model)
    assert runs[0].history[-1].train_loss == runs[1].history[-1].train_loss
    other = train_model(
        _separable(160, 0),
        _separable(64, 1),
        input_dim=F,
        model_config=model_cfg,
        training_config=cfg.model_copy(update={"seed": 7}),
    )
    assert not _same_state(runs[0].model, other.model)


def test_early_stopping_restores_the_best_epoch() -> None:
    cfg = TRAIN.model_copy(
        update={"epochs": 15, "early_stopping_patience": 2, "learning_rate": 1e-2}
    )
    val = _separable(128, 5, noise_labels=True)  # random labels: val loss soon rises
    res = train_model(
        _separable(128, 4, noise_labels=True),
        val,
        input_dim=F,
        model_config=MODEL,
        training_config=cfg,
    )
    losses = [h.val_loss for h in res.history]
    assert res.best_epoch == int(np.argmin(losses)) + 1
    assert len(res.history) < cfg.epochs  # it did stop early
    assert res.best_epoch < len(res.history)  # the final weights are not the last epoch's
    weight = torch.tensor(cfg.class_weights, dtype=torch.float32)
    loss, _ = _evaluate(
        res.model, _loader(val, 64, torch.device("cpu"), None), weight, torch.device("cpu"), False
    )
    assert loss == pytest.approx(min(losses), rel=1e-5)


def test_autocast_path_runs_on_cpu() -> None:
    cfg = TRAIN.model_copy(update={"epochs": 2})
    res = train_model(
        _separable(96, 0),
        _separable(32, 1),
        input_dim=F,
        model_config=MODEL,
        training_config=cfg,
        force_autocast=True,
    )
    assert all(np.isfinite(h.train_loss) and np.isfinite(h.val_loss) for h in res.history)


def test_empty_validation_monitors_train_loss(caplog: pytest.LogCaptureFixture) -> None:
    cfg = TRAIN.model_copy(update={"epochs": 2, "class_weights": None, "max_batches_per_epoch": 1})
    empty = SequenceDataset(np.zeros((L, F), np.float32), np.zeros(0), np.zeros(0), L)
    with caplog.at_level(logging.INFO, logger="cryptoml_pipeline.modeling.training"):
        res = train_model(
            _separable(96, 0), empty, input_dim=F, model_config=MODEL, training_config=cfg
        )
    assert res.monitor == "train_loss"
    assert all(h.val_loss is None and h.val_accuracy is None for h in res.history)
    assert "validation set is empty" in caplog.text
    assert "epoch 2/2" in caplog.text
    # class weights from inverse training-label frequency
    assert res.class_weights == inverse_frequency_weights(_separable(96, 0).classes)


class _CountingDataset(SequenceDataset):
    fetched = 0

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        type(self).fetched += 1
        return super().__getitem__(index)


def test_max_batches_per_epoch_is_honoured() -> None:
    base = _separable(320, 0)
    ds = _CountingDataset(base._matrix.numpy(), base.rows, base.classes, L)
    empty = SequenceDataset(np.zeros((L, F), np.float32), np.zeros(0), np.zeros(0), L)
    cfg = TRAIN.model_copy(update={"epochs": 3, "max_batches_per_epoch": 2})
    res = train_model(ds, empty, input_dim=F, model_config=MODEL, training_config=cfg)
    assert len(res.history) == 3
    assert _CountingDataset.fetched == 3 * 2 * cfg.batch_size  # 10 batches exist, 2 are used


def test_inverse_frequency_weights_by_hand() -> None:
    w = inverse_frequency_weights(np.array([0, 0, 0, 1, 2, 2]))
    # raw n/(K*count) = [0.4, 1.2, 0.6], normalised to mean 1 over present classes; absent -> 1
    np.testing.assert_allclose(w, [6 / 11, 18 / 11, 9 / 11, 1.0, 1.0])


def test_device_resolution_and_empty_train_set() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="cuda"):
            resolve_device("cuda")
    empty = SequenceDataset(np.zeros((L, F), np.float32), np.zeros(0), np.zeros(0), L)
    with pytest.raises(InputError, match="no training samples"):
        train_model(empty, empty, input_dim=F, model_config=MODEL, training_config=TRAIN)
