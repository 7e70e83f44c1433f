"""Causal feature engineering (Dagster-free). Entry point: :func:`compute_features`."""

from cryptoml_pipeline.features.build import (
    FAMILIES,
    FeatureBuild,
    FeaturePlan,
    build_features,
    compute_features,
    feature_columns,
    feature_names,
    model_feature_columns,
    plan_features,
    warmup_bars,
    warmup_period,
)
from cryptoml_pipeline.features.causality import LeakReport, find_lookahead
from cryptoml_pipeline.features.schemas import validate_feature_table

__all__ = [
    "FAMILIES",
    "FeatureBuild",
    "FeaturePlan",
    "LeakReport",
    "build_features",
    "compute_features",
    "feature_columns",
    "feature_names",
    "find_lookahead",
    "model_feature_columns",
    "plan_features",
    "validate_feature_table",
    "warmup_bars",
    "warmup_period",
]
