"""One interface over the models that can be deployed and served (the strategy models).

A *forecast model* is a trained :class:`~cryptoml_pipeline.modeling.fold_training.FoldModel`
(the transformer) or :class:`~cryptoml_pipeline.modeling.gbm.GbmFoldModel` (LightGBM). Both carry
``fold``, ``feature_cols`` and a JSON ``manifest``; these functions fit, predict (in the one
prediction schema), save and load either, so the deploy gate, the tracker, paper trading and the
real-time signal never branch on the model themselves.

* :func:`fit_forecast_model` — fit ``kind`` ("gbm" | "transformer") on a fold: LightGBM pooled
  over every universe row, the transformer on the traded symbols' rows.
* :func:`predict_forecast` — predictions for selected rows.
* :func:`save_forecast_model` / :func:`load_forecast_model` — state_dict or LightGBM text plus a
  manifest; never a pickle. The manifest's ``model_class`` says which loader applies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.fold_training import (
    FoldModel,
    fold_model_from_saved,
    predict_rows,
    train_fold,
)
from cryptoml_pipeline.modeling.folds import Fold
from cryptoml_pipeline.modeling.gbm import (
    GbmFoldModel,
    load_gbm,
    predict_gbm_rows,
    save_gbm,
    train_gbm_fold,
)
from cryptoml_pipeline.modeling.persistence import load_model, save_model
from cryptoml_pipeline.settings import PipelineSettings

ForecastModel = FoldModel | GbmFoldModel
FORECAST_KINDS = ("gbm", "transformer")


def model_kind(model: ForecastModel) -> str:
    return "gbm" if isinstance(model, GbmFoldModel) else "transformer"


def _rows_of(frame: pd.DataFrame, symbols: tuple[str, ...] | list[str] | None) -> pd.DataFrame:
    if symbols is None:
        return frame
    keep = frame["symbol"].astype(str).isin(list(symbols))
    return frame if keep.all() else frame[keep].reset_index(drop=True)


def fit_forecast_model(
    kind: str,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
    *,
    traded: tuple[str, ...] | list[str] | None = None,
) -> ForecastModel:
    """Fit a strategy model of ``kind`` on ``fold``'s purged training window."""
    if kind == "gbm":
        model: ForecastModel = train_gbm_fold(features, labels, fold, settings, timeframe)
    elif kind == "transformer":
        model = train_fold(
            _rows_of(features, traded), _rows_of(labels, traded), fold, settings, timeframe
        )
    else:
        raise InputError(f"unknown strategy model {kind!r}; choose one of {FORECAST_KINDS}")
    model.manifest["model_kind"] = kind
    model.manifest["traded_symbols"] = list(traded) if traded is not None else None
    return model


def predict_forecast(
    model: ForecastModel,
    features: pd.DataFrame,
    labels: pd.DataFrame | None,
    row_mask: np.ndarray,
    settings: PipelineSettings,
    timeframe: str,
    *,
    tag: str,
) -> pd.DataFrame:
    """Predictions (the prediction schema) for the rows of ``row_mask`` — inference with no
    leakage guard; walk-forward evaluation predicts through the fold functions."""
    if isinstance(model, GbmFoldModel):
        return predict_gbm_rows(model, features, labels, row_mask, settings, timeframe, tag=tag)
    return predict_rows(model, features, labels, row_mask, settings, timeframe, tag=tag)


def save_forecast_model(directory: Path, model: ForecastModel) -> Path:
    if isinstance(model, GbmFoldModel):
        return save_gbm(Path(directory), model)
    return save_model(Path(directory), model.model, model.manifest)


def load_forecast_model(directory: Path) -> ForecastModel:
    """Load either kind after the loader's own checksum verification."""
    directory = Path(directory)
    manifest = directory / "manifest.json"
    if not manifest.is_file():
        raise InputError(f"no model manifest at {manifest}")
    import json

    model_class = json.loads(manifest.read_text(encoding="utf-8")).get("model_class")
    if model_class == "LightGBM":
        return load_gbm(directory)
    return fold_model_from_saved(*load_model(directory))
