"""LightGBM pooled over every universe member's training rows, optionally Optuna-tuned inside
the fold's training window; predictions for the traded symbols.

Deployable: it can be the strategy model (``strategy.model: gbm``, the default) — saved as
``gbm.txt`` (LightGBM's text format) + ``manifest.json`` (``model_class: LightGBM``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.modeling.gbm import (
    MODEL_FILE,
    GbmFoldModel,
    forecast_table_rows,
    load_gbm,
    predict_gbm_fold,
    predict_gbm_rows,
    save_gbm,
    train_gbm_fold,
)
from cryptoml_pipeline.modeling.models.base import Fitted, FoldInputs, ZooModel, model_card
from cryptoml_pipeline.settings import PipelineSettings


class GbmModel(ZooModel):
    """LightGBM baseline (Optuna-tuned inside the training window when ``tuning.n_trials`` > 0)."""

    name = "gbm"
    asset_name = "gbm_predictions"
    deployable = True
    model_class = "LightGBM"

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
        return Fitted(model, fold, info, out_dir, MODEL_FILE, name=self.name)

    def predict(self, fitted: Fitted, inputs: FoldInputs) -> pd.DataFrame:
        # the tuned parameters live in the booster: prediction reads no ``gbm`` setting
        return predict_gbm_fold(
            fitted.model,
            inputs.features,
            inputs.labels,
            inputs.fold,
            inputs.settings,
            inputs.timeframe,
            traded=inputs.traded or None,
        )

    def card(self, fitted: Fitted, predictions: pd.DataFrame) -> dict[str, Any]:
        return model_card(self.name, fitted, predictions)

    # --- serving ----------------------------------------------------------------------------------

    def _fitted(self, model: GbmFoldModel, artifact: Path | None = None) -> Fitted:
        m = model.manifest
        info = {k: m.get(k) for k in _INFO_KEYS} | {
            "config": m.get("gbm_config"),
            "data_range": {"train_start": model.fold.train_start, "test_end": model.fold.test_end},
        }
        return Fitted(model, model.fold, info, artifact, MODEL_FILE, name=self.name)

    def fit_window(self, inputs: FoldInputs) -> Fitted:
        """Pooled over every universe row of exactly ``inputs.fold`` (no tuning)."""
        model = train_gbm_fold(
            inputs.features, inputs.labels, inputs.fold, inputs.settings, inputs.timeframe
        )
        model.manifest["model_kind"] = self.name
        model.manifest["traded_symbols"] = list(inputs.traded) if inputs.traded else None
        return self._fitted(model)

    def predict_rows(
        self,
        fitted: Fitted,
        features: pd.DataFrame,
        labels: pd.DataFrame | None,
        row_mask: np.ndarray,
        settings: PipelineSettings,
        timeframe: str,
        *,
        tag: str,
    ) -> pd.DataFrame:
        return predict_gbm_rows(
            fitted.model, features, labels, row_mask, settings, timeframe, tag=tag
        )

    def predict_arrays(
        self,
        fitted: Fitted,
        columns: Mapping[str, np.ndarray],
        stamps: np.ndarray,
        symbols: np.ndarray,
        row_mask: np.ndarray,
        timeframe: str,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """The trees on the rows' arrays, one LightGBM thread (the signal's handful of rows:
        starting threads costs more than the trees); equal to :meth:`predict_rows`."""
        return forecast_table_rows(
            fitted.model, columns, stamps, symbols, row_mask, timeframe, num_threads=1
        )

    def save(self, fitted: Fitted, directory: Path) -> Path:
        return save_gbm(Path(directory), fitted.model)

    def load(self, directory: Path) -> Fitted:
        return self._fitted(load_gbm(Path(directory)), Path(directory))

    def importance(self, fitted: Fitted, top: int = 20) -> dict[str, float]:
        """Total split gain per feature (lags summed into their feature), normalised."""
        booster = fitted.model.booster
        gain = booster.feature_importance(importance_type="gain")
        totals: dict[str, float] = {}
        for name, g in zip(booster.feature_name(), gain, strict=True):
            base = name.split("__lag")[0]
            totals[base] = totals.get(base, 0.0) + float(g)
        total = sum(totals.values()) or 1.0
        ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
        return {k: v / total for k, v in ranked}

    def history_rows(self, fitted: Fitted) -> int:
        return max(fitted.manifest["gbm_config"].get("lags") or (0,))


_INFO_KEYS = (
    "n_train_samples",
    "n_val_samples",
    "train_symbols",
    "val_rank_ic",
    "best_iteration",
    "train_seconds",
    "device",
)
