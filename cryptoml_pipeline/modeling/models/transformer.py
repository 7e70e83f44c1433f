"""The spec's CryptoTransformer, one per fold, on the traded symbols' purged training window (5
classes; its expected return comes from the class-conditional mean realised returns of its
training rows).

Unlike the other zoo models its Dagster wiring is two hand-written assets in
``defs/assets/modeling.py`` — ``fold_model`` (``fit``: the trained model (a :class:`Fitted`) is
itself an asset, so ``feature_importance`` reuses it, and a retried run resumes training from its
per-epoch checkpoint) and ``fold_predictions`` (``predict`` + ``card``) — instead of one
factory-built asset; both call this class's methods.

Deployable: it can be the strategy model (``strategy.model: transformer``) — saved as
``model.pt`` (a ``state_dict``) + ``manifest.json`` (``model_class: CryptoTransformer``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cryptoml_pipeline.modeling import fold_training
from cryptoml_pipeline.modeling.fold_training import (
    FoldModel,
    fold_model_from_saved,
    predict_fold,
    train_fold,
)
from cryptoml_pipeline.modeling.models.base import (
    Fitted,
    FoldInputs,
    ZooModel,
    heavy_fold,
    model_card,
    traded_only,
)
from cryptoml_pipeline.modeling.persistence import WEIGHTS_FILE, load_model, save_model
from cryptoml_pipeline.settings import PipelineSettings

CARD_KEYS = (
    "timeframe",
    "symbols",
    "train_samples_range",
    "val_samples_range",
    "n_train_samples",
    "n_val_samples",
    "best_epoch",
    "val_loss",
    "val_accuracy",
    "class_distribution",
    "batch_size",
    "train_seconds",
    "device",
)


class TransformerModel(ZooModel):
    """One CryptoTransformer per fold (assets ``fold_model`` -> ``fold_predictions``)."""

    name = "transformer"
    asset_name = "fold_predictions"
    deployable = True
    model_class = "CryptoTransformer"

    def fold(self, inputs: FoldInputs):
        return heavy_fold(inputs.fold, inputs.settings, inputs.timeframe)

    def _rows(self, inputs: FoldInputs, frame: pd.DataFrame) -> pd.DataFrame:
        return traded_only(frame, inputs.traded) if inputs.traded else frame

    def fit(
        self, inputs: FoldInputs, out_dir: Path | None, *, checkpoint_path: Path | None = None
    ) -> Fitted:
        """Train on the heavy fold; with ``checkpoint_path`` an interrupted training resumes
        from its last finished epoch."""
        model = train_fold(
            self._rows(inputs, inputs.features),
            self._rows(inputs, inputs.labels),
            self.fold(inputs),
            inputs.settings,
            inputs.timeframe,
            checkpoint_path=checkpoint_path,
        )
        if out_dir is not None:
            save_model(out_dir, model.model, model.manifest)
        return self.fitted(model, out_dir)

    def fitted(self, model: FoldModel, artifact: Path | None = None) -> Fitted:
        """A stored :class:`FoldModel` (the ``fold_model`` asset) as this interface's fit
        result; ``artifact``: where ``fit`` saved its weights, when they are there."""
        m = model.manifest
        info = {k: m.get(k) for k in CARD_KEYS}
        info.update(
            config={"model": m.get("model_config"), "training": m.get("training_config")},
            data_range={"train_start": model.fold.train_start, "test_end": model.fold.test_end},
            n_trials=1,
        )
        if artifact is not None and not _saved_there(model, artifact):
            artifact = None
        return Fitted(model, model.fold, info, artifact, WEIGHTS_FILE, name=self.name)

    def predict(self, fitted: Fitted, inputs: FoldInputs) -> pd.DataFrame:
        return predict_fold(
            fitted.model,
            self._rows(inputs, inputs.features),
            self._rows(inputs, inputs.labels) if inputs.labels is not None else None,
            self.fold(inputs),
            inputs.settings,
            inputs.timeframe,
        )

    def card(self, fitted: Fitted, predictions: pd.DataFrame) -> dict[str, Any]:
        return model_card(self.name, fitted, predictions)

    # --- serving ----------------------------------------------------------------------------------

    def fit_window(self, inputs: FoldInputs) -> Fitted:
        """Train on the traded symbols' rows of exactly ``inputs.fold`` (not capped)."""
        model = train_fold(
            self._rows(inputs, inputs.features),
            self._rows(inputs, inputs.labels),
            inputs.fold,
            inputs.settings,
            inputs.timeframe,
        )
        model.manifest["model_kind"] = self.name
        model.manifest["traded_symbols"] = list(inputs.traded) if inputs.traded else None
        return self.fitted(model)

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
        return fold_training.predict_rows(
            fitted.model, features, labels, row_mask, settings, timeframe, tag=tag
        )

    def save(self, fitted: Fitted, directory: Path) -> Path:
        return save_model(Path(directory), fitted.model.model, fitted.manifest)

    def load(self, directory: Path) -> Fitted:
        fitted = self.fitted(fold_model_from_saved(*load_model(Path(directory))))
        fitted.artifact = Path(directory)
        return fitted

    def importance(self, fitted: Fitted, top: int = 20) -> dict[str, float]:
        """L2 norm of each input feature's column in the input projection (inputs are
        standardised, so the norms are comparable), normalised to sum to 1."""
        layer = getattr(fitted.model.model, "input_projection", None)
        if layer is None:
            return {}
        weights = layer.weight.detach().to(torch.float64).cpu().numpy()
        norms = np.linalg.norm(weights, axis=0)
        share = norms / norms.sum() if norms.sum() > 0 else norms
        order = np.argsort(-share)[:top]
        cols = fitted.feature_cols
        return {cols[i]: float(share[i]) for i in order}

    def history_rows(self, fitted: Fitted) -> int:
        return int(fitted.manifest["model_config"]["sequence_length"])


def _saved_there(model: FoldModel, directory: Path) -> bool:
    """Whether ``directory`` holds this very model's weights (same fold, same training run)."""
    manifest = directory / "manifest.json"
    if not (directory / "model.pt").is_file() or not manifest.is_file():
        return False
    saved = json.loads(manifest.read_text(encoding="utf-8"))
    return all(saved.get(k) == model.manifest.get(k) for k in ("fold", "train_seconds", "history"))
