"""The deploy gate's evidence: a model scored on the candidate's purged validation window."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from cryptoml_pipeline.modeling.folds import fold_row_masks
from cryptoml_pipeline.modeling.labels import scoring_returns
from cryptoml_pipeline.modeling.models import ZOO, Fitted
from cryptoml_pipeline.monitoring.gate import ValidationScore, score_predictions
from cryptoml_pipeline.settings import PipelineSettings


def validation_mask(
    model: Fitted, features: pd.DataFrame, settings: PipelineSettings, timeframe: str
) -> np.ndarray:
    """The candidate's purged validation rows (never in its fit slice)."""
    return fold_row_masks(
        features["timestamp"],
        model.fold,
        horizon=settings.target.reach,
        timeframe=timeframe,
        embargo_bars=settings.walk_forward.embargo_bars,
    ).val


def score_on_window(
    model: Fitted,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    mask: np.ndarray,
    settings: PipelineSettings,
    timeframe: str,
) -> ValidationScore:
    """Rank IC / hit rate / sign calibration of ``model`` on the ``mask`` rows."""
    zoo = ZOO[str(model.name)]
    started = time.perf_counter()
    preds = zoo.predict_rows(model, features, labels, mask, settings, timeframe, tag="gate")
    seconds = time.perf_counter() - started
    keyed = labels[["timestamp", "symbol"]].assign(_r=scoring_returns(labels))
    keyed["timestamp"] = pd.to_datetime(keyed["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    realised = preds[["timestamp", "symbol"]].merge(keyed, how="left")["_r"].to_numpy(float)
    return score_predictions(
        preds["expected_return"].to_numpy(dtype=float),
        preds["confidence"].to_numpy(dtype=float),
        realised,
        seconds,
    )
