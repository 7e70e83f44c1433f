"""The spec's ``EnsembleMetaLearner`` as leakage-free stacking inside one walk-forward fold.

The meta-learner must never see a base-model prediction for a row that base model was trained
on. So, inside the fold's training window ``[train_start, test_start)``:

1. :func:`inner_folds` cuts the last ``oof_fraction`` of the window into ``n_splits`` consecutive
   chunks. For chunk ``j`` the base models are trained on ``[train_start, chunk_start_j)`` (with
   their own purged validation slice) and predict the chunk: *out-of-fold* predictions, purged like
   any walk-forward test window.
2. :func:`meta_frame` joins the base models' OOF probabilities with meta-features known at each
   row: a volatility-regime input (a realised-volatility feature column) and each base model's
   *recent accuracy* — the mean hit rate over its last ``accuracy_window`` predictions whose labels
   had matured (label horizon passed) by that row.
3. :func:`train_meta_learner` fits the spec's MLP ``Linear(n_in, 64) -> ReLU -> Dropout(0.2) ->
   Linear(64, 32) -> ReLU -> Linear(32, 5)`` (five class logits instead of the spec's single output,
   to match the five labels) with the shared trainer, early-stopping on the last OOF chunk.
4. On the test window the fold's base models (trained on the whole training window) predict, and
   :func:`predict_meta` combines them the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.datasets import SequenceDataset
from cryptoml_pipeline.modeling.folds import Fold, validation_start
from cryptoml_pipeline.modeling.predictions import (
    PROB_COLUMNS,
    entropy_confidence,
    label_to_class,
)
from cryptoml_pipeline.modeling.scaling import Scaler, fit_scaler
from cryptoml_pipeline.modeling.training import predict_proba, train_model
from cryptoml_pipeline.settings import ModelConfig, TrainingConfig
from cryptoml_pipeline.timing import timeframe_to_timedelta

KEYS = ["timestamp", "symbol"]
# (inner fold) -> OOF predictions (PREDICTION_COLUMNS) of one base model for the fold's test window
BaseRunner = Callable[[Fold], pd.DataFrame]


class MetaLearnerNet(nn.Module):
    """The spec's meta-learner MLP; reads ``[batch, 1, n_in]`` (a length-1 sequence)."""

    def __init__(self, n_inputs: int, n_classes: int = 5) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.meta_learner = nn.Sequential(
            nn.Linear(n_inputs, 64),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(64, 32),
            nn.ReLU(),
            nn.Linear(32, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.meta_learner(x[:, -1, :])


def inner_folds(
    fold: Fold,
    *,
    n_splits: int,
    oof_fraction: float,
    validation_fraction: float,
    timeframe: str,
) -> list[Fold]:
    """``n_splits`` inner folds whose test chunks tile the last ``oof_fraction`` of the training
    window, all ending at ``fold.test_start`` (never inside the fold's test window)."""
    if n_splits < 2:
        raise InputError("stacking needs n_splits >= 2 (one chunk trains the meta-learner's val)")
    if not 0 < oof_fraction < 1:
        raise InputError(f"oof_fraction must be in (0, 1), got {oof_fraction}")
    bar = timeframe_to_timedelta(timeframe)
    span = fold.test_start - fold.train_start
    first = fold.train_start + (span * (1 - oof_fraction)).floor(bar)
    edges = [first + ((fold.test_start - first) * j / n_splits).floor(bar) for j in range(n_splits)]
    edges.append(fold.test_start)
    out = []
    for j in range(n_splits):
        start, end = edges[j], edges[j + 1]
        out.append(
            Fold(
                key=f"{fold.key}/inner{j}",
                index=j,
                train_start=fold.train_start,
                val_start=validation_start(
                    fold.train_start, start, validation_fraction, timeframe=timeframe
                ),
                test_start=start,
                test_end=end,
            )
        )
    return out


def out_of_fold_predictions(
    runners: dict[str, BaseRunner], folds: list[Fold]
) -> dict[str, pd.DataFrame]:
    """Each base model's predictions over all inner test chunks (one trained model per chunk)."""
    out = {}
    for name, run in runners.items():
        parts = [run(f) for f in folds]
        for f, part in zip(folds, parts, strict=True):
            if len(part) and (
                part["timestamp"].min() < f.test_start or part["timestamp"].max() >= f.test_end
            ):
                raise InputError(f"base model {name} predicted outside inner chunk {f.key}")
        out[name] = pd.concat(parts, ignore_index=True)
    return out


def recent_accuracy(
    preds: pd.DataFrame, *, horizon: int, window: int, timeframe: str
) -> np.ndarray:
    """Per row: the hit rate of the last ``window`` earlier predictions of the same symbol whose
    label had matured by the row's decision time (prediction time + horizon bars <= row time).
    NaN until one such prediction exists. ``preds`` must be sorted by symbol, then time."""
    out = np.full(len(preds), np.nan)
    bar = timeframe_to_timedelta(timeframe).value
    ts = pd.DatetimeIndex(preds["timestamp"].astype("datetime64[ns, UTC]")).asi8
    hit = (preds["signal"].to_numpy(dtype=np.float64) == preds["label"].to_numpy()).astype(float)
    known = np.isfinite(preds["label"].to_numpy(dtype=np.float64))
    sym = preds["symbol"].astype(str).to_numpy()
    for symbol in np.unique(sym):
        idx = np.flatnonzero(sym == symbol)
        t, h, k = ts[idx], hit[idx], known[idx]
        csum = np.concatenate([[0.0], np.cumsum(np.where(k, h, 0.0))])
        ccnt = np.concatenate([[0], np.cumsum(k)])
        # predictions j with t_j + horizon * bar <= t_i  (label matured)
        matured = np.searchsorted(t + horizon * bar, t, side="right")
        cnt = ccnt[matured]
        # the last `window` matured labelled predictions
        lo_cnt = np.maximum(cnt - window, 0)
        lo = np.searchsorted(ccnt, lo_cnt, side="left")
        lo = np.minimum(lo, matured)
        n = cnt - ccnt[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[idx] = np.where(n > 0, (csum[matured] - csum[lo]) / np.maximum(n, 1), np.nan)
    return out


def meta_frame(
    base_preds: dict[str, pd.DataFrame],
    features: pd.DataFrame,
    *,
    regime_column: str | None,
    horizon: int,
    accuracy_window: int,
    timeframe: str,
) -> pd.DataFrame:
    """Rows every base model predicted: ``timestamp, symbol, label`` + per model its expected
    return, confidence, five probabilities (when it has them) and recent accuracy + the regime
    input. Column order is deterministic."""
    if not base_preds:
        raise InputError("stacking needs at least one base model")
    merged: pd.DataFrame | None = None
    for name in sorted(base_preds):
        p = base_preds[name].sort_values(["symbol", "timestamp"], kind="stable")
        p = p.reset_index(drop=True)
        part = p[KEYS].copy()
        if np.isfinite(p[PROB_COLUMNS].to_numpy(dtype=np.float64)).all():
            for col in PROB_COLUMNS:
                part[f"{name}__{col}"] = p[col].to_numpy()
        # every model of the prediction schema has an expected return and a confidence
        part[f"{name}__expected_return"] = p["expected_return"].to_numpy(dtype=np.float64)
        part[f"{name}__confidence"] = p["confidence"].to_numpy(dtype=np.float64)
        acc = recent_accuracy(p, horizon=horizon, window=accuracy_window, timeframe=timeframe)
        part[f"{name}__recent_accuracy"] = np.nan_to_num(acc, nan=0.5)
        if merged is None:
            part["label"] = p["label"].to_numpy()
            merged = part
        else:
            merged = merged.merge(part, on=KEYS, how="inner")
    assert merged is not None
    if regime_column is not None:
        if regime_column not in features.columns:
            raise InputError(f"meta-feature column {regime_column!r} is not in the feature table")
        reg = features[[*KEYS, regime_column]].rename(columns={regime_column: "meta__regime"})
        reg = reg.assign(timestamp=reg["timestamp"].astype("datetime64[ns, UTC]"))
        merged = merged.assign(timestamp=merged["timestamp"].astype("datetime64[ns, UTC]"))
        merged = merged.merge(reg, on=KEYS, how="left")
    return merged.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)


def meta_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in (*KEYS, "label")]


@dataclass
class MetaModel:
    net: MetaLearnerNet
    scaler: Scaler
    columns: list[str]
    manifest: dict


def _dataset(frame: pd.DataFrame, cols: list[str], scaler: Scaler, labeled: bool):
    x = scaler.transform(frame[cols].to_numpy(dtype=np.float64))
    finite = np.isfinite(x).all(axis=1)
    if labeled:
        finite &= np.isfinite(frame["label"].to_numpy(dtype=np.float64))
    rows = np.flatnonzero(finite)
    classes = (
        label_to_class(frame["label"].to_numpy(dtype=np.float64)[rows])
        if labeled
        else np.full(len(rows), -1, dtype=np.int64)
    )
    return SequenceDataset(x, rows, classes, 1)


def train_meta_learner(
    oof: pd.DataFrame, val_start: pd.Timestamp, training: TrainingConfig
) -> MetaModel:
    """Fit on OOF rows before ``val_start``, early-stop on OOF rows from it (the last chunk)."""
    cols = meta_columns(oof)
    fit = (oof["timestamp"] < val_start).to_numpy()
    if fit.sum() < 10:
        raise InputError(f"only {int(fit.sum())} out-of-fold rows to fit the meta-learner")
    scaler = fit_scaler(oof.loc[fit, cols].to_numpy(dtype=np.float64))
    train_ds = _dataset(oof[fit], cols, scaler, True)
    val_ds = _dataset(oof[~fit], cols, scaler, True)
    result = train_model(
        train_ds,
        val_ds,
        input_dim=len(cols),
        model_config=ModelConfig(sequence_length=1),
        training_config=training,
        model_factory=lambda dim, k: MetaLearnerNet(dim, k),
    )
    manifest = {
        "model_class": "EnsembleMetaLearner",
        "columns": cols,
        "n_fit_rows": len(train_ds),
        "n_val_rows": len(val_ds),
        "best_epoch": result.best_epoch,
        "val_accuracy": result.history[result.best_epoch - 1].val_accuracy
        if result.best_epoch
        else None,
        "train_seconds": result.train_seconds,
    }
    return MetaModel(net=result.model, scaler=scaler, columns=cols, manifest=manifest)


def predict_meta(model: MetaModel, frame: pd.DataFrame, fold_key: str) -> pd.DataFrame:
    """The meta-learner's predictions (same columns as every model's) for ``meta_frame`` rows."""
    missing = [c for c in model.columns if c not in frame.columns]
    if missing:
        raise InputError(f"meta frame lacks the meta-learner's inputs {missing}")
    ds = _dataset(frame, model.columns, model.scaler, False)
    probs = predict_proba(model.net, ds, batch_size=1024, device="cpu")
    rows = ds.rows
    out = frame.iloc[rows][KEYS].reset_index(drop=True)
    out["fold"] = fold_key
    for j, col in enumerate(PROB_COLUMNS):
        out[col] = probs[:, j]
    out["pred_class"] = probs.argmax(axis=1).astype(np.int64) if len(rows) else []
    out["signal"] = out["pred_class"] - 2
    out["confidence"] = entropy_confidence(probs) if len(rows) else np.zeros(0)
    out["label"] = frame["label"].to_numpy(dtype=np.float64)[rows]
    return out  # raw: the caller conforms it to the prediction schema (needs class returns)
