"""Causal feature engineering (Dagster-free). Entry point: :func:`compute_features`."""

from cryptoml_pipeline.features.build import (
    compute_features,
    feature_columns,
    feature_names,
    warmup_bars,
)
from cryptoml_pipeline.features.causality import LeakReport, find_lookahead
from cryptoml_pipeline.features.schemas import validate_feature_table

__all__ = [
    "LeakReport",
    "compute_features",
    "feature_columns",
    "feature_names",
    "find_lookahead",
    "validate_feature_table",
    "warmup_bars",
]
