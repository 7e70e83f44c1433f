"""One walk-forward fold end to end: purged masks -> scaler -> datasets -> train -> predict.

The glue the Dagster assets call (``fold_model`` and ``oos_predictions``). The scaler is fitted on
the fold's *fit* rows only; early stopping uses the purged validation slice; predictions are made
only for rows of the fold's test window (their input windows may reach back before
``test_start``, which is causal).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features import model_feature_columns
from cryptoml_pipeline.modeling.datasets import build_dataset, check_aligned
from cryptoml_pipeline.modeling.folds import Fold, FoldMasks, fold_row_masks, strided
from cryptoml_pipeline.modeling.labels import scoring_returns
from cryptoml_pipeline.modeling.persistence import to_jsonable
from cryptoml_pipeline.modeling.predictions import (
    LABEL_VALUES,
    N_CLASSES,
    assemble,
    class_mean_returns,
    entropy_confidence,
    expected_from_probs,
    label_to_class,
)
from cryptoml_pipeline.modeling.scaling import Scaler, fit_scaler
from cryptoml_pipeline.modeling.training import (
    RegressionTarget,
    predict_outputs,
    predict_proba,
    resolve_device,
    train_model,
)
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import to_utc

logger = logging.getLogger(__name__)


def fold_class_returns(labels: pd.DataFrame, rows: np.ndarray) -> list[float]:
    """Class-conditional mean realised return (classes = label + 2) over training ``rows`` —
    how every classifier turns probabilities into an expected return."""
    label = labels["label"].to_numpy(dtype=np.float64)[rows]
    realised = scoring_returns(labels)[rows]
    ok = np.isfinite(label)
    return class_mean_returns(label_to_class(label[ok]), realised[ok], N_CLASSES).tolist()


@dataclass
class FoldModel:
    fold: Fold
    model: nn.Module
    scaler: Scaler
    feature_cols: list[str]
    manifest: (
        dict  # JSON-able: fold, data range, features, scaler, configs, metrics, device, seconds
    )


def fold_to_dict(fold: Fold) -> dict[str, object]:
    return {
        "key": fold.key,
        "index": fold.index,
        "train_start": fold.train_start.isoformat(),
        "val_start": fold.val_start.isoformat(),
        "test_start": fold.test_start.isoformat(),
        "test_end": fold.test_end.isoformat(),
    }


def fold_from_dict(data: dict) -> Fold:
    return Fold(
        key=str(data["key"]),
        index=int(data["index"]),
        train_start=to_utc(data["train_start"]),
        val_start=to_utc(data["val_start"]),
        test_start=to_utc(data["test_start"]),
        test_end=to_utc(data["test_end"]),
    )


def _iso_range(timestamps: pd.Series) -> dict[str, str | None]:
    if timestamps.empty:
        return {"first": None, "last": None}
    return {"first": timestamps.min().isoformat(), "last": timestamps.max().isoformat()}


def _class_distribution(counts: np.ndarray) -> dict[str, int]:
    return {str(label): int(c) for label, c in zip(LABEL_VALUES, counts, strict=True)}


def fold_masks(
    features: pd.DataFrame, fold: Fold, settings: PipelineSettings, timeframe: str
) -> FoldMasks:
    """The fold's purged fit / validation / test row masks with the settings' horizon and
    embargo (every model of the zoo uses exactly these)."""
    return fold_row_masks(
        features["timestamp"],
        fold,
        horizon=settings.target.reach,
        timeframe=timeframe,
        embargo_bars=settings.walk_forward.embargo_bars,
    )


def regression_target(
    settings: PipelineSettings, labels: pd.DataFrame
) -> tuple[RegressionTarget | None, np.ndarray | None]:
    """With ``model.head`` "regression": the target (the forward return in units of the strong
    threshold, as the LSTM-CNN's regression head) and its aligned values; else ``(None, None)``."""
    if settings.model.head != "regression":
        return None, None
    strong = settings.labels.strong_threshold
    returns = labels["forward_return"].to_numpy(dtype=np.float64) / strong
    return RegressionTarget(settings.labels.weak_threshold, strong), returns


def train_fold(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
    *,
    checkpoint_path: Path | str | None = None,
) -> FoldModel:
    """Train one fold's model on its purged fit slice, early-stopping on its validation slice.

    With ``checkpoint_path`` an interrupted training resumes from its last finished epoch (a
    checkpoint of another run — new data or settings — is replaced, never resumed). Samples end
    at one row every ``training.row_stride`` bars per symbol (their input windows stay whole).
    """
    masks = strided(
        fold_masks(features, fold, settings, timeframe),
        features["timestamp"],
        timeframe,
        settings.training.row_stride,
    )
    feature_cols = model_feature_columns(features, settings.features)
    if not feature_cols:
        raise InputError("the feature table has no feature columns")
    if not masks.fit.any():
        raise InputError(
            f"fold {fold.key}: no feature rows in its fit window "
            f"[{fold.train_start}, {fold.val_start})"
        )
    scaler = fit_scaler(features.loc[masks.fit, feature_cols].to_numpy(dtype=np.float64))
    seq_len = settings.model.sequence_length
    regression, returns = regression_target(settings, labels)
    train_ds, val_ds = (
        build_dataset(
            features,
            labels,
            feature_cols,
            mask,
            scaler,
            seq_len,
            timeframe=timeframe,
            returns=returns,
        )
        for mask in (masks.fit, masks.val)
    )
    if len(train_ds) == 0:
        raise InputError(
            f"fold {fold.key}: no valid labeled sequences of {seq_len} bars in its fit window"
        )
    logger.info(
        "fold %s: %d fit / %d val samples, %d features",
        fold.key,
        len(train_ds),
        len(val_ds),
        len(feature_cols),
    )
    result = train_model(
        train_ds,
        val_ds,
        input_dim=len(feature_cols),
        model_config=settings.model,
        training_config=settings.training,
        checkpoint_path=checkpoint_path,
        restart_on_mismatch=True,
        regression=regression,
    )
    best = result.history[result.best_epoch - 1] if result.best_epoch else None
    ts = features["timestamp"]
    manifest = {
        "fold": fold_to_dict(fold),
        "timeframe": timeframe,
        "symbols": sorted(features["symbol"].astype(str).unique().tolist()),
        "data_range": _iso_range(ts),
        "train_samples_range": _iso_range(ts.iloc[train_ds.rows]),
        "val_samples_range": _iso_range(ts.iloc[val_ds.rows]),
        "feature_cols": feature_cols,
        "scaler": scaler.to_dict(),
        "input_dim": len(feature_cols),
        "n_classes": 1 if regression else 5,
        "head": settings.model.head,
        "regression_thresholds": {
            "weak": settings.labels.weak_threshold,
            "strong": settings.labels.strong_threshold,
        }
        if regression
        else None,
        "model_config": settings.model.model_dump(mode="json"),
        "training_config": settings.training.model_dump(mode="json"),
        "label_config": settings.labels.model_dump(mode="json"),
        "embargo_bars": settings.walk_forward.embargo_bars,
        "history": [asdict(h) for h in result.history],
        "best_epoch": result.best_epoch,
        "early_stopping_monitor": result.monitor,
        "val_loss": best.val_loss if best else None,
        "val_accuracy": best.val_accuracy if best else None,
        "n_train_samples": len(train_ds),
        "n_val_samples": len(val_ds),
        "class_distribution": {
            "train": _class_distribution(train_ds.class_counts()),
            "val": _class_distribution(val_ds.class_counts()),
        },
        "class_weights": result.class_weights,
        "class_returns": fold_class_returns(labels, train_ds.rows),
        "device": result.device,
        "batch_size": result.batch_size,
        "train_seconds": result.train_seconds,
        "torch_version": torch.__version__,
    }
    return FoldModel(
        fold=fold,
        model=result.model,
        scaler=scaler,
        feature_cols=feature_cols,
        manifest=to_jsonable(manifest),
    )


def fold_model_from_saved(model: nn.Module, manifest: dict) -> FoldModel:
    """Rebuild a :class:`FoldModel` from ``persistence.load_model`` output."""
    for key in ("fold", "scaler", "feature_cols"):
        if key not in manifest:
            raise InputError(f"model manifest lacks {key!r}; it was not saved by train_fold")
    return FoldModel(
        fold=fold_from_dict(manifest["fold"]),
        model=model,
        scaler=Scaler.from_dict(manifest["scaler"]),
        feature_cols=list(manifest["feature_cols"]),
        manifest=manifest,
    )


def predict_fold(
    fold_model: FoldModel,
    features: pd.DataFrame,
    labels: pd.DataFrame | None,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
) -> pd.DataFrame:
    """Out-of-sample predictions for the rows of ``fold``'s test window ``[test_start, test_end)``.

    Rows without a complete, finite, gap-free input window are left out. Raises
    :class:`InputError` if the test window starts before the model's own (leakage).
    """
    if fold.test_start < fold_model.fold.test_start:
        raise InputError(
            f"fold {fold.key}: test window starts {fold.test_start}, before the end of the "
            f"training window of model {fold_model.fold.key} ({fold_model.fold.test_start})"
        )
    masks = fold_masks(features, fold, settings, timeframe)
    out = predict_rows(fold_model, features, labels, masks.test, settings, timeframe, tag=fold.key)
    logger.info(
        "fold %s: %d predictions in [%s, %s) (%d test rows)",
        fold.key,
        len(out),
        fold.test_start,
        fold.test_end,
        int(masks.test.sum()),
    )
    return out


def predict_rows(
    fold_model: FoldModel,
    features: pd.DataFrame,
    labels: pd.DataFrame | None,
    row_mask: np.ndarray,
    settings: PipelineSettings,
    timeframe: str,
    *,
    tag: str,
) -> pd.DataFrame:
    """Predictions for the rows selected by ``row_mask`` — inference with NO leakage guard.

    Anything that is evaluated must go through :func:`predict_fold`; this serves live signals
    and sanity probes. Same columns as :func:`predict_fold`, with ``fold`` = ``tag``.
    """
    missing = [c for c in fold_model.feature_cols if c not in features.columns]
    if missing:
        raise InputError(f"{tag}: feature table lacks the model's features {missing}")
    if labels is not None:
        check_aligned(features, labels)
    model_cfg = getattr(fold_model.model, "config", settings.model)
    ds = build_dataset(
        features,
        None,
        fold_model.feature_cols,
        np.asarray(row_mask, dtype=bool),
        fold_model.scaler,
        model_cfg.sequence_length,
        timeframe=timeframe,
    )
    device = resolve_device(settings.training.device)
    rows = ds.rows
    if fold_model.manifest.get("head") == "regression":
        # one output: the forward-return estimate in units of the strong threshold; confidence
        # = |estimate| / strong threshold (capped at 1); no class probabilities
        strong = float(fold_model.manifest["regression_thresholds"]["strong"])
        estimate = predict_outputs(fold_model.model, ds, device) * strong
        return assemble(
            timestamps=features["timestamp"].iloc[rows],
            symbols=features["symbol"].iloc[rows].astype(str).to_numpy(),
            fold=tag,
            expected_return=np.clip(estimate, -0.99, None),
            confidence=np.clip(np.abs(estimate) / strong, 0.0, 1.0),
            labels=settings.labels,
            label=labels["label"].to_numpy(dtype=np.float64)[rows] if labels is not None else None,
        )
    probs = predict_proba(
        fold_model.model, ds, batch_size=max(settings.training.batch_size, 512), device=device
    )
    class_returns = fold_model.manifest.get("class_returns")
    if class_returns is None:
        raise InputError(f"{tag}: the model manifest has no class_returns (retrain the model)")
    return assemble(
        timestamps=features["timestamp"].iloc[rows],
        symbols=features["symbol"].iloc[rows].astype(str).to_numpy(),
        fold=tag,
        expected_return=expected_from_probs(probs, np.asarray(class_returns))
        if len(rows)
        else np.zeros(0),
        confidence=entropy_confidence(probs) if len(rows) else np.zeros(0),
        labels=settings.labels,
        probs=probs,
        label=labels["label"].to_numpy(dtype=np.float64)[rows] if labels is not None else None,
    )
