"""The zoo's one model interface: a new model is one file (here: a class in this test) plus one
registry line, and the asset factory turns it into a fold-partitioned asset that trains on the
fold's purged fit rows, predicts its test window in the prediction schema and writes its card.
The deployable models (the legal ``strategy.model`` values) also save, load and predict feature
rows; a saved model loads with the zoo model its manifest names."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, get_args

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from cryptoml_pipeline.defs.assets import zoo as zoo_assets
from cryptoml_pipeline.defs.assets.run_settings import run_settings
from cryptoml_pipeline.defs.io_manager import ArtifactIOManager
from cryptoml_pipeline.defs.partitions import FOLDS
from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.fold_training import fold_masks, fold_to_dict
from cryptoml_pipeline.modeling.folds import walk_forward_folds
from cryptoml_pipeline.modeling.models import (
    DEPLOYABLE,
    ZOO,
    Fitted,
    FoldInputs,
    NotDeployableError,
    Unavailable,
    ZooModel,
    load_saved,
    registry,
    run_model,
    saved_model,
)
from cryptoml_pipeline.modeling.models.base import model_card
from cryptoml_pipeline.modeling.persistence import file_sha256
from cryptoml_pipeline.modeling.predictions import assemble, validate_predictions
from cryptoml_pipeline.settings import (
    PipelineSettings,
    StrategyConfig,
    StrategyModel,
    WalkForwardConfig,
    profile_settings,
)

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
    keys = {k.to_user_string() for a in zoo_assets.ZOO_ASSETS for k in a.keys}
    own = zoo_assets.OWN_ASSETS
    cards = {m.card_asset_name for m in ZOO.values() if m.asset_name not in own}
    assert keys == ({m.asset_name for m in ZOO.values()} - own) | cards
    assert keys - cards == {
        "gbm_predictions",
        "lstm_cnn_predictions",
        "ppo_predictions",
        "ensemble_predictions",
    }
    (comparison,) = zoo_assets.COMPARISON_ASSETS
    deps = {k.to_user_string() for k in comparison.dependency_keys}
    assert {m.asset_name for m in ZOO.values()} <= deps
    assert {m.card_asset_name for m in ZOO.values()} <= deps  # transformer_model_card included


def test_a_new_model_is_one_class_plus_one_registry_line(tmp_path):
    zoo = registry(*ZOO.values(), MeanLabelModel())  # the "one line"
    asset = zoo_assets.zoo_asset(zoo["mean_label"], zoo)
    assert asset.keys == {
        dg.AssetKey("mean_label_predictions"),
        dg.AssetKey("mean_label_model_card"),
    }
    assert asset.partitions_def is not None  # fold-partitioned
    assert {k.to_user_string() for k in asset.dependency_keys} == set(zoo_assets.BASE_INS)
    comparison = zoo_assets.comparison_asset(zoo)
    assert dg.AssetKey("mean_label_predictions") in comparison.dependency_keys
    assert dg.AssetKey("mean_label_model_card") in comparison.dependency_keys

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
    upstream = [feature_table, label_table, fold_plan, dataset_info, run_settings]
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(upstream, resources=resources, instance=instance).success
    instance.add_dynamic_partitions(FOLDS, [f.key for f in folds])
    fold = folds[-1]
    FIT_ROWS.clear()
    result = dg.materialize(
        [asset, *upstream],
        selection=list(asset.keys),
        partition_key=fold.key,
        resources=resources,
        instance=instance,
    )
    assert result.success and FIT_ROWS  # the factory ran the model's own fit
    preds = result.output_for_node("mean_label_predictions", "mean_label_predictions")
    validate_predictions(preds)
    assert len(preds) and preds["timestamp"].min() >= fold.test_start
    assert preds["timestamp"].max() < fold.test_end
    card = result.output_for_node("mean_label_predictions", "mean_label_model_card")
    assert card["status"] == "trained" and card["model"] == "mean_label"
    # a copy for humans next to the artifact
    on_disk = json.loads((tmp_path / "models" / "mean_label" / fold.key / "card.json").read_text())
    assert on_disk == card
    assert card["artifact_sha256"] == file_sha256(Path(card["artifact"]) / "means.json")


class RefusingModel(MeanLabelModel):
    """Never fits: every fold's card states why (the comparison shows it)."""

    name = "refuser"
    asset_name = "refuser_predictions"

    def fit(self, inputs: FoldInputs, out_dir: Path | None) -> Fitted | Unavailable:
        return Unavailable("no edge in this test")


def test_the_comparison_takes_the_cards_from_the_card_assets(tmp_path):
    """``model_comparison`` gets each model's cards as the value of ``<model>_model_card``
    (through the IO manager), never from ``card.json`` files: with the files deleted and a stale
    one planted in their place, the comparison states the reason the card assets hold."""
    import shutil

    zoo = registry(RefusingModel())
    model = zoo["refuser"]
    asset = zoo_assets.zoo_asset(model, zoo)
    comparison = zoo_assets.comparison_asset(zoo)
    features, labels, folds = _tables()
    plan = [fold_to_dict(f) for f in folds]
    empty = pd.DataFrame({"timestamp": pd.Series([], dtype="datetime64[ns, UTC]"), "symbol": []})

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

    @dg.asset
    def ohlcv() -> pd.DataFrame:
        return empty

    @dg.asset
    def funding() -> pd.DataFrame:
        return empty

    out = tmp_path / "output"  # the human-readable copies (card.json)
    resources = {
        "pipeline": PipelineResource(profile="tiny", output_dir=str(out)),
        "io_manager": ArtifactIOManager(base_dir=str(tmp_path / "store")),
    }
    upstream = [feature_table, label_table, fold_plan, dataset_info, run_settings, ohlcv, funding]
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(upstream, resources=resources, instance=instance).success
    instance.add_dynamic_partitions(FOLDS, [f.key for f in folds])
    for fold in folds:
        result = dg.materialize(
            [asset, *upstream],
            selection=list(asset.keys),
            partition_key=fold.key,
            resources=resources,
            instance=instance,
        )
        assert result.success
        card = result.output_for_node(model.asset_name, model.card_asset_name)
        assert card["reason"] == "no edge in this test"
    assert (out / "models" / "refuser" / folds[0].key / "card.json").is_file()
    shutil.rmtree(out / "models")  # the copies go; a stale one says something else
    stale = out / "models" / "refuser" / folds[0].key / "card.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"status": "unavailable", "reason": "stale file"}))

    result = dg.materialize(
        [comparison, asset, *upstream],
        selection=[comparison.key],
        resources=resources,
        instance=instance,
    )
    assert result.success
    value = result.output_for_node("model_comparison")
    refuser = value["models"]["refuser"]
    assert refuser["available"] is False and refuser["reasons"] == ["no edge in this test"]


# --- the serving half: the deployable models (strategy.model) ---------------------------------

SERVE_START = pd.Timestamp("2025-01-01", tz="UTC")
SERVE_END = pd.Timestamp("2025-03-15", tz="UTC")
SERVE_TRADED = ("BTC/USDT", "ETH/USDT")


@functools.cache
def _serving_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    from cryptoml_pipeline.features.build import compute_features
    from cryptoml_pipeline.market.synthetic import synthetic_market

    settings = profile_settings("tiny")
    market = synthetic_market(
        SERVE_TRADED,
        "1h",
        SERVE_START,
        SERVE_END,
        seed=5,
        universe=(*SERVE_TRADED, "SOL/USDT"),
        history=pd.Timedelta(days=20),
    )
    features = compute_features(market.candles, market.funding, settings.features, timeframe="1h")
    return market.candles, features


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("transformer", "classes"),
        ("gbm", "triple_barrier"),
        ("gbm", "vol_scaled_return"),
        ("gbm", "classes"),
    ],
)
def test_every_deployable_model_round_trips_save_and_load(
    tmp_path: Path, name: str, target: str
) -> None:
    """fit_window -> save -> load_saved (the manifest names the zoo model) predicts the same
    rows exactly, through predict_rows, the array path and the artifact store alike."""
    from cryptoml_pipeline.modeling.folds import final_training_fold
    from cryptoml_pipeline.modeling.labels import make_labels
    from cryptoml_pipeline.registry.artifact_store import read_value, write_value

    base = profile_settings("tiny")
    settings = base.model_copy(
        update={
            "target": base.target.model_copy(update={"kind": target}),
            "training": base.training.model_copy(update={"device": "cpu"}),
        }
    )
    candles, features = _serving_tables()
    labels = make_labels(candles, settings.target, settings.labels, timeframe="1h")
    fold = final_training_fold(SERVE_END, settings.walk_forward, timeframe="1h")
    zoo = ZOO[name]
    assert zoo.deployable and name in DEPLOYABLE
    inputs = FoldInputs(features, labels, fold, settings, "1h", traded=SERVE_TRADED)
    fitted = zoo.fit_window(inputs)
    assert fitted.name == name and fitted.fold == fold
    assert fitted.manifest["model_kind"] == name
    assert fitted.manifest["traded_symbols"] == list(SERVE_TRADED)

    zoo.save(fitted, tmp_path / "model")
    assert not list((tmp_path / "model").glob("*.pkl"))
    loaded = load_saved(tmp_path / "model")
    assert loaded.name == name and loaded.fold == fitted.fold
    assert loaded.feature_cols == fitted.feature_cols
    assert loaded.artifact == tmp_path / "model"
    assert {k: loaded.manifest[k] for k in fitted.manifest} == fitted.manifest

    recent = (features["timestamp"] >= SERVE_END - pd.Timedelta(days=5)).to_numpy(copy=True)
    recent &= features["symbol"].isin(SERVE_TRADED).to_numpy()
    before = zoo.predict_rows(fitted, features, labels, recent, settings, "1h", tag="t")
    after = ZOO[loaded.name].predict_rows(loaded, features, labels, recent, settings, "1h", tag="t")
    assert len(before) > 0
    validate_predictions(before)
    pd.testing.assert_frame_equal(before, after)

    # the signal's array path (when the model has one) gives the same numbers
    columns = {c: features[c].to_numpy(dtype=np.float64) for c in features.columns[2:]}
    stamps = features["timestamp"].astype("datetime64[ns, UTC]").array.asi8
    symbols = features["symbol"].astype(str).to_numpy(dtype=object)
    arrays = zoo.predict_arrays(loaded, columns, stamps, symbols, recent, "1h")
    if arrays is not None:
        rows, expected, confidence, _ = arrays
        np.testing.assert_array_equal(stamps[rows], before["timestamp"].array.asi8)
        np.testing.assert_array_equal(expected, before["expected_return"].to_numpy())
        np.testing.assert_array_equal(np.clip(confidence, 0, 1), before["confidence"].to_numpy())

    # the artifact store (the IO manager) stores and loads it the same way
    write_value(tmp_path / "asset", loaded)
    again = read_value(tmp_path / "asset")
    assert again.name == name
    pd.testing.assert_frame_equal(
        before, zoo.predict_rows(again, features, labels, recent, settings, "1h", tag="t")
    )

    importance = zoo.importance(loaded)
    assert importance and set(importance) <= set(loaded.feature_cols)
    assert 0 < sum(importance.values()) <= 1 + 1e-9
    assert zoo.importance(loaded) == zoo.importance(fitted)
    assert zoo.history_rows(loaded) >= 1


def test_saved_models_name_their_zoo_model() -> None:
    """A candidate's manifest names its zoo model (``model_kind``); a walk-forward model's
    manifest only its ``model_class`` (older artifacts: the transformer)."""
    assert saved_model({"model_kind": "gbm", "model_class": "LightGBM"}) is ZOO["gbm"]
    assert saved_model({"model_class": "LightGBM"}) is ZOO["gbm"]
    assert saved_model({"model_class": "CryptoTransformer"}) is ZOO["transformer"]
    assert saved_model({}) is ZOO["transformer"]
    with pytest.raises(NotDeployableError, match="ppo"):
        saved_model({"model_kind": "ppo"})
    with pytest.raises(InputError, match="Pickle"):
        saved_model({"model_class": "Pickle"})


@pytest.mark.parametrize("name", sorted(set(ZOO) - set(DEPLOYABLE)))
def test_models_that_cannot_be_deployed_say_so(tmp_path: Path, name: str) -> None:
    zoo = ZOO[name]
    assert not zoo.deployable
    _, _, folds = _tables()
    fitted = Fitted(None, folds[0], name=name)
    with pytest.raises(NotDeployableError, match=name):
        zoo.load(tmp_path)
    with pytest.raises(NotDeployableError, match="not deployable"):
        zoo.save(fitted, tmp_path)
    with pytest.raises(NotDeployableError, match="manifest"):
        _ = fitted.manifest
    with pytest.raises(NotDeployableError):
        zoo.fit_window(None)  # type: ignore[arg-type]


def test_the_strategy_model_must_be_a_deployable_zoo_model() -> None:
    """``strategy.model`` takes exactly the deployable zoo models; ``engine`` (the comparison's
    prediction engine, not a zoo model: it can be neither trained nor deployed) is refused."""
    assert set(get_args(StrategyModel)) == set(DEPLOYABLE)
    assert StrategyConfig().model in DEPLOYABLE
    with pytest.raises(ValidationError, match="'gbm' or 'transformer'"):
        PipelineSettings.model_validate({"strategy": {"model": "engine"}})
