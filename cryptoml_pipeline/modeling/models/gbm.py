"""LightGBM pooled over every universe member's training rows, optionally Optuna-tuned inside
the fold's training window; predictions for the traded symbols."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from cryptoml_pipeline.modeling.gbm import predict_gbm_fold, save_gbm, train_gbm_fold
from cryptoml_pipeline.modeling.models.base import Fitted, FoldInputs, ZooModel, model_card


class GbmModel(ZooModel):
    """LightGBM baseline (Optuna-tuned inside the training window when ``tuning.n_trials`` > 0)."""

    name = "gbm"
    asset_name = "gbm_predictions"

    def fit(self, inputs: FoldInputs, out_dir: Path | None) -> Fitted:
        fold, settings, tf = inputs.fold, inputs.settings, inputs.timeframe
        tuning = None
        if settings.tuning.n_trials > 0:
            from cryptoml_pipeline.modeling.tuning import tune_gbm_fold

            tuning = tune_gbm_fold(
                inputs.features,
                inputs.labels,
                fold,
                settings,
                tf,
                n_trials=settings.tuning.n_trials,
            )
            settings = settings.model_copy(
                update={"gbm": settings.gbm.model_copy(update=tuning.best_params)}
            )
        model = train_gbm_fold(inputs.features, inputs.labels, fold, settings, tf)
        if out_dir is not None:
            save_gbm(out_dir, model)
        m = model.manifest
        info = {
            "config": settings.gbm.model_dump(mode="json"),
            "data_range": {"train_start": fold.train_start, "test_end": fold.test_end},
            "n_train_samples": m["n_train_samples"],
            "n_val_samples": m["n_val_samples"],
            "target": settings.target.model_dump(mode="json"),
            "train_symbols": m["train_symbols"],
            "val_rank_ic": m["val_rank_ic"],
            "best_iteration": m["best_iteration"],
            "train_seconds": m["train_seconds"],
            "device": "cpu",
            "n_trials": tuning.n_trials if tuning else 1,
            "tuning": asdict(tuning) if tuning else None,
        }
        # predict with the tuned settings
        return Fitted((model, settings), fold, info, out_dir, "gbm.txt")

    def predict(self, fitted: Fitted, inputs: FoldInputs) -> pd.DataFrame:
        model, settings = fitted.model
        return predict_gbm_fold(
            model,
            inputs.features,
            inputs.labels,
            inputs.fold,
            settings,
            inputs.timeframe,
            traded=inputs.traded or None,
        )

    def card(self, fitted: Fitted, predictions: pd.DataFrame) -> dict[str, Any]:
        return model_card(self.name, fitted, predictions)
