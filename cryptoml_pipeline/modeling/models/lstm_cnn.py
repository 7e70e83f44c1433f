"""The spec's multi-timeframe LSTM-CNN on the traded symbols, on the span where every configured
timeframe exists (a symbol without the finer timeframes is skipped with its reason)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.fold_training import (
    fold_class_returns,
    fold_masks,
    fold_to_dict,
)
from cryptoml_pipeline.modeling.folds import strided
from cryptoml_pipeline.modeling.models.base import (
    Fitted,
    FoldInputs,
    Unavailable,
    ZooModel,
    heavy_fold,
    model_card,
    traded_only,
)
from cryptoml_pipeline.modeling.multiscale import (
    SCALE_FEATURES,
    build_multiscale_dataset,
    fit_scale_scalers,
    scale_bar_features,
)
from cryptoml_pipeline.modeling.nets.lstm_cnn import MultiScaleLSTMCNN, regression_to_signal
from cryptoml_pipeline.modeling.persistence import save_model
from cryptoml_pipeline.modeling.predictions import PROB_COLUMNS, conform, entropy_confidence
from cryptoml_pipeline.modeling.training import (
    RegressionTarget,
    predict_outputs,
    predict_proba,
    resolve_device,
    train_model,
)
from cryptoml_pipeline.timing import timeframe_to_timedelta


class LstmCnnModel(ZooModel):
    """The spec's multi-timeframe LSTM-CNN; only where all its timeframes exist in the store."""

    name = "lstm_cnn"
    asset_name = "lstm_cnn_predictions"
    needs = frozenset({"market"})

    def fit(self, inputs: FoldInputs, out_dir: Path | None) -> Fitted | Unavailable:
        settings, cfg = inputs.settings, inputs.settings.lstm_cnn
        fold = heavy_fold(inputs.fold, settings, inputs.timeframe)
        if inputs.market is None:
            return Unavailable("no market data source for the finer timeframes", fold)
        # a traded symbol without the finer timeframes is skipped with its reason, never fatal
        have, skipped = inputs.market.symbols_with_timeframes(
            list(inputs.traded), list(cfg.timeframes), settings=settings
        )
        if not have:
            return Unavailable(f"no traded symbol has {cfg.timeframes}: {skipped}", fold)
        longest = max(timeframe_to_timedelta(tf) for tf in cfg.timeframes)
        scale_candles = inputs.market.candles_by_timeframe(
            have,
            list(cfg.timeframes),
            fold.train_start - (cfg.sequence_length + 2) * longest,
            fold.test_end + longest,
            settings=settings,  # the synthetic market derives them from the run's candles
        )
        fitted = self.fit_on_scales(
            traded_only(inputs.features, have),
            traded_only(inputs.labels, have),
            fold,
            inputs,
            scale_candles,
            out_dir,
        )
        target = fitted.extra if isinstance(fitted, Unavailable) else fitted.info
        target["skipped_symbols"] = skipped
        return fitted

    def fit_on_scales(
        self,
        features: pd.DataFrame,
        labels: pd.DataFrame,
        fold,
        inputs: FoldInputs,
        scale_candles: dict[str, pd.DataFrame],
        out_dir: Path | None,
    ) -> Fitted | Unavailable:
        """Train on given candles of every configured timeframe (``fold``: the heavy fold)."""
        settings, timeframe, cfg = inputs.settings, inputs.timeframe, inputs.settings.lstm_cnn
        missing = [
            tf for tf in cfg.timeframes if tf not in scale_candles or scale_candles[tf].empty
        ]
        if missing:
            return Unavailable(f"no candles for timeframe(s) {missing} in the store", fold)
        timeframes = {tf: tf for tf in cfg.timeframes}
        scales = {tf: scale_bar_features(scale_candles[tf], tf) for tf in cfg.timeframes}
        try:
            scalers = fit_scale_scalers(scales, timeframes, fold.val_start)
        except InputError as exc:
            return Unavailable(str(exc), fold)
        # samples end at one row every training.row_stride bars (windows stay whole)
        masks = strided(
            fold_masks(features, fold, settings, timeframe),
            features["timestamp"],
            timeframe,
            settings.training.row_stride,
        )
        decisions = features[["timestamp", "symbol"]].reset_index(drop=True)
        label = labels["label"].to_numpy(dtype=np.float64)
        args = (timeframe, scales, timeframes, scalers, cfg.sequence_length)
        weak, strong = settings.labels.weak_threshold, settings.labels.strong_threshold
        regression = RegressionTarget(weak, strong) if cfg.head == "regression" else None
        # regression head: forward returns in units of the strong threshold
        returns = (
            labels["forward_return"].to_numpy(dtype=np.float64) / strong if regression else None
        )
        train_ds = build_multiscale_dataset(decisions, masks.fit, label, *args, returns=returns)
        val_ds = build_multiscale_dataset(decisions, masks.val, label, *args, returns=returns)
        if len(train_ds) < cfg.min_train_samples:
            first = {tf: str(scale_candles[tf]["timestamp"].min()) for tf in cfg.timeframes}
            return Unavailable(
                f"{len(train_ds)} training samples where all of {list(cfg.timeframes)} exist "
                f"(< {cfg.min_train_samples}); first bars {first}",
                fold,
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
        if out_dir is not None:
            manifest = {
                "model_class": "MultiScaleLSTMCNN",
                "timeframes": list(cfg.timeframes),
                "config": cfg.model_dump(mode="json"),
                "scalers": {tf: s.to_dict() for tf, s in scalers.items()},
                "fold": fold_to_dict(fold),
            }
            save_model(out_dir, result.model, manifest)
        first_sample = features["timestamp"].iloc[train_ds.rows].min()
        info = {
            "config": cfg.model_dump(mode="json"),
            "data_range": {"first_training_sample": first_sample, "test_end": fold.test_end},
            "span_note": (
                "trained only where every timeframe exists; its first sample is "
                f"{first_sample}, so this fold's training window is shorter than the 1h models'"
            ),
            "n_train_samples": len(train_ds),
            "n_val_samples": len(val_ds),
            "best_epoch": result.best_epoch,
            "history": [asdict(h) for h in result.history],
            "train_seconds": result.train_seconds,
            "device": result.device,
            "n_trials": 1,
            "head": cfg.head,
            "regression_thresholds": {"weak": weak, "strong": strong} if regression else None,
        }
        state = {
            "net": result.model,
            "features": features,
            "label": label,
            "test_ds": build_multiscale_dataset(decisions, masks.test, None, *args),
            "regression": regression,
            "class_returns": fold_class_returns(labels, train_ds.rows),
        }
        return Fitted(state, fold, info, out_dir, "model.pt")

    def predict(self, fitted: Fitted, inputs: FoldInputs) -> pd.DataFrame:
        s, settings = fitted.model, inputs.settings
        weak, strong = settings.labels.weak_threshold, settings.labels.strong_threshold
        test_ds, features, regression = s["test_ds"], s["features"], s["regression"]
        device = resolve_device(settings.training.device)
        rows = test_ds.rows
        if regression is not None:
            # one output: the forward-return estimate -> signal by the label thresholds; no class
            # probabilities; confidence = |estimate| / strong threshold, capped at 1
            estimate = predict_outputs(s["net"], test_ds, device) * strong
            signal = regression_to_signal(estimate, weak, strong)
            probs = np.full((len(rows), len(PROB_COLUMNS)), np.nan)
            pred_class = (signal + 2).astype(np.int64)
            confidence = np.clip(np.abs(estimate) / strong, 0.0, 1.0)
        else:
            probs = predict_proba(s["net"], test_ds, batch_size=512, device=device)
            pred_class = probs.argmax(axis=1).astype(np.int64) if len(rows) else np.zeros(0, int)
            confidence = entropy_confidence(probs) if len(rows) else np.zeros(0)
        preds = pd.DataFrame(
            {
                "timestamp": features["timestamp"].iloc[rows].astype("datetime64[ns, UTC]").array,
                "symbol": features["symbol"].iloc[rows].astype(str).to_numpy(),
                "fold": fitted.fold.key,
            }
        )
        for j, col in enumerate(PROB_COLUMNS):
            preds[col] = probs[:, j] if len(rows) else np.zeros(0)
        preds["pred_class"] = pred_class
        preds["confidence"] = confidence
        preds["label"] = s["label"][rows]
        if regression is not None:
            preds["expected_return"] = np.clip(estimate, -0.99, None) if len(rows) else np.zeros(0)
        return conform(preds, labels=settings.labels, class_returns=s["class_returns"])

    def card(self, fitted: Fitted, predictions: pd.DataFrame) -> dict[str, Any]:
        return model_card(self.name, fitted, predictions)
