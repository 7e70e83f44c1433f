"""Per-fold permutation feature importance on the fold's TEST window (never its training rows).

For each feature column the fold's model predicts the same test rows twice: on the true table
and with that column's finite values shuffled among the rows feeding the test windows (rows
stamped ``[test_start - sequence_length bars, test_end)``; NaN stay in place so exactly the same
samples are scored). Importance = score drop: ``logloss_permuted - logloss`` (> 0: the model
uses the feature) and ``accuracy - accuracy_permuted``, averaged over ``n_repeats`` shuffles.
Predictions go through the model's zoo contract (``ZOO[fitted.name].predict_rows``). A model's
own importance (LightGBM gain, the transformer's input-weight norms) is
``ZOO[fitted.name].importance(fitted)``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features.build import family_of_column
from cryptoml_pipeline.modeling.folds import Fold, fold_row_masks
from cryptoml_pipeline.modeling.models import ZOO, Fitted
from cryptoml_pipeline.modeling.predictions import PROB_COLUMNS, label_to_class
from cryptoml_pipeline.settings import ImportanceConfig, PipelineSettings
from cryptoml_pipeline.timing import timeframe_to_timedelta

__all__ = [
    "IMPORTANCE_COLUMNS",
    "permutation_importance",
    "summarise_importance",
]

logger = logging.getLogger(__name__)

IMPORTANCE_COLUMNS = [
    "fold",
    "feature",
    "family",
    "importance_logloss",
    "importance_logloss_std",
    "importance_accuracy",
    "base_logloss",
    "base_accuracy",
    "n_rows",
]


def _scores(preds: pd.DataFrame) -> tuple[float, float]:
    label = preds["label"].to_numpy(dtype=np.float64)
    probs = preds[PROB_COLUMNS].to_numpy(dtype=np.float64)
    cls = label_to_class(label)
    p_true = np.clip(probs[np.arange(len(cls)), cls], 1e-12, 1.0)
    logloss = float(-np.log(p_true).mean())
    accuracy = float((preds["pred_class"].to_numpy() == cls).mean())
    return logloss, accuracy


def _even_sample(rows: np.ndarray, max_rows: int) -> np.ndarray:
    if rows.size <= max_rows:
        return rows
    return rows[np.linspace(0, rows.size - 1, max_rows).round().astype(np.int64)]


def permutation_importance(
    fitted: Fitted,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
    config: ImportanceConfig | None = None,
) -> pd.DataFrame:
    """One row per model feature (:data:`IMPORTANCE_COLUMNS`), sorted by logloss importance.
    ``fitted``: a deployable zoo model's (the walk-forward transformer's ``fold_model``)."""
    config = config or settings.features.importance
    if fold.test_start < fitted.fold.test_start:
        raise InputError(f"fold {fold.key}: test window precedes model {fitted.fold.key}'s")
    zoo = ZOO[str(fitted.name)]
    seq = int(zoo.history_rows(fitted) or settings.model.sequence_length)
    ts = features["timestamp"].astype("datetime64[ns, UTC]")
    span = (
        (ts >= fold.test_start - seq * timeframe_to_timedelta(timeframe)) & (ts < fold.test_end)
    ).to_numpy()
    sub = features[span].reset_index(drop=True)
    sub_labels = labels[span].reset_index(drop=True)
    masks = fold_row_masks(
        sub["timestamp"],
        fold,
        horizon=settings.target.reach,
        timeframe=timeframe,
        embargo_bars=settings.walk_forward.embargo_bars,
    )
    labelled = masks.test & sub_labels["label"].notna().to_numpy()
    eval_rows = _even_sample(np.flatnonzero(labelled), config.max_rows)
    mask = np.zeros(len(sub), dtype=bool)
    mask[eval_rows] = True

    def predict(frame: pd.DataFrame) -> pd.DataFrame:
        out = zoo.predict_rows(fitted, frame, sub_labels, mask, settings, timeframe, tag=fold.key)
        return out[out["label"].notna()]

    base = predict(sub)
    if base.empty:
        raise InputError(f"fold {fold.key}: no labelled test rows with a full input window")
    base_ll, base_acc = _scores(base)
    rng = np.random.default_rng(config.seed)
    records = []
    for col in fitted.feature_cols:
        values = sub[col].to_numpy(dtype=np.float64)
        finite = np.flatnonzero(np.isfinite(values))
        drops_ll, drops_acc = [], []
        for _ in range(config.n_repeats):
            shuffled = values.copy()
            shuffled[finite] = values[rng.permutation(finite)]
            ll, acc = _scores(predict(sub.assign(**{col: shuffled})))
            drops_ll.append(ll - base_ll)
            drops_acc.append(base_acc - acc)
        records.append(
            {
                "fold": fold.key,
                "feature": col,
                "family": family_of_column(col),
                "importance_logloss": float(np.mean(drops_ll)),
                "importance_logloss_std": float(np.std(drops_ll)),
                "importance_accuracy": float(np.mean(drops_acc)),
                "base_logloss": base_ll,
                "base_accuracy": base_acc,
                "n_rows": len(base),
            }
        )
    logger.info("fold %s: permutation importance of %d features", fold.key, len(records))
    out = pd.DataFrame.from_records(records, columns=IMPORTANCE_COLUMNS)
    return out.sort_values("importance_logloss", ascending=False, ignore_index=True)


def summarise_importance(per_fold: pd.DataFrame) -> pd.DataFrame:
    """Mean / std over folds per feature, with the fraction of folds where it helped."""
    if per_fold.empty:
        return pd.DataFrame(
            columns=["feature", "family", "mean_importance", "std_importance", "positive_share"]
        )
    grouped = per_fold.groupby(["feature", "family"], sort=False)["importance_logloss"]
    out = grouped.agg(
        mean_importance="mean",
        std_importance="std",
        positive_share=lambda s: float((s > 0).mean()),
    ).reset_index()
    return out.sort_values("mean_importance", ascending=False, ignore_index=True)
