"""train_fold / predict_fold on a small synthetic frame with real walk-forward folds and labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.fold_training import (
    fold_model_from_saved,
    predict_fold,
    train_fold,
)
from cryptoml_pipeline.modeling.folds import fold_row_masks, strided, walk_forward_folds
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.modeling.persistence import load_model, save_model
from cryptoml_pipeline.modeling.predictions import (
    PREDICTION_COLUMNS,
    entropy_confidence,
    signal_from_expected,
)
from cryptoml_pipeline.modeling.scaling import fit_scaler
from cryptoml_pipeline.settings import (
    ModelConfig,
    PipelineSettings,
    TargetConfig,
    TrainingConfig,
    WalkForwardConfig,
)

START = pd.Timestamp("2024-01-01", tz="UTC")
END = START + pd.Timedelta(days=30)
SETTINGS = PipelineSettings(
    target=TargetConfig(kind="classes", horizon=3),
    walk_forward=WalkForwardConfig(
        train_days=15, test_days=7, step_days=7, validation_fraction=0.25, embargo_bars=2
    ),
    model=ModelConfig(
        d_model=8, nhead=2, num_layers=1, dim_feedforward=16, head_hidden=8, sequence_length=6
    ),
    training=TrainingConfig(
        batch_size=64, epochs=2, early_stopping_patience=1, t0=1, device="cpu", num_threads=1
    ),
)


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two symbols of hourly candles over 30 days (one hour missing in ETH) + simple features."""
    rng = np.random.default_rng(0)
    parts = []
    for symbol in ("BTC/USDT", "ETH/USDT"):
        ts = pd.date_range(START, END, freq="1h", inclusive="left")
        if symbol == "ETH/USDT":
            ts = ts.delete(500)
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
        parts.append(
            pd.DataFrame(
                {"timestamp": ts.astype("datetime64[ns, UTC]"), "symbol": symbol, "close": close}
            )
        )
    candles = pd.concat(parts, ignore_index=True)
    ret = np.log(candles["close"]).groupby(candles["symbol"]).diff()
    features = pd.DataFrame(
        {
            "timestamp": candles["timestamp"],
            "symbol": candles["symbol"],
            "ret_1": ret,
            "ret_4": ret.groupby(candles["symbol"]).rolling(4).sum().to_numpy(),
            "noise": rng.normal(size=len(candles)),
        }
    )
    return features, make_labels(candles, SETTINGS.target, SETTINGS.labels)


@pytest.fixture(scope="module")
def trained() -> tuple:
    features, labels = _frames()
    folds = walk_forward_folds(START, END, SETTINGS.walk_forward)
    fold = folds[-1]
    return features, labels, folds, fold, train_fold(features, labels, fold, SETTINGS, "1h")


def test_predictions_only_in_the_test_window(trained: tuple) -> None:
    features, labels, _, fold, fm = trained
    pred = predict_fold(fm, features, labels, fold, SETTINGS, "1h")
    assert list(pred.columns) == PREDICTION_COLUMNS
    assert len(pred) > 0
    assert (pred["timestamp"] >= fold.test_start).all() and (
        pred["timestamp"] < fold.test_end
    ).all()
    # every test row has a complete window here, so every test row is predicted
    masks = fold_row_masks(features["timestamp"], fold, horizon=3, timeframe="1h", embargo_bars=2)
    assert len(pred) == int(masks.test.sum())
    probs = pred[["p_m2", "p_m1", "p_0", "p_p1", "p_p2"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert ((pred["confidence"] >= 0) & (pred["confidence"] <= 1)).all()
    np.testing.assert_array_equal(
        pred["signal"], signal_from_expected(pred["expected_return"], pred["confidence"])
    )
    np.testing.assert_array_equal(pred["pred_class"], probs.argmax(axis=1))
    assert (pred["fold"] == fold.key).all()
    merged = pred.merge(labels, on=["timestamp", "symbol"], suffixes=("", "_true"))
    np.testing.assert_array_equal(merged["label"].to_numpy(), merged["label_true"].to_numpy())
    assert pred["label"].isna().sum() == 2 * 3  # last horizon rows of each symbol


def test_windows_across_a_gap_are_not_predicted(trained: tuple) -> None:
    features, labels, folds, _, _ = trained
    fold = folds[0]
    gap = START + pd.Timedelta(hours=500)  # ETH lacks this hour
    assert fold.test_start <= gap < fold.test_end
    fm = train_fold(features, labels, fold, SETTINGS, "1h")
    pred = predict_fold(fm, features, labels, fold, SETTINGS, "1h")
    masks = fold_row_masks(features["timestamp"], fold, horizon=3, timeframe="1h", embargo_bars=2)
    # ETH's first 5 rows after the gap lack 6 contiguous bars (sequence_length 6)
    assert len(pred) == int(masks.test.sum()) - 5
    eth = pred.loc[pred["symbol"] == "ETH/USDT", "timestamp"]
    after = (eth > gap) & (eth <= gap + pd.Timedelta(hours=5))
    assert not after.any()
    assert (eth == gap + pd.Timedelta(hours=6)).any()


def test_scaler_is_fit_on_fit_rows_only(trained: tuple) -> None:
    features, labels, _, fold, fm = trained
    masks = fold_row_masks(features["timestamp"], fold, horizon=3, timeframe="1h", embargo_bars=2)
    # the training rows are thinned to one every training.row_stride bars per symbol
    masks = strided(masks, features["timestamp"], "1h", SETTINGS.training.row_stride)
    expected = fit_scaler(features.loc[masks.fit, fm.feature_cols].to_numpy())
    np.testing.assert_array_equal(fm.scaler.mean, expected.mean)
    poisoned = features.copy()
    outside = ~masks.fit
    poisoned.loc[outside, ["ret_1", "ret_4", "noise"]] = 1e6  # val + test + purged rows huge
    fm2 = train_fold(poisoned, labels, fold, SETTINGS, "1h")
    np.testing.assert_array_equal(fm2.scaler.mean, fm.scaler.mean)
    np.testing.assert_array_equal(fm2.scaler.std, fm.scaler.std)


def test_manifest_is_complete_and_json(trained: tuple) -> None:
    _, _, _, fold, fm = trained
    m = fm.manifest
    json.dumps(m, allow_nan=False)
    assert m["fold"]["key"] == fold.key
    assert m["fold"]["test_start"] == fold.test_start.isoformat()
    assert m["feature_cols"] == ["ret_1", "ret_4", "noise"] == fm.feature_cols
    assert m["n_train_samples"] > 0 and m["n_val_samples"] > 0
    assert sum(m["class_distribution"]["train"].values()) == m["n_train_samples"]
    assert len(m["history"]) >= 1 and 1 <= m["best_epoch"] <= len(m["history"])
    assert m["device"] == "cpu" and m["train_seconds"] > 0
    assert m["model_config"]["d_model"] == 8
    assert m["train_samples_range"]["last"] < fold.val_start.isoformat()
    assert m["val_samples_range"]["last"] < fold.test_start.isoformat()


def test_saved_model_predicts_identically(trained: tuple, tmp_path: Path) -> None:
    features, labels, _, fold, fm = trained
    save_model(tmp_path / fold.key, fm.model, fm.manifest)
    model, manifest = load_model(tmp_path / fold.key)
    restored = fold_model_from_saved(model, manifest)
    assert restored.fold == fold
    a = predict_fold(fm, features, labels, fold, SETTINGS, "1h")
    b = predict_fold(restored, features, labels, fold, SETTINGS, "1h")
    pd.testing.assert_frame_equal(a, b)


def test_predicting_an_earlier_window_is_refused(trained: tuple) -> None:
    features, labels, folds, _, fm = trained
    with pytest.raises(InputError, match="before the end of the training window"):
        predict_fold(fm, features, labels, folds[0], SETTINGS, "1h")


def test_entropy_confidence_by_hand() -> None:
    conf = entropy_confidence(np.array([[1.0, 0, 0, 0, 0], [0.2] * 5, [0.5, 0.5, 0, 0, 0]]))
    np.testing.assert_allclose(conf, [1.0, 0.0, 1 - np.log(2) / np.log(5)], atol=1e-12)


def test_a_regression_head_learns_the_forward_return_and_round_trips(tmp_path: Path) -> None:
    """``model.head: regression``: one output trained on the forward return (in units of the
    strong threshold); its estimate is the expected return, no class probabilities; the saved
    model predicts identically; training targets are the aligned forward returns."""
    from cryptoml_pipeline.modeling.models import ZOO

    settings = SETTINGS.model_copy(
        update={"model": SETTINGS.model.model_copy(update={"head": "regression"})}
    )
    features, labels = _frames()
    fold = walk_forward_folds(START, END, settings.walk_forward)[-1]
    fm = train_fold(features, labels, fold, settings, "1h")
    assert fm.model.n_classes == 1 and fm.manifest["head"] == "regression"
    assert fm.manifest["n_classes"] == 1
    pred = predict_fold(fm, features, labels, fold, settings, "1h")
    assert list(pred.columns) == PREDICTION_COLUMNS and len(pred)
    assert np.isfinite(pred["expected_return"]).all()
    assert pred[["p_m2", "p_m1", "p_0", "p_p1", "p_p2"]].isna().all().all()
    strong = settings.labels.strong_threshold
    np.testing.assert_allclose(
        pred["confidence"], np.clip(pred["expected_return"].abs() / strong, 0, 1), atol=1e-12
    )
    # the estimate varies (a constant output would mean the head never trained)
    assert pred["expected_return"].std() > 0
    zoo = ZOO["transformer"]
    zoo.save(zoo.fitted(fm), tmp_path / "m")
    again = predict_fold(zoo.load(tmp_path / "m").model, features, labels, fold, settings, "1h")
    pd.testing.assert_frame_equal(pred, again)
    # the training dataset's targets are the forward returns / strong threshold of its rows
    from cryptoml_pipeline.modeling.datasets import build_dataset
    from cryptoml_pipeline.modeling.fold_training import fold_masks, regression_target

    _, returns = regression_target(settings, labels)
    masks = fold_masks(features, fold, settings, "1h")
    ds = build_dataset(features, labels, fm.feature_cols, masks.fit, fm.scaler, 6, returns=returns)
    _, y = ds[0]
    assert y.dtype.is_floating_point
    expected = labels["forward_return"].to_numpy()[ds.rows[0]] / strong
    assert float(y) == pytest.approx(expected, rel=1e-6)
