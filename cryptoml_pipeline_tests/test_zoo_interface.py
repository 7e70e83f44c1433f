"""The zoo's one model interface: a new model is one file (here: a class in this test) plus one
registry line, and the asset factory turns it into a fold-partitioned asset that trains on the
fold's purged fit rows, predicts its test window in the prediction schema and writes its card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from cryptoml_pipeline.defs.assets import zoo as zoo_assets
from cryptoml_pipeline.defs.io_manager import ArtifactIOManager
from cryptoml_pipeline.defs.partitions import FOLDS
from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.modeling.fold_training import fold_masks, fold_to_dict
from cryptoml_pipeline.modeling.folds import walk_forward_folds
from cryptoml_pipeline.modeling.models import (
    ZOO,
    Fitted,
    FoldInputs,
    Unavailable,
    ZooModel,
    registry,
    run_model,
)
from cryptoml_pipeline.modeling.models.base import model_card
from cryptoml_pipeline.modeling.persistence import file_sha256
from cryptoml_pipeline.modeling.predictions import assemble, validate_predictions
from cryptoml_pipeline.settings import PipelineSettings, WalkForwardConfig

SETTINGS = PipelineSettings(
    walk_forward=WalkForwardConfig(train_days=20, test_days=5, step_days=5, embargo_bars=2)
)
FIT_ROWS: list[int] = []


class MeanLabelModel(ZooModel):
    """Predicts the mean training label of each symbol (a toy model: the whole 'file')."""

    name = "mean_label"
    asset_name = "mean_label_predictions"

    def fit(self, inputs: FoldInputs, out_dir: Path | None) -> Fitted | Unavailable:
        masks = fold_masks(inputs.features, inputs.fold, inputs.settings, inputs.timeframe)
        if not masks.fit.any():
            return Unavailable("no fit rows")
        FIT_ROWS.append(int(masks.fit.sum()))
        fit = inputs.labels[masks.fit]
        means = fit.groupby("symbol")["label"].mean().to_dict()
        if out_dir is not None:
            (out_dir / "means.json").write_text(json.dumps(means))
        info = {"n_train_samples": int(masks.fit.sum()), "train_seconds": 0.01, "device": "cpu"}
        return Fitted(means, inputs.fold, info, out_dir, "means.json")

    def predict(self, fitted: Fitted, inputs: FoldInputs) -> pd.DataFrame:
        masks = fold_masks(inputs.features, inputs.fold, inputs.settings, inputs.timeframe)
        test = inputs.features[masks.test]
        mean = test["symbol"].map(fitted.model).to_numpy(dtype=np.float64)
        return assemble(
            timestamps=test["timestamp"],
            symbols=test["symbol"].to_numpy(),
            fold=inputs.fold.key,
            expected_return=mean * 0.01,
            confidence=np.full(len(test), 0.5),
            labels=inputs.settings.labels,
            label=inputs.labels["label"].to_numpy(dtype=np.float64)[masks.test],
        )

    def card(self, fitted: Fitted, predictions: pd.DataFrame) -> dict[str, Any]:
        return model_card(self.name, fitted, predictions, n_trials=1)


def _tables() -> tuple[pd.DataFrame, pd.DataFrame, list]:
    start, end = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-02-10", tz="UTC")
    ts = pd.date_range(start, end, freq="1h", inclusive="left")
    rng = np.random.default_rng(0)
    features = pd.concat(
        [
            pd.DataFrame({"timestamp": ts, "symbol": s, "ret_1": rng.normal(size=len(ts))})
            for s in "AB"
        ],
        ignore_index=True,
    )
    labels = features[["timestamp", "symbol"]].assign(
        label=rng.integers(-2, 3, len(features)).astype(float)
    )
    folds = walk_forward_folds(start, end, SETTINGS.walk_forward)
    return features, labels, folds


def test_run_model_fits_predicts_and_describes(tmp_path):
    features, labels, folds = _tables()
    inputs = FoldInputs(features, labels, folds[-1], SETTINGS, "1h", traded=("A", "B"))
    result = run_model(MeanLabelModel(), inputs, tmp_path)
    validate_predictions(result.predictions)
    assert result.predictions["timestamp"].min() >= folds[-1].test_start
    assert result.predictions["timestamp"].max() < folds[-1].test_end
    assert result.card["status"] == "trained"
    assert result.card["artifact_sha256"] == file_sha256(tmp_path / "means.json")
    # unavailable -> empty predictions and a card with the reason
    early = folds[-1].__class__(
        **{**folds[-1].__dict__, "train_start": features["timestamp"].max()}
    )
    none = run_model(MeanLabelModel(), inputs.for_fold(early), tmp_path)
    assert none.predictions.empty and none.card["reason"] == "no fit rows"


def test_the_module_builds_one_asset_per_registered_model():
    keys = {a.key.to_user_string() for a in zoo_assets.ZOO_ASSETS}
    assert keys == {m.asset_name for m in ZOO.values()} - zoo_assets.OWN_ASSETS
    assert keys == {
        "gbm_predictions",
        "lstm_cnn_predictions",
        "ppo_predictions",
        "ensemble_predictions",
    }
    (comparison,) = zoo_assets.COMPARISON_ASSETS
    deps = {k.to_user_string() for k in comparison.dependency_keys}
    assert {m.asset_name for m in ZOO.values()} <= deps


def test_a_new_model_is_one_class_plus_one_registry_line(tmp_path):
    zoo = registry(*ZOO.values(), MeanLabelModel())  # the "one line"
    asset = zoo_assets.zoo_asset(zoo["mean_label"], zoo)
    assert asset.key == dg.AssetKey("mean_label_predictions")
    assert asset.partitions_def is not None  # fold-partitioned
    assert {k.to_user_string() for k in asset.dependency_keys} == set(zoo_assets.BASE_INS)
    comparison = zoo_assets.comparison_asset(zoo)
    assert dg.AssetKey("mean_label_predictions") in comparison.dependency_keys

    features, labels, folds = _tables()
    plan = [fold_to_dict(f) for f in folds]

    @dg.asset
    def feature_table() -> pd.DataFrame:
        return features

    @dg.asset
    def label_table() -> pd.DataFrame:
        return labels

    @dg.asset
    def fold_plan() -> list:
        return plan

    @dg.asset
    def dataset_info() -> dict:
        return {"timeframe": "1h", "symbols": ["A", "B"]}

    resources = {
        "pipeline": PipelineResource(profile="tiny", output_dir=str(tmp_path)),
        "io_manager": ArtifactIOManager(base_dir=str(tmp_path)),
    }
    upstream = [feature_table, label_table, fold_plan, dataset_info]
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(upstream, resources=resources, instance=instance).success
    instance.add_dynamic_partitions(FOLDS, [f.key for f in folds])
    fold = folds[-1]
    FIT_ROWS.clear()
    result = dg.materialize(
        [asset, *upstream],
        selection=[asset.key],
        partition_key=fold.key,
        resources=resources,
        instance=instance,
    )
    assert result.success and FIT_ROWS  # the factory ran the model's own fit
    preds = result.output_for_node("mean_label_predictions")
    validate_predictions(preds)
    assert len(preds) and preds["timestamp"].min() >= fold.test_start
    assert preds["timestamp"].max() < fold.test_end
    card = json.loads((tmp_path / "models" / "mean_label" / fold.key / "card.json").read_text())
    assert card["status"] == "trained" and card["model"] == "mean_label"
    assert card["artifact_sha256"] == file_sha256(Path(card["artifact"]) / "means.json")
