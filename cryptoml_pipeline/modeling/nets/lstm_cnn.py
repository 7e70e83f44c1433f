"""The spec's ``MultiScaleLSTMCNN``: one conv branch per timeframe -> 2-layer LSTM -> attention.

Input ``x`` is ``[batch, n_scales, sequence_length, n_features]``: for every decision row, the
last ``sequence_length`` *closed* bars of each timeframe (see :mod:`cryptoml_pipeline.modeling.
multiscale`, which does the causal alignment). Each scale goes through its own conv block
(``Conv1d(k=3, padding=1) -> BatchNorm1d -> ReLU -> MaxPool1d(2)``, as in the spec); the branch
outputs are concatenated on the channel axis (``64 x n_scales``; the spec's 192 for three scales)
and read step by step by a 2-layer LSTM (hidden 128, dropout 0.2), then multi-head self-attention
(8 heads, with a residual connection and LayerNorm — the spec leaves the forward pass open; without
the residual the network could not even learn a planted one-feature rule) and the head
``Linear(128, 64) -> ReLU -> Dropout(0.3) -> Linear(64, out)``.

``head="regression"`` (the spec's choice) has one output, a forward-return estimate in units of
the label thresholds, mapped to a signal by :func:`regression_to_signal`; ``head="classification"``
has ``n_classes`` logits like the transformer (class index = label + 2).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from cryptoml_pipeline.modeling.labels import classify_returns

Head = Literal["classification", "regression"]


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm1d(out_channels),
        nn.ReLU(),
        nn.MaxPool1d(2),
    )


class MultiScaleLSTMCNN(nn.Module):
    def __init__(
        self,
        input_dim: int,
        n_scales: int,
        *,
        conv_channels: int = 64,
        lstm_hidden: int = 128,
        lstm_layers: int = 2,
        lstm_dropout: float = 0.2,
        attention_heads: int = 8,
        head_hidden: int = 64,
        head_dropout: float = 0.3,
        head: Head = "classification",
        n_classes: int = 5,
    ) -> None:
        super().__init__()
        if input_dim <= 0 or n_scales <= 0:
            raise ValueError(f"input_dim and n_scales must be positive ({input_dim}, {n_scales})")
        if lstm_hidden % attention_heads:
            raise ValueError(f"lstm_hidden={lstm_hidden} not divisible by {attention_heads} heads")
        self.input_dim = input_dim
        self.n_scales = n_scales
        self.head = head
        self.n_classes = n_classes if head == "classification" else 1
        self.branches = nn.ModuleList(
            _conv_block(input_dim, conv_channels) for _ in range(n_scales)
        )
        self.lstm = nn.LSTM(
            input_size=conv_channels * n_scales,
            hidden_size=lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            dropout=lstm_dropout if lstm_layers > 1 else 0.0,
        )
        self.attention = nn.MultiheadAttention(lstm_hidden, attention_heads, batch_first=True)
        self.attention_norm = nn.LayerNorm(lstm_hidden)
        self.classifier = nn.Sequential(
            nn.Linear(lstm_hidden, head_hidden),
            nn.ReLU(),
            nn.Dropout(head_dropout),
            nn.Linear(head_hidden, self.n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.size(1) != self.n_scales or x.size(3) != self.input_dim:
            raise ValueError(
                f"expected [batch, {self.n_scales}, length, {self.input_dim}], got {tuple(x.shape)}"
            )
        # each branch: [B, L, F] -> conv over time on [B, F, L] -> [B, C, L/2]
        parts = [branch(x[:, i].transpose(1, 2)) for i, branch in enumerate(self.branches)]
        seq = torch.cat(parts, dim=1).transpose(1, 2)  # [B, L/2, C * n_scales]
        out, _ = self.lstm(seq)
        attended, _ = self.attention(out, out, out, need_weights=False)
        # residual + LayerNorm around the attention (transformer-style): without it the last
        # step's own LSTM state is washed out by the attention average and training stalls
        mixed = self.attention_norm(out + attended)
        logits = self.classifier(mixed[:, -1, :])
        return logits.squeeze(-1) if self.head == "regression" else logits


def regression_to_signal(
    predicted_return: np.ndarray, weak_threshold: float, strong_threshold: float
) -> np.ndarray:
    """The regression head's forward-return estimate -> signal -2..2, with the label thresholds.

    Exactly :func:`~cryptoml_pipeline.modeling.labels.classify_returns` (``> strong`` -> 2,
    ``> weak`` -> 1, ``> -weak`` -> 0, ``> -strong`` -> -1, else -2): the cut points the labels use
    on realised returns, so a perfect regressor reproduces the labels. NaN stays NaN.
    """
    return classify_returns(
        np.asarray(predicted_return, dtype=np.float64),
        weak_threshold=weak_threshold,
        strong_threshold=strong_threshold,
    )
