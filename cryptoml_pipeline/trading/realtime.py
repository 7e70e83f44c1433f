"""Moved: the real-time signal lives in :mod:`cryptoml_pipeline.serving` (model loading, the
universe's causal tail, features over every universe member, the backtest's decision). This
module re-exports it for existing imports."""

from cryptoml_pipeline.serving import (
    Decision,
    NotDeployedError,
    ServedModel,
    closed_bars,
    decide,
    load_served,
    signals,
    store_tail,
    tail_features,
    tail_span,
)

__all__ = [
    "Decision",
    "NotDeployedError",
    "ServedModel",
    "closed_bars",
    "decide",
    "load_served",
    "signals",
    "store_tail",
    "tail_features",
    "tail_span",
]
