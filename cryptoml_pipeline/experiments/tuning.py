"""Hyper-parameter search inside one (configuration, split) of a sweep (the grid's ``optuna``).

Nested and leakage-free: every trial fits on the split's purged *fit* rows and is scored by the
rank IC of its expected return against the realised return on the split's *validation* rows;
the test rows are never read. A walk-forward fold validates on its own validation slice; a CPCV
split on its last training group (purged from the fit rows by the target's reach and embargoed).

The study lives in a shared Optuna storage (the instance's PostgreSQL when ``$CRYPTOML_DB_URL``
points there, else ``experiments/<grid>/optuna.db``) under the name
``<grid>.<configuration>.<split>`` with ``load_if_exists``: parallel workers of one split share
it, and a rerun after a kill only runs the trials still missing.

The inner trials choose hyper-parameters on validation rows, not on out-of-sample results, so
the sweep's deflated Sharpe counts configurations, not inner trials (documented in
docs/experiments.md).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import optuna
import pandas as pd

from cryptoml_pipeline.evaluation.forecast_section import scored_predictions
from cryptoml_pipeline.experiments.cpcv import CpcvSplit
from cryptoml_pipeline.experiments.grid import SearchDimension, nest_dotted
from cryptoml_pipeline.experiments.optuna_storage import open_study
from cryptoml_pipeline.modeling.folds import Fold, FoldMasks
from cryptoml_pipeline.modeling.gbm import predict_gbm_rows, train_gbm_fold
from cryptoml_pipeline.settings import PipelineSettings, apply_overrides

logger = logging.getLogger(__name__)


def cpcv_validation_masks(
    split: CpcvSplit, timestamps: pd.Series, train: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(fit, validation) inside a CPCV split's training rows: validation = its last training
    group; fit = the other training rows whose label window ends before that group starts or
    that lie past its embargo."""
    last = max(split.train_groups)
    lo, hi = split.groups[last]
    ts = pd.to_datetime(timestamps, utc=True).astype("datetime64[ns, UTC]")
    reach = split.reach_bars * split.bar
    embargo = split.embargo_bars * split.bar
    in_group = ((ts >= lo) & (ts < hi)).to_numpy()
    clear = ((ts + reach < lo) | (ts >= hi + embargo)).to_numpy()
    return train & ~in_group & clear, train & in_group


def validation_rank_ic(
    settings: PipelineSettings,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    fold: Fold,
    masks: FoldMasks,
    timeframe: str,
) -> float:
    """Rank IC on the validation rows of a model fitted on the fit rows (NaN when undefined)."""
    model = train_gbm_fold(features, labels, fold, settings, timeframe, masks=masks)
    preds = predict_gbm_rows(model, features, labels, masks.val, settings, timeframe, tag="val")
    scored = scored_predictions(preds, labels).dropna(subset=["realised_return"])
    if len(scored) < 3:
        return float("nan")
    return float(scored["expected_return"].rank().corr(scored["realised_return"].rank()))


def tune_split(
    settings: PipelineSettings,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    fold: Fold,
    masks: FoldMasks,
    timeframe: str,
    *,
    space: dict[str, SearchDimension],
    n_trials: int,
    storage: optuna.storages.BaseStorage | str,
    study_name: str,
) -> tuple[PipelineSettings, dict[str, Any]]:
    """The settings with the best trial's hyper-parameters, and the study's record."""
    study = open_study(storage, study_name, direction="maximize", seed=settings.training.seed)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]

    def objective(trial: optuna.Trial) -> float:
        params = {path: dim.suggest(trial) for path, dim in space.items()}
        trial_settings = apply_overrides(settings, nest_dotted(params))
        ic = validation_rank_ic(trial_settings, features, labels, fold, masks, timeframe)
        return ic if np.isfinite(ic) else -1.0

    remaining = max(0, n_trials - len(done))
    if remaining:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study.optimize(objective, n_trials=remaining)
    best = study.best_trial
    logger.info(
        "%s: %d trials (%d resumed), best validation rank IC %.4f with %s",
        study_name,
        len(study.trials),
        len(done),
        best.value,
        best.params,
    )
    record = {
        "study": study_name,
        "n_trials": len(study.trials),
        "resumed_trials": len(done),
        "best_value": float(best.value),
        "best_params": dict(best.params),
    }
    return apply_overrides(settings, nest_dotted(best.params)), record
