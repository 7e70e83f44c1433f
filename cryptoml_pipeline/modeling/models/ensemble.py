"""The stacking meta-learner, fold by fold, on the base models' out-of-fold predictions.

The meta-learner of fold ``k`` trains on the base models' walk-forward predictions for earlier
folds' test windows that lie inside fold ``k``'s training window — out-of-fold by construction
(each was made by a model that never saw the row) — with rows whose label would reach fold
``k``'s test window purged. Hence scope ``"all_folds"``: one unpartitioned asset that needs every
fold's base predictions. Its expected return: the meta-learner's probabilities times the
class-conditional mean realised returns of the fold's training rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.modeling.ensemble import meta_frame, predict_meta, train_meta_learner
from cryptoml_pipeline.modeling.fold_training import fold_class_returns, fold_masks
from cryptoml_pipeline.modeling.models.base import (
    Fitted,
    FoldInputs,
    Unavailable,
    ZooModel,
    classification_metrics,
    model_card,
)
from cryptoml_pipeline.modeling.predictions import conform
from cryptoml_pipeline.timing import timeframe_to_timedelta


class EnsembleModel(ZooModel):
    """The stacking meta-learner, fold by fold, on earlier folds' out-of-fold predictions."""

    name = "ensemble"
    asset_name = "ensemble_predictions"
    needs = frozenset({"base_predictions"})
    scope = "all_folds"
    # the zoo models whose prediction assets it loads (``ensemble.base_models`` picks among them)
    base_models = ("transformer", "gbm")

    def precondition(self, inputs: FoldInputs) -> str | None:
        have = {k for k, v in (inputs.base_predictions or {}).items() if len(v)}
        missing = sorted(set(inputs.settings.ensemble.base_models) - have)
        return f"base models without predictions: {missing}" if missing else None

    def fit(self, inputs: FoldInputs, out_dir: Path | None) -> Fitted | Unavailable:
        fold, settings, features = inputs.fold, inputs.settings, inputs.features
        cfg = settings.ensemble
        base = inputs.base_predictions or {}
        horizon = settings.target.reach + settings.walk_forward.embargo_bars
        bar = timeframe_to_timedelta(inputs.timeframe)
        regime = cfg.regime_column if cfg.regime_column in features.columns else None
        history = {m: base[m][base[m]["timestamp"] < fold.test_end] for m in cfg.base_models}
        if any(h.empty for h in history.values()):
            return Unavailable("a base model has no predictions up to this fold")
        frame = meta_frame(
            history,
            features,
            regime_column=regime,
            horizon=settings.target.horizon,
            accuracy_window=cfg.accuracy_window,
            timeframe=inputs.timeframe,
        )
        ts = frame["timestamp"]
        train = frame[(ts >= fold.train_start) & (ts + horizon * bar < fold.test_start)]
        test = frame[(ts >= fold.test_start) & (ts < fold.test_end)]
        if len(train.dropna(subset=["label"])) < 200 or test.empty:
            return Unavailable(
                f"{len(train)} out-of-fold rows inside the training window (earlier folds' "
                "test windows); the first fold(s) have none"
            )
        cut = train["timestamp"].quantile(0.8)
        meta = train_meta_learner(
            train.reset_index(drop=True), cut, settings.training.model_copy(update={"seed": 1})
        )
        info = {
            "base_models": list(cfg.base_models),
            "meta_inputs": meta.manifest["columns"],
            "n_train_samples": meta.manifest["n_fit_rows"],
            "n_val_samples": meta.manifest["n_val_rows"],
            "train_seconds": meta.manifest["train_seconds"],
            "oof_source": "earlier folds' walk-forward test predictions inside this training "
            "window",
            "device": "cpu",
            "n_trials": 1,
        }
        return Fitted((meta, test.reset_index(drop=True), base), fold, info)

    def predict(self, fitted: Fitted, inputs: FoldInputs) -> pd.DataFrame:
        meta, test, _ = fitted.model
        fold = fitted.fold
        preds = predict_meta(meta, test, fold.key)
        class_returns = None
        if inputs.labels is not None:
            fit_rows = fold_masks(inputs.features, fold, inputs.settings, inputs.timeframe).fit
            class_returns = fold_class_returns(inputs.labels, np.flatnonzero(fit_rows))
        return conform(preds, labels=inputs.settings.labels, class_returns=class_returns)

    def card(self, fitted: Fitted, predictions: pd.DataFrame) -> dict[str, Any]:
        _, _, base = fitted.model
        fold = fitted.fold
        same_rows = {}
        for m in fitted.info["base_models"]:
            b = base[m]
            b = b[(b["timestamp"] >= fold.test_start) & (b["timestamp"] < fold.test_end)]
            common = b.merge(predictions[["timestamp", "symbol"]], on=["timestamp", "symbol"])
            same_rows[m] = classification_metrics(common)
        return model_card(self.name, fitted, predictions, base_test_metrics_same_rows=same_rows)
