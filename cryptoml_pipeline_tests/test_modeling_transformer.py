"""CryptoTransformer / PositionalEncoding: shapes, encoding values, batch_first, spec structure."""

from __future__ import annotations

import math

import torch
from torch import nn

from cryptoml_pipeline.modeling.nets.transformer import CryptoTransformer, PositionalEncoding
from cryptoml_pipeline.settings import ModelConfig

CFG = ModelConfig(
    d_model=16, nhead=2, num_layers=2, dim_feedforward=24, head_hidden=12, sequence_length=10
)


def _model(input_dim: int = 4) -> CryptoTransformer:
    torch.manual_seed(0)
    return CryptoTransformer(input_dim, CFG).eval()


def test_output_is_five_logits_per_sample() -> None:
    out = _model()(torch.randn(3, 10, 4))
    assert out.shape == (3, 5)
    assert torch.isfinite(out).all()


def test_structure_follows_the_spec_and_config() -> None:
    model = _model(7)
    assert model.input_projection.in_features == 7
    assert model.input_projection.out_features == 16
    layers = model.transformer.layers
    assert len(layers) == 2
    assert layers[0].linear1.out_features == 24  # dim_feedforward explicit, not 2048
    assert layers[0].self_attn.batch_first
    head = model.classifier
    assert isinstance(head[0], nn.Linear) and head[0].out_features == 12
    assert isinstance(head[1], nn.ReLU)
    assert isinstance(head[2], nn.Dropout) and head[2].p == CFG.head_dropout
    assert head[3].out_features == 5


def test_positional_encoding_values() -> None:
    pe = PositionalEncoding(6, dropout=0.0, max_len=8)
    out = pe(torch.zeros(1, 3, 6))[0]
    assert torch.allclose(out[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    # position 1, dimension pair 0 has frequency 1; pair 1 has 1/10000^(2/6)
    f1 = 10000 ** (-2 / 6)
    assert math.isclose(out[1, 0].item(), math.sin(1.0), rel_tol=1e-6)
    assert math.isclose(out[1, 1].item(), math.cos(1.0), rel_tol=1e-6)
    assert math.isclose(out[2, 2].item(), math.sin(2 * f1), rel_tol=1e-5)
    assert "pe" not in pe.state_dict()  # derived, not stored with the weights


def test_output_depends_on_earlier_timesteps() -> None:
    model = _model()
    x = torch.randn(2, 10, 4)
    y = x.clone()
    y[:, 0, :] += 3.0  # only the first (oldest) timestep changes
    assert not torch.allclose(model(x), model(y), atol=1e-5)


def test_batch_first_samples_are_independent() -> None:
    model = _model()
    x = torch.randn(4, 10, 4)
    y = x.clone()
    y[1:] = torch.randn(3, 10, 4)  # other samples of the batch change
    assert torch.allclose(model(x)[0], model(y)[0], atol=1e-5)


def test_prediction_is_read_from_the_last_timestep() -> None:
    model = _model()
    x = torch.randn(2, 10, 4)
    h = model.transformer(model.positional_encoding(model.input_projection(x)))
    assert torch.allclose(model(x), model.classifier(h[:, -1, :]), atol=1e-6)
