"""Compatibility module: the zoo's models now live in :mod:`cryptoml_pipeline.modeling.models`
(one file per model behind the ``ZooModel`` interface, the registry ``ZOO``). These names stay
importable from here."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.folds import Fold
from cryptoml_pipeline.modeling.models import ZOO
from cryptoml_pipeline.modeling.models.base import (
    FoldInputs,
    ZooResult,
    classification_metrics,
    empty_predictions,
    run_all_folds,
    unavailable,
)
from cryptoml_pipeline.settings import PipelineSettings

__all__ = [
    "ZooResult",
    "classification_metrics",
    "empty_predictions",
    "run_ensemble",
    "unavailable",
]


def run_ensemble(
    base_predictions: dict[str, pd.DataFrame],
    features: pd.DataFrame,
    folds: list[Fold],
    settings: PipelineSettings,
    timeframe: str,
    labels: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The stacking ensemble over ``folds`` (:mod:`cryptoml_pipeline.modeling.models.ensemble`)."""
    missing = [m for m in settings.ensemble.base_models if m not in base_predictions]
    if missing:
        raise InputError(f"ensemble base models without predictions: {missing}")
    inputs = FoldInputs(
        features, labels, folds[0], settings, timeframe, base_predictions=base_predictions
    )
    return run_all_folds(ZOO["ensemble"], inputs, folds)
