"""Hyperparameter tuning (spec phase 4) with Optuna, nested inside one fold's training window.

Every trial fits on the fold's purged *fit* rows and is scored on its purged *validation* slice
(``[val_start, test_start)``); the test window is never read — :func:`tune_gbm_fold` masks it out
before the study starts, so even a bug in a trial could not see it. The search is seeded (TPE
sampler) and bounded by ``n_trials``; the number of trials run is returned so that the deflated
Sharpe ratio downstream can account for every configuration tried.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import optuna
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.fold_training import fold_masks
from cryptoml_pipeline.modeling.folds import Fold
from cryptoml_pipeline.modeling.gbm import design_matrix, gbm_forecast, train_gbm_fold
from cryptoml_pipeline.modeling.labels import scoring_returns
from cryptoml_pipeline.settings import PipelineSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuningResult:
    best_params: dict[str, float | int]
    best_value: float  # minus the validation rank IC of the best trial
    n_trials: int  # trials actually run (for the deflated Sharpe ratio)
    trials: list[dict]  # number, params, value, state


def _suggest(trial: optuna.Trial, max_child: int) -> dict[str, float | int]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, max_child, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


def _val_score(model, features, labels, fold, settings, timeframe) -> float:
    """Minus the rank IC of the model's expected return against the realised return on the
    fold's purged validation rows (labels end before the test window): every target kind is
    tuned for the same thing, forecast skill."""
    masks = fold_masks(features, fold, settings, timeframe)
    lags = tuple(model.manifest["gbm_config"]["lags"])
    X, _ = design_matrix(features, model.feature_cols, lags, timeframe)
    realised = scoring_returns(labels)
    rows = np.flatnonzero(
        masks.val & np.isfinite(realised) & np.isfinite(X[:, : len(model.feature_cols)]).all(axis=1)
    )
    if len(rows) < 3:
        return math.inf
    expected, _, _ = gbm_forecast(model, features, rows, X)
    ic = pd.Series(expected).rank().corr(pd.Series(realised[rows]).rank())
    return float(-ic) if np.isfinite(ic) else math.inf


def tune_gbm_fold(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
    *,
    n_trials: int,
    seed: int | None = None,
) -> TuningResult:
    """Search LightGBM hyperparameters on ``fold``'s purged validation slice; the test window
    is removed before the study starts."""
    if n_trials < 1:
        raise InputError(f"n_trials must be >= 1, got {n_trials}")
    # drop every row at or after the test start: the study cannot read the test window
    keep = (features["timestamp"] < fold.test_start).to_numpy()
    feats = features[keep].reset_index(drop=True)
    labs = labels[keep].reset_index(drop=True)
    fit_rows = fold_masks(feats, fold, settings, timeframe).fit & np.isfinite(
        labs["target"].to_numpy(dtype=np.float64)
    )
    # LightGBM needs >= 2 * min_child_samples fit rows: keep every suggestion trainable
    max_child = int(max(5, min(400, fit_rows.sum() // 4)))

    def objective(trial: optuna.Trial) -> float:
        params = _suggest(trial, max_child)
        cfg = settings.gbm.model_copy(update=params)
        trial_settings = settings.model_copy(update={"gbm": cfg})
        model = train_gbm_fold(feats, labs, fold, trial_settings, timeframe)
        return _val_score(model, feats, labs, fold, trial_settings, timeframe)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=settings.training.seed if seed is None else seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    trials = [
        {"number": t.number, "params": t.params, "value": t.value, "state": t.state.name}
        for t in study.trials
    ]
    logger.info(
        "fold %s: %d trials, best validation rank IC %.4f with %s",
        fold.key,
        len(study.trials),
        -study.best_value,
        study.best_params,
    )
    return TuningResult(
        best_params=dict(study.best_params),
        best_value=float(study.best_value),
        n_trials=len(study.trials),
        trials=trials,
    )
