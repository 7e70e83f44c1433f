"""The model zoo per walk-forward fold: train, predict the fold's test window, save, describe.

Every runner returns a :class:`ZooResult`: test-window predictions with the common prediction
columns (empty, with a ``reason``, when the model cannot run on this fold) and a JSON-able model
card (config, data range, metrics, train time, device, artifact path and checksum). The Dagster
assets in ``defs/assets/zoo.py`` are thin wrappers around these functions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features import feature_columns
from cryptoml_pipeline.modeling.ensemble import meta_frame, predict_meta, train_meta_learner
from cryptoml_pipeline.modeling.fold_training import (
    PROB_COLUMNS,
    fold_class_returns,
    fold_masks,
    fold_to_dict,
)
from cryptoml_pipeline.modeling.folds import Fold
from cryptoml_pipeline.modeling.gbm import predict_gbm_fold, save_gbm, train_gbm_fold
from cryptoml_pipeline.modeling.multiscale import (
    SCALE_FEATURES,
    build_multiscale_dataset,
    fit_scale_scalers,
    scale_bar_features,
)
from cryptoml_pipeline.modeling.nets.lstm_cnn import MultiScaleLSTMCNN, regression_to_signal
from cryptoml_pipeline.modeling.persistence import file_sha256, save_model, to_jsonable
from cryptoml_pipeline.modeling.predictions import conform
from cryptoml_pipeline.modeling.predictions import empty_predictions as _empty_schema
from cryptoml_pipeline.modeling.scaling import fit_scaler
from cryptoml_pipeline.modeling.training import (
    RegressionTarget,
    predict_proba,
    resolve_device,
    train_model,
)
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import timeframe_to_timedelta
from cryptoml_pipeline.trading.signals import entropy_confidence

logger = logging.getLogger(__name__)


@dataclass
class ZooResult:
    predictions: pd.DataFrame
    card: dict[str, Any]


def empty_predictions() -> pd.DataFrame:
    return _empty_schema()


def unavailable(model: str, fold: Fold, reason: str) -> ZooResult:
    logger.warning("%s fold %s unavailable: %s", model, fold.key, reason)
    return ZooResult(
        empty_predictions(),
        {"model": model, "fold": fold_to_dict(fold), "status": "unavailable", "reason": reason},
    )


def classification_metrics(preds: pd.DataFrame) -> dict[str, float | int | None]:
    """Accuracy, macro-F1 (over the five classes present in labels or predictions) and log-loss
    (None when the model gives no probabilities) on rows with a known label."""
    known = preds.dropna(subset=["label"])
    if known.empty:
        return {"n": 0, "accuracy": None, "macro_f1": None, "log_loss": None}
    y = known["label"].to_numpy(dtype=np.float64).astype(int) + 2
    p = known["pred_class"].to_numpy(dtype=np.int64)
    f1s = []
    for c in np.union1d(y, p):
        tp = int(((p == c) & (y == c)).sum())
        fp = int(((p == c) & (y != c)).sum())
        fn = int(((p != c) & (y == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    probs = known[PROB_COLUMNS].to_numpy(dtype=np.float64)
    log_loss = None
    if np.isfinite(probs).all():
        log_loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))
    return {
        "n": len(known),
        "accuracy": float((p == y).mean()),
        "macro_f1": float(np.mean(f1s)),
        "log_loss": log_loss,
    }


def _card(model: str, fold: Fold, preds: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    return to_jsonable(
        {
            "model": model,
            "fold": fold_to_dict(fold),
            "status": "trained",
            "test_metrics": classification_metrics(preds),
            **extra,
        }
    )


# --- LightGBM -----------------------------------------------------------------------------------


def run_gbm(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
    out_dir: Path,
    *,
    traded: tuple[str, ...] | list[str] | None = None,
) -> ZooResult:
    """LightGBM pooled over every universe member's training rows (optionally tuned with
    Optuna inside the fold's training window); predictions for the ``traded`` symbols."""
    tuning = None
    if settings.tuning.n_trials > 0:
        from cryptoml_pipeline.modeling.tuning import tune_gbm_fold

        tuning = tune_gbm_fold(
            features, labels, fold, settings, timeframe, n_trials=settings.tuning.n_trials
        )
        settings = settings.model_copy(
            update={"gbm": settings.gbm.model_copy(update=tuning.best_params)}
        )
    model = train_gbm_fold(features, labels, fold, settings, timeframe)
    preds = predict_gbm_fold(model, features, labels, fold, settings, timeframe, traded=traded)
    save_gbm(out_dir, model)
    m = model.manifest
    card = _card(
        "gbm",
        fold,
        preds,
        config=settings.gbm.model_dump(mode="json"),
        data_range={"train_start": fold.train_start, "test_end": fold.test_end},
        n_train_samples=m["n_train_samples"],
        n_val_samples=m["n_val_samples"],
        target=settings.target.model_dump(mode="json"),
        train_symbols=m["train_symbols"],
        val_rank_ic=m["val_rank_ic"],
        best_iteration=m["best_iteration"],
        train_seconds=m["train_seconds"],
        device="cpu",
        n_trials=tuning.n_trials if tuning else 1,
        tuning=asdict(tuning) if tuning else None,
        artifact=str(out_dir),
        artifact_sha256=file_sha256(out_dir / "gbm.txt"),
    )
    return ZooResult(preds, card)


# --- Multi-scale LSTM-CNN -------------------------------------------------------------------------


def run_lstm_cnn(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
    scale_candles: dict[str, pd.DataFrame],
    out_dir: Path,
) -> ZooResult:
    """The multi-timeframe network on the span where every configured timeframe exists."""
    cfg = settings.lstm_cnn
    missing = [tf for tf in cfg.timeframes if tf not in scale_candles or scale_candles[tf].empty]
    if missing:
        return unavailable("lstm_cnn", fold, f"no candles for timeframe(s) {missing} in the store")
    timeframes = {tf: tf for tf in cfg.timeframes}
    scales = {tf: scale_bar_features(scale_candles[tf], tf) for tf in cfg.timeframes}
    try:
        scalers = fit_scale_scalers(scales, timeframes, fold.val_start)
    except InputError as exc:
        return unavailable("lstm_cnn", fold, str(exc))
    masks = fold_masks(features, fold, settings, timeframe)
    decisions = features[["timestamp", "symbol"]].reset_index(drop=True)
    label = labels["label"].to_numpy(dtype=np.float64)
    args = (timeframe, scales, timeframes, scalers, cfg.sequence_length)
    weak, strong = settings.labels.weak_threshold, settings.labels.strong_threshold
    regression = RegressionTarget(weak, strong) if cfg.head == "regression" else None
    # regression head: forward returns in units of the strong threshold
    returns = labels["forward_return"].to_numpy(dtype=np.float64) / strong if regression else None
    train_ds = build_multiscale_dataset(decisions, masks.fit, label, *args, returns=returns)
    val_ds = build_multiscale_dataset(decisions, masks.val, label, *args, returns=returns)
    if len(train_ds) < cfg.min_train_samples:
        first = {tf: str(scale_candles[tf]["timestamp"].min()) for tf in cfg.timeframes}
        return unavailable(
            "lstm_cnn",
            fold,
            f"{len(train_ds)} training samples where all of {list(cfg.timeframes)} exist "
            f"(< {cfg.min_train_samples}); first bars {first}",
        )
    result = train_model(
        train_ds,
        val_ds,
        input_dim=len(SCALE_FEATURES),
        model_config=settings.model.model_copy(update={"sequence_length": cfg.sequence_length}),
        training_config=settings.training,
        model_factory=lambda dim, k: MultiScaleLSTMCNN(
            dim,
            len(cfg.timeframes),
            conv_channels=cfg.conv_channels,
            lstm_hidden=cfg.lstm_hidden,
            lstm_layers=cfg.lstm_layers,
            attention_heads=cfg.attention_heads,
            head=cfg.head,
            n_classes=k,
        ),
        regression=regression,
    )
    test_ds = build_multiscale_dataset(decisions, masks.test, None, *args)
    device = resolve_device(settings.training.device)
    rows = test_ds.rows
    if regression is not None:
        # one output: the forward-return estimate -> signal by the label thresholds; no class
        # probabilities; confidence = |estimate| / strong threshold, capped at 1
        estimate = predict_outputs(result.model, test_ds, device) * strong
        signal = regression_to_signal(estimate, weak, strong)
        probs = np.full((len(rows), len(PROB_COLUMNS)), np.nan)
        pred_class = (signal + 2).astype(np.int64)
        confidence = np.clip(np.abs(estimate) / strong, 0.0, 1.0)
    else:
        probs = predict_proba(result.model, test_ds, batch_size=512, device=device)
        pred_class = probs.argmax(axis=1).astype(np.int64) if len(rows) else np.zeros(0, int)
        confidence = entropy_confidence(probs) if len(rows) else np.zeros(0)
    preds = pd.DataFrame(
        {
            "timestamp": features["timestamp"].iloc[rows].astype("datetime64[ns, UTC]").array,
            "symbol": features["symbol"].iloc[rows].astype(str).to_numpy(),
            "fold": fold.key,
        }
    )
    for j, col in enumerate(PROB_COLUMNS):
        preds[col] = probs[:, j] if len(rows) else np.zeros(0)
    preds["pred_class"] = pred_class
    preds["confidence"] = confidence
    preds["label"] = label[rows]
    if regression is not None:
        preds["expected_return"] = np.clip(estimate, -0.99, None) if len(rows) else np.zeros(0)
    preds = conform(
        preds, labels=settings.labels, class_returns=fold_class_returns(labels, train_ds.rows)
    )
    manifest = {
        "model_class": "MultiScaleLSTMCNN",
        "timeframes": list(cfg.timeframes),
        "config": cfg.model_dump(mode="json"),
        "scalers": {tf: s.to_dict() for tf, s in scalers.items()},
        "fold": fold_to_dict(fold),
    }
    save_model(out_dir, result.model, manifest)
    first_sample = features["timestamp"].iloc[train_ds.rows].min()
    card = _card(
        "lstm_cnn",
        fold,
        preds,
        config=cfg.model_dump(mode="json"),
        data_range={"first_training_sample": first_sample, "test_end": fold.test_end},
        span_note=(
            "trained only where every timeframe exists; its first sample is "
            f"{first_sample}, so this fold's training window is shorter than the 1h models'"
        ),
        n_train_samples=len(train_ds),
        n_val_samples=len(val_ds),
        best_epoch=result.best_epoch,
        history=[asdict(h) for h in result.history],
        train_seconds=result.train_seconds,
        device=result.device,
        n_trials=1,
        artifact=str(out_dir),
        artifact_sha256=file_sha256(out_dir / "model.pt"),
        head=cfg.head,
        regression_thresholds={"weak": weak, "strong": strong} if regression else None,
    )
    return ZooResult(preds, card)


def predict_outputs(model: torch.nn.Module, ds, device: torch.device) -> np.ndarray:
    """Raw network outputs (the regression head's estimate), in dataset order."""
    model = model.to(device).eval()
    out = []
    with torch.inference_mode():
        for x, _ in DataLoader(ds, batch_size=512, shuffle=False):
            out.append(model(x.to(device)).float().cpu().numpy().reshape(-1))
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


# --- PPO ------------------------------------------------------------------------------------------


def run_ppo(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    fold: Fold,
    settings: PipelineSettings,
    timeframe: str,
    out_dir: Path,
) -> ZooResult:
    """PPO trained on the fold's fit window (every symbol in turn), rolled out on its test window.
    The agent's action becomes the prediction's signal (-2 short, 0 flat, 2 long; confidence 1;
    no class probabilities)."""
    import gymnasium as gym

    from cryptoml_pipeline.modeling.rl import (
        TradingEnv,
        make_episode,
        run_policy,
        save_policy,
        train_ppo,
    )

    cfg = settings.ppo
    cols = feature_columns(features)
    masks = fold_masks(features, fold, settings, timeframe)
    fit_x = features.loc[masks.fit, cols].to_numpy(dtype=np.float64)
    fit_x = fit_x[np.isfinite(fit_x).all(axis=1)]
    if len(fit_x) < 100:
        return unavailable("ppo", fold, f"only {len(fit_x)} complete training rows")
    scaler = fit_scaler(fit_x)
    symbols = sorted(features["symbol"].astype(str).unique())
    train_eps, test_eps = [], {}
    for symbol in symbols:
        try:
            train_eps.append(
                make_episode(features, cols, candles, funding, symbol, masks.fit, scaler)
            )
        except InputError:
            continue
        with contextlib.suppress(InputError):
            test_eps[symbol] = make_episode(
                features, cols, candles, funding, symbol, masks.test, scaler
            )
    if not train_eps or not test_eps:
        return unavailable("ppo", fold, "no symbol has a usable training and test episode")

    class RoundRobin(gym.Wrapper):
        """Each reset moves to the next symbol's training episode."""

        def __init__(self) -> None:
            self.envs = [
                TradingEnv(ep, settings.costs, max_leverage=settings.risk.max_leverage)
                for ep in train_eps
            ]
            self.i = -1
            super().__init__(self.envs[0])

        def reset(self, **kwargs):
            self.i = (self.i + 1) % len(self.envs)
            self.env = self.envs[self.i]
            return self.env.reset(**kwargs)

    start = time.perf_counter()
    model, result = train_ppo(
        train_eps[0],
        settings.costs,
        total_timesteps=cfg.total_timesteps,
        seed=settings.training.seed,
        max_leverage=settings.risk.max_leverage,
        n_steps=cfg.n_steps,
        env=RoundRobin(),
    )
    seconds = time.perf_counter() - start
    parts, env_equity = [], {}
    label_by_key = labels.assign(
        timestamp=labels["timestamp"].astype("datetime64[ns, UTC]"),
        symbol=labels["symbol"].astype(str),
    ).set_index(["timestamp", "symbol"])["label"]
    for symbol, ep in test_eps.items():
        roll = run_policy(model, ep, settings.costs, settings.risk.max_leverage)
        env_equity[symbol] = float(roll["equity"].iloc[-1]) if len(roll) else 1.0
        frame = pd.DataFrame(
            {
                "timestamp": pd.to_datetime(roll["timestamp"], utc=True).astype(
                    "datetime64[ns, UTC]"
                ),
                "symbol": symbol,
                "fold": fold.key,
            }
        )
        position = np.sign(roll["position"].to_numpy(dtype=np.float64))
        for col in PROB_COLUMNS:
            frame[col] = np.nan
        frame["pred_class"] = (2 * position + 2).astype(np.int64)
        frame["signal"] = frame["pred_class"] - 2
        frame["confidence"] = 1.0
        keys = pd.MultiIndex.from_arrays([frame["timestamp"], frame["symbol"]])
        frame["label"] = label_by_key.reindex(keys).to_numpy(dtype=np.float64)
        # a policy has a position, not an expected return: the cost filter cannot apply
        parts.append(conform(frame, labels=settings.labels, keep_signal=True))
    preds = pd.concat(parts, ignore_index=True) if parts else empty_predictions()
    path = out_dir / "policy.pt"
    save_policy(path, result)
    meta = {"scaler": scaler.to_dict(), "feature_cols": cols, **result.manifest}
    (out_dir / "manifest.json").write_text(json.dumps(to_jsonable(meta), indent=2))
    card = _card(
        "ppo",
        fold,
        preds,
        config=cfg.model_dump(mode="json"),
        data_range={"train_start": fold.train_start, "test_end": fold.test_end},
        train_bars=int(sum(len(ep.obs) for ep in train_eps)),
        train_seconds=seconds,
        device="cpu",
        n_trials=1,
        env_test_equity=env_equity,
        artifact=str(out_dir),
        artifact_sha256=file_sha256(path),
        note="signals are the agent's positions (x2); its own environment equity per symbol "
        "on the test window is env_test_equity (same fees, slippage and funding)",
    )
    return ZooResult(preds, card)


# --- Stacking ensemble ---------------------------------------------------------------------------


def run_ensemble(
    base_predictions: dict[str, pd.DataFrame],
    features: pd.DataFrame,
    folds: list[Fold],
    settings: PipelineSettings,
    timeframe: str,
    labels: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Stack the base models fold by fold (expected return: the meta-learner's probabilities
    times the class-conditional mean realised returns of the fold's training rows).

    The meta-learner of fold ``k`` trains on the base
    models' walk-forward predictions for earlier folds' test windows that lie inside fold ``k``'s
    training window — out-of-fold by construction (each was made by a model that never saw the
    row) — with rows whose label would reach fold ``k``'s test window purged."""
    cfg = settings.ensemble
    missing = [m for m in cfg.base_models if m not in base_predictions]
    if missing:
        raise InputError(f"ensemble base models without predictions: {missing}")
    horizon = settings.target.reach + settings.walk_forward.embargo_bars
    bar = timeframe_to_timedelta(timeframe)
    regime = cfg.regime_column if cfg.regime_column in features.columns else None
    kw = {
        "regime_column": regime,
        "horizon": settings.target.horizon,
        "accuracy_window": cfg.accuracy_window,
        "timeframe": timeframe,
    }
    parts, cards = [], []
    for fold in folds:
        history = {
            m: base_predictions[m][base_predictions[m]["timestamp"] < fold.test_end]
            for m in cfg.base_models
        }
        if any(h.empty for h in history.values()):
            cards.append(
                unavailable(
                    "ensemble", fold, "a base model has no predictions up to this fold"
                ).card
            )
            continue
        frame = meta_frame(history, features, **kw)
        ts = frame["timestamp"]
        train = frame[(ts >= fold.train_start) & (ts + horizon * bar < fold.test_start)]
        test = frame[(ts >= fold.test_start) & (ts < fold.test_end)]
        if len(train.dropna(subset=["label"])) < 200 or test.empty:
            cards.append(
                unavailable(
                    "ensemble",
                    fold,
                    f"{len(train)} out-of-fold rows inside the training window (earlier folds' "
                    "test windows); the first fold(s) have none",
                ).card
            )
            continue
        cut = train["timestamp"].quantile(0.8)
        meta = train_meta_learner(
            train.reset_index(drop=True), cut, settings.training.model_copy(update={"seed": 1})
        )
        preds = predict_meta(meta, test.reset_index(drop=True), fold.key)
        class_returns = (
            fold_class_returns(
                labels, np.flatnonzero(fold_masks(features, fold, settings, timeframe).fit)
            )
            if labels is not None
            else None
        )
        preds = conform(preds, labels=settings.labels, class_returns=class_returns)
        parts.append(preds)
        card = _card(
            "ensemble",
            fold,
            preds,
            base_models=list(cfg.base_models),
            meta_inputs=meta.manifest["columns"],
            n_train_samples=meta.manifest["n_fit_rows"],
            n_val_samples=meta.manifest["n_val_rows"],
            train_seconds=meta.manifest["train_seconds"],
            oof_source="earlier folds' walk-forward test predictions inside this training window",
            device="cpu",
            n_trials=1,
        )
        base_metrics = {}
        for m in cfg.base_models:
            b = base_predictions[m]
            b = b[(b["timestamp"] >= fold.test_start) & (b["timestamp"] < fold.test_end)]
            common = b.merge(preds[["timestamp", "symbol"]], on=["timestamp", "symbol"])
            base_metrics[m] = classification_metrics(common)
        card["base_test_metrics_same_rows"] = base_metrics
        cards.append(to_jsonable(card))
    out = pd.concat(parts, ignore_index=True) if parts else empty_predictions()
    return out, cards
