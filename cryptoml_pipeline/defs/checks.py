"""Asset checks live beside their assets; this module gathers them for Definitions."""

from cryptoml_pipeline.defs.assets.deployment import deploy_gate
from cryptoml_pipeline.defs.assets.evaluation import predictions_inside_test_windows
from cryptoml_pipeline.defs.assets.features import feature_causality, feature_warmup_sensitivity
from cryptoml_pipeline.defs.assets.ingestion import (
    funding_complete,
    ohlcv_hard_rules,
    ohlcv_soft_rules,
)

ALL_CHECKS = [
    funding_complete,
    ohlcv_hard_rules,
    ohlcv_soft_rules,
    feature_causality,
    feature_warmup_sensitivity,
    predictions_inside_test_windows,
    deploy_gate,
]
