"""The spec's time-series transformer (``CryptoTransformer``) and its positional encoding."""

from __future__ import annotations

import math

import torch
from torch import nn

from cryptoml_pipeline.settings import ModelConfig


class PositionalEncoding(nn.Module):
    """Sinusoidal positional encoding for ``batch_first`` inputs ``[B, L, d_model]``.

    ``pe[pos, 2i] = sin(pos / 10000^(2i/d))`` and ``pe[pos, 2i+1] = cos(...)``; so position 0 is
    ``[0, 1, 0, 1, ...]``. The table is a (non-persistent) buffer: it follows ``.to(device)`` but is
    not stored in the ``state_dict``, since it is a pure function of ``d_model`` and ``max_len``.
    """

    pe: torch.Tensor

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        div_term = torch.exp(
            torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model)
        )
        pe = torch.zeros(max_len, d_model, dtype=torch.float32)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
        self.register_buffer("pe", pe.unsqueeze(0), persistent=False)  # [1, max_len, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.size(1)
        if length > self.pe.size(1):
            raise ValueError(f"sequence length {length} exceeds max_len {self.pe.size(1)}")
        return self.dropout(x + self.pe[:, :length].to(x.dtype))


class CryptoTransformer(nn.Module):
    """The spec's ``CryptoTransformer``: projection -> positional encoding -> encoder -> last step.

    The spec's code ends in ``nn.Linear(128, 3)`` (Buy/Hold/Sell), but its labels have five classes
    (-2..2); we use ``n_classes = 5`` logits with ``class index = label + 2``. Every size comes from
    :class:`ModelConfig`; ``dim_feedforward`` is always explicit (PyTorch's default of 2048 is ~8x
    slower on CPU). Input ``[batch, sequence_length, input_dim]``; output logits
    ``[batch, n_classes]``.
    """

    def __init__(self, input_dim: int, config: ModelConfig, n_classes: int = 5) -> None:
        super().__init__()
        if input_dim <= 0:
            raise ValueError(f"input_dim must be positive, got {input_dim}")
        self.input_dim = input_dim
        self.config = config
        self.n_classes = n_classes
        self.input_projection = nn.Linear(input_dim, config.d_model)
        self.positional_encoding = PositionalEncoding(
            config.d_model, dropout=config.dropout, max_len=max(5000, config.sequence_length)
        )
        encoder_layer = nn.TransformerEncoderLayer(
            d_model=config.d_model,
            nhead=config.nhead,
            dim_feedforward=config.dim_feedforward,
            dropout=config.dropout,
            batch_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            encoder_layer, config.num_layers, enable_nested_tensor=False
        )
        self.classifier = nn.Sequential(
            nn.Linear(config.d_model, config.head_hidden),
            nn.ReLU(),
            nn.Dropout(config.head_dropout),
            nn.Linear(config.head_hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Input shape: (batch_size, sequence_length, features)
        x = self.input_projection(x)
        x = self.positional_encoding(x)
        x = self.transformer(x)
        x = x[:, -1, :]  # the last timestep carries the prediction
        return self.classifier(x)
