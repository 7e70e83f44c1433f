"""Asset checks live beside their assets; this module gathers them for Definitions."""

from cryptoml_pipeline.defs.assets.evaluation import predictions_inside_test_windows
from cryptoml_pipeline.defs.assets.features import feature_causality
from cryptoml_pipeline.defs.assets.ingestion import funding_complete

ALL_CHECKS = [funding_complete, feature_causality, predictions_inside_test_windows]
