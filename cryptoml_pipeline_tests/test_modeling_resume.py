"""A training run killed after an epoch resumes from its checkpoint to the same final weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.datasets import SequenceDataset
from cryptoml_pipeline.modeling.training import train_model
from cryptoml_pipeline.settings import ModelConfig, TrainingConfig

L, F = 6, 3
MODEL = ModelConfig(
    d_model=16,
    nhead=2,
    num_layers=1,
    dim_feedforward=32,
    head_hidden=16,
    sequence_length=L,
    dropout=0.2,  # dropout on: the resumed run must also restore the torch RNG
    head_dropout=0.2,
)
TRAIN = TrainingConfig(
    batch_size=16,
    learning_rate=3e-3,
    epochs=6,
    early_stopping_patience=6,
    t0=2,
    device="cpu",
    num_threads=1,
)


class Interrupted(Exception):
    pass


def _ds(n: int, seed: int) -> SequenceDataset:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(n + L - 1, F)).astype(np.float32)
    rows = np.arange(L - 1, n + L - 1)
    classes = rng.integers(0, 5, size=n)
    matrix[rows, 0] = (classes - 2) + 0.3 * rng.normal(size=n)
    return SequenceDataset(matrix, rows, classes, L)


def _train(ckpt=None, stop_after: int | None = None, **kw):
    def hook(log):
        if stop_after is not None and log.epoch == stop_after:
            raise Interrupted

    return train_model(
        _ds(96, 1),
        _ds(32, 2),
        input_dim=F,
        model_config=MODEL,
        training_config=kw.pop("training_config", TRAIN),
        checkpoint_path=ckpt,
        on_epoch_end=hook,
        **kw,
    )


def _equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_interrupted_run_resumes_to_identical_weights(tmp_path):
    reference = _train()
    ckpt = tmp_path / "fold" / "train.ckpt"
    with pytest.raises(Interrupted):
        _train(ckpt, stop_after=3)
    assert ckpt.is_file()
    resumed = _train(ckpt)
    assert [h.epoch for h in resumed.history] == [1, 2, 3, 4, 5, 6]
    assert resumed.best_epoch == reference.best_epoch
    assert _equal(resumed.model, reference.model)
    for a, b in zip(resumed.history, reference.history, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, abs=0)
        assert a.val_loss == pytest.approx(b.val_loss, abs=0)


def test_finished_checkpoint_returns_without_training(tmp_path):
    ckpt = tmp_path / "train.ckpt"
    first = _train(ckpt)
    calls = []
    again = train_model(
        _ds(96, 1),
        _ds(32, 2),
        input_dim=F,
        model_config=MODEL,
        training_config=TRAIN,
        checkpoint_path=ckpt,
        on_epoch_end=calls.append,
    )
    assert calls == []  # nothing left to train
    assert _equal(first.model, again.model)


def test_checkpoint_of_another_run_is_refused(tmp_path):
    ckpt = tmp_path / "train.ckpt"
    with pytest.raises(Interrupted):
        _train(ckpt, stop_after=1)
    other = TRAIN.model_copy(update={"learning_rate": 1e-2})
    with pytest.raises(InputError, match="different run"):
        _train(ckpt, training_config=other)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    ckpt = tmp_path / "train.ckpt"
    with pytest.raises(Interrupted):
        _train(ckpt, stop_after=1)
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(InputError, match="unreadable"):
        _train(ckpt)


def test_pick_batch_size_times_candidates_skips_oom_and_restores_weights():
    from torch import nn

    from cryptoml_pipeline.modeling.nets.transformer import CryptoTransformer
    from cryptoml_pipeline.modeling.training import pick_batch_size

    class OomAbove(nn.Module):
        """The transformer, but 'out of memory' for batches above 32 (as a GPU would be)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = CryptoTransformer(F, MODEL)

        def forward(self, x):
            if x.shape[0] > 32:
                raise torch.OutOfMemoryError("simulated")
            return self.net(x)

    torch.manual_seed(0)
    model = OomAbove()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ds = _ds(96, 1)
    best = pick_batch_size(model, ds, torch.device("cpu"), (16, 32, 64), False)
    assert best in (16, 32)  # 64 ran "out of memory"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(InputError, match="out of memory"):
        pick_batch_size(model, ds, torch.device("cpu"), (64, 128), False)
