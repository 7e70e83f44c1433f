"""Gradient-boosted baseline: LightGBM (CPU) on the same features, labels and folds as the nets.

Published benchmarks often find boosted trees on hand-made features beating deep sequence models,
so every comparison shows this baseline. Design:

* **Inputs**: each row's feature vector plus lagged copies (``gbm.lags``, e.g. 1 and 4 bars back,
  of the same symbol and only when the lagged row is exactly that many bars earlier — otherwise
  NaN, which LightGBM treats as missing). Lags look backwards only, so the design is causal.
  Trees need no scaling, so nothing is fitted outside the training window.
* **Training**: multiclass (5 classes, index = label + 2) on the fold's purged *fit* rows, with the
  configured class weights (or inverse frequency) as sample weights, early stopping on the purged
  *validation* rows; seeded and deterministic (``deterministic=True``, column-wise histograms).
* **Predictions** only for the fold's test window, with the same columns as the sequence model and
  the spec's ``predict_proba`` confidence: the top-two probability margin.
* **Persistence**: LightGBM's own text model format (no pickle) + a JSON manifest carrying its
  sha256, verified on load.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features import feature_columns
from cryptoml_pipeline.modeling.fold_training import (
    PREDICTION_COLUMNS,
    PROB_COLUMNS,
    fold_from_dict,
    fold_masks,
    fold_to_dict,
)
from cryptoml_pipeline.modeling.folds import Fold
from cryptoml_pipeline.modeling.labels import label_to_class
from cryptoml_pipeline.modeling.persistence import (
    ModelChecksumError,
    _atomic_write,
    file_sha256,
    to_jsonable,
)
from cryptoml_pipeline.modeling.training import inverse_frequency_weights
from cryptoml_pipeline.settings import GbmConfig, PipelineSettings
from cryptoml_pipeline.timing import timeframe_to_timedelta
from cryptoml_pipeline.trading.signals import margin_confidence

logger = logging.getLogger(__name__)

N_CLASSES = 5
MODEL_FILE = "gbm.txt"
MANIFEST_FILE = "manifest.json"


@dataclass
class GbmFoldModel:
    fold: Fold
    booster: lgb.Booster
    feature_cols: list[str]
    manifest: dict


def design_matrix(
    features: pd.DataFrame, feature_cols: list[str], lags: tuple[int, ...], timeframe: str
) -> tuple[np.ndarray, list[str]]:
    """``[n, F * (1 + len(lags))]`` float64: the features, then each lag's copy (NaN if the row
    ``k`` places back is another symbol or not exactly ``k`` bars earlier)."""
    base = features[feature_cols].to_numpy(dtype=np.float64)
    names = list(feature_cols)
    blocks = [base]
    if lags:
        ts = pd.DatetimeIndex(features["timestamp"].astype("datetime64[ns, UTC]")).asi8
        sym = features["symbol"].astype(str).to_numpy()
        bar = timeframe_to_timedelta(timeframe).value
        n = len(features)
        for k in lags:
            if k <= 0:
                raise InputError(f"gbm.lags must be positive, got {k}")
            lagged = np.full_like(base, np.nan)
            if k < n:
                ok = (sym[k:] == sym[:-k]) & (ts[k:] - ts[:-k] == k * bar)
                lagged[k:][ok] = base[:-k][ok]
            blocks.append(lagged)
            names += [f"{c}__lag{k}" for c in feature_cols]
    return np.hstack(blocks), names


def _params(cfg: GbmConfig, seed: int) -> dict:
    return {
        "objective": "multiclass",
        "num_class": N_CLASSES,
        "learning_rate": cfg.learning_rate,
        "num_leaves": cfg.num_leaves,
        "min_child_samples": cfg.min_child_samples,
        "feature_fraction": cfg.feature_fraction,
        "bagging_fraction": cfg.bagging_fraction,
        "bagging_freq": 1 if cfg.bagging_fraction < 1 else 0,
        "lambda_l2": cfg.lambda_l2,
        "num_threads": cfg.num_threads,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "verbosity": -1,
    }


def train_gbm_fold(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
) -> GbmFoldModel:
    """Fit LightGBM on the fold's purged fit rows, early-stopping on its validation rows."""
    cfg = settings.gbm
    feature_cols = feature_columns(features)
    if not feature_cols:
        raise InputError("the feature table has no feature columns")
    X, names = design_matrix(features, feature_cols, cfg.lags, timeframe)
    label = labels["label"].to_numpy(dtype=np.float64)
    usable = np.isfinite(label) & np.isfinite(X[:, : len(feature_cols)]).all(axis=1)
    masks = fold_masks(features, fold, settings, timeframe)
    fit, val = masks.fit & usable, masks.val & usable
    if fit.sum() < 2 * cfg.min_child_samples:
        raise InputError(
            f"fold {fold.key}: {int(fit.sum())} usable fit rows, too few for LightGBM "
            f"(min_child_samples={cfg.min_child_samples})"
        )
    y_fit = label_to_class(label[fit])
    weights = (
        list(settings.training.class_weights)
        if settings.training.class_weights is not None
        else inverse_frequency_weights(y_fit)
    )
    w = np.asarray(weights)
    train_set = lgb.Dataset(X[fit], y_fit, weight=w[y_fit], feature_name=names, free_raw_data=True)
    valid_sets, callbacks = [], []
    if val.any():
        y_val = label_to_class(label[val])
        valid_sets = [lgb.Dataset(X[val], y_val, weight=w[y_val], reference=train_set)]
        callbacks = [lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)]
    start = time.perf_counter()
    booster = lgb.train(
        _params(cfg, settings.training.seed),
        train_set,
        num_boost_round=cfg.n_estimators,
        valid_sets=valid_sets,
        callbacks=callbacks,
    )
    seconds = time.perf_counter() - start
    best_iter = int(booster.best_iteration or booster.current_iteration())
    val_acc = None
    if val.any():
        p_val = booster.predict(X[val], num_iteration=best_iter)
        val_acc = float((p_val.argmax(axis=1) == label_to_class(label[val])).mean())
    logger.info(
        "fold %s gbm: %d fit / %d val rows, %d trees (best %d), val acc %s, %.1fs",
        fold.key,
        int(fit.sum()),
        int(val.sum()),
        booster.current_iteration(),
        best_iter,
        f"{val_acc:.3f}" if val_acc is not None else "n/a",
        seconds,
    )
    manifest = to_jsonable(
        {
            "model_class": "LightGBM",
            "lightgbm_version": lgb.__version__,
            "fold": fold_to_dict(fold),
            "timeframe": timeframe,
            "feature_cols": feature_cols,
            "design_columns": names,
            "gbm_config": cfg.model_dump(mode="json"),
            "best_iteration": best_iter,
            "n_train_samples": int(fit.sum()),
            "n_val_samples": int(val.sum()),
            "val_accuracy": val_acc,
            "class_weights": weights,
            "train_seconds": seconds,
            "device": "cpu",
        }
    )
    return GbmFoldModel(fold=fold, booster=booster, feature_cols=feature_cols, manifest=manifest)


def predict_gbm_fold(
    model: GbmFoldModel,
    features: pd.DataFrame,
    labels: pd.DataFrame | None,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
) -> pd.DataFrame:
    """Predictions for the usable rows of ``fold``'s test window (same columns as the nets').

    Raises :class:`InputError` if the test window starts before the model's own (leakage).
    """
    if fold.test_start < model.fold.test_start:
        raise InputError(
            f"fold {fold.key}: test window starts {fold.test_start}, before the end of the "
            f"training window of gbm model {model.fold.key} ({model.fold.test_start})"
        )
    missing = [c for c in model.feature_cols if c not in features.columns]
    if missing:
        raise InputError(f"fold {fold.key}: feature table lacks the gbm model's features {missing}")
    lags = tuple(model.manifest["gbm_config"]["lags"])
    X, _ = design_matrix(features, model.feature_cols, lags, timeframe)
    masks = fold_masks(features, fold, settings, timeframe)
    rows = np.flatnonzero(masks.test & np.isfinite(X[:, : len(model.feature_cols)]).all(axis=1))
    probs = (
        model.booster.predict(X[rows], num_iteration=int(model.manifest["best_iteration"]))
        if len(rows)
        else np.zeros((0, N_CLASSES))
    )
    probs = np.asarray(probs, dtype=np.float64).reshape(len(rows), N_CLASSES)
    pred_class = probs.argmax(axis=1).astype(np.int64)
    out = pd.DataFrame(
        {
            "timestamp": features["timestamp"].iloc[rows].astype("datetime64[ns, UTC]").array,
            "symbol": features["symbol"].iloc[rows].astype(str).to_numpy(),
            "fold": np.full(len(rows), fold.key, dtype=object),
        }
    )
    for j, col in enumerate(PROB_COLUMNS):
        out[col] = probs[:, j]
    out["pred_class"] = pred_class
    out["signal"] = pred_class - 2
    out["confidence"] = margin_confidence(probs) if len(rows) else np.zeros(0)
    out["label"] = (
        labels["label"].to_numpy(dtype=np.float64)[rows]
        if labels is not None
        else np.full(len(rows), np.nan)
    )
    return out[PREDICTION_COLUMNS]


def save_gbm(directory: Path, model: GbmFoldModel) -> Path:
    """``gbm.txt`` (LightGBM text format) + ``manifest.json`` with its sha256; atomic writes."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = model.booster.model_to_string(num_iteration=int(model.manifest["best_iteration"]))
    path = directory / MODEL_FILE
    _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    manifest = {**model.manifest, "model_file": MODEL_FILE, "model_sha256": file_sha256(path)}
    body = json.dumps(to_jsonable(manifest), indent=2, sort_keys=True, allow_nan=False)
    _atomic_write(directory / MANIFEST_FILE, lambda fh: fh.write(body.encode("utf-8")))
    return directory


def load_gbm(directory: Path) -> GbmFoldModel:
    """Load after verifying the model file's sha256 against the manifest."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise InputError(f"no gbm manifest at {manifest_path}")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("model_class") != "LightGBM":
        raise InputError(f"{manifest_path}: not a LightGBM model ({manifest.get('model_class')})")
    path = directory / str(manifest.get("model_file", MODEL_FILE))
    if not path.is_file():
        raise InputError(f"gbm model file missing: {path}")
    actual, expected = file_sha256(path), manifest.get("model_sha256")
    if actual != expected:
        raise ModelChecksumError(
            f"checksum mismatch for {path}: sha256 {actual} != manifest {expected}"
        )
    booster = lgb.Booster(model_str=path.read_text(encoding="utf-8"))
    return GbmFoldModel(
        fold=fold_from_dict(manifest["fold"]),
        booster=booster,
        feature_cols=list(manifest["feature_cols"]),
        manifest=manifest,
    )
