"""LightGBM baseline: causal lags, learns a planted signal, fold guards, safe persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.folds import walk_forward_folds
from cryptoml_pipeline.modeling.gbm import (
    design_matrix,
    load_gbm,
    predict_gbm_fold,
    save_gbm,
    train_gbm_fold,
)
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.modeling.persistence import ModelChecksumError
from cryptoml_pipeline.modeling.predictions import PREDICTION_COLUMNS
from cryptoml_pipeline.settings import (
    GbmConfig,
    PipelineSettings,
    TargetConfig,
    WalkForwardConfig,
)

START = pd.Timestamp("2024-01-01", tz="UTC")
END = START + pd.Timedelta(days=40)
SETTINGS = PipelineSettings(
    target=TargetConfig(kind="classes", horizon=3),
    walk_forward=WalkForwardConfig(
        train_days=25, test_days=7, step_days=7, validation_fraction=0.25, embargo_bars=2
    ),
    gbm=GbmConfig(n_estimators=60, min_child_samples=20, early_stopping_rounds=10, num_threads=1),
)


def _frames(informative: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    parts = []
    for symbol in ("BTC/USDT", "ETH/USDT"):
        ts = pd.date_range(START, END, freq="1h", inclusive="left")
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
        parts.append(
            pd.DataFrame(
                {"timestamp": ts.astype("datetime64[ns, UTC]"), "symbol": symbol, "close": close}
            )
        )
    candles = pd.concat(parts, ignore_index=True)
    labels = make_labels(candles, SETTINGS.target, SETTINGS.labels)
    features = pd.DataFrame(
        {
            "timestamp": candles["timestamp"],
            "symbol": candles["symbol"],
            "noise_a": rng.normal(size=len(candles)),
            "noise_b": rng.normal(size=len(candles)),
        }
    )
    if informative:  # a planted oracle column: tests the learner, not the market
        features["oracle"] = labels["label"].fillna(0).to_numpy() + rng.normal(0, 0.3, len(candles))
    return features, labels


@pytest.fixture(scope="module")
def fold():
    return walk_forward_folds(START, END, SETTINGS.walk_forward)[-1]


def test_lags_look_back_within_symbol_and_stop_at_gaps():
    ts = pd.to_datetime(
        ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 03:00", "2024-01-01 00:00"], utc=True
    )
    frame = pd.DataFrame(
        {"timestamp": ts, "symbol": ["A", "A", "A", "B"], "x": [1.0, 2.0, 3.0, 4.0]}
    )
    X, names = design_matrix(frame, ["x"], (1,), "1h")
    assert names == ["x", "x__lag1"]
    np.testing.assert_array_equal(X[:, 0], [1, 2, 3, 4])
    # row 1 sees row 0; row 2 follows a gap; row 3 is another symbol
    assert np.isnan(X[0, 1]) and X[1, 1] == 1.0 and np.isnan(X[2, 1]) and np.isnan(X[3, 1])


def test_learns_a_planted_signal_and_predicts_only_the_test_window(fold):
    features, labels = _frames(informative=True)
    model = train_gbm_fold(features, labels, fold, SETTINGS, "1h")
    preds = predict_gbm_fold(model, features, labels, fold, SETTINGS, "1h")
    assert list(preds.columns) == PREDICTION_COLUMNS
    assert preds["timestamp"].min() >= fold.test_start
    assert preds["timestamp"].max() < fold.test_end
    scored = preds.dropna(subset=["label"])
    accuracy = float((scored["pred_class"] == scored["label"] + 2).mean())
    assert accuracy > 0.8  # chance is ~0.2-0.4
    np.testing.assert_allclose(preds[["p_m2", "p_m1", "p_0", "p_p1", "p_p2"]].sum(axis=1), 1.0)
    assert preds["confidence"].between(0, 1).all()


def test_noise_features_give_no_edge(fold):
    features, labels = _frames(informative=False)
    model = train_gbm_fold(features, labels, fold, SETTINGS, "1h")
    preds = predict_gbm_fold(model, features, labels, fold, SETTINGS, "1h").dropna(subset=["label"])
    majority = preds["label"].value_counts(normalize=True).iloc[0]
    accuracy = float((preds["pred_class"] == preds["label"] + 2).mean())
    assert accuracy < majority + 0.1


def test_deterministic_and_round_trips_through_text_format(tmp_path, fold):
    features, labels = _frames(informative=True)
    a = train_gbm_fold(features, labels, fold, SETTINGS, "1h")
    b = train_gbm_fold(features, labels, fold, SETTINGS, "1h")
    pa = predict_gbm_fold(a, features, labels, fold, SETTINGS, "1h")
    pd.testing.assert_frame_equal(pa, predict_gbm_fold(b, features, labels, fold, SETTINGS, "1h"))
    save_gbm(tmp_path / "m", a)
    loaded = load_gbm(tmp_path / "m")
    pd.testing.assert_frame_equal(
        pa, predict_gbm_fold(loaded, features, labels, fold, SETTINGS, "1h")
    )
    path = tmp_path / "m" / "gbm.txt"
    path.write_text(path.read_text().replace("tree", "tre", 1))
    with pytest.raises(ModelChecksumError, match="checksum"):
        load_gbm(tmp_path / "m")


def test_refuses_a_test_window_before_its_own(fold):
    features, labels = _frames(informative=True)
    model = train_gbm_fold(features, labels, fold, SETTINGS, "1h")
    earlier = walk_forward_folds(START, END - pd.Timedelta(days=7), SETTINGS.walk_forward)[-1]
    with pytest.raises(InputError, match="before the end of the training window"):
        predict_gbm_fold(model, features, labels, earlier, SETTINGS, "1h")


REG = SETTINGS.model_copy(
    update={"target": TargetConfig(kind="vol_scaled_return", horizon=3, vol_window=168)}
)


def _regression_frames(informative: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    parts = []
    for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        ts = pd.date_range(START - pd.Timedelta(days=8), END, freq="1h", inclusive="left")
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": ts.astype("datetime64[ns, UTC]"),
                    "symbol": symbol,
                    "open": np.r_[100.0, close[:-1]],
                    "close": close,
                }
            )
        )
    candles = pd.concat(parts, ignore_index=True)
    labels = make_labels(candles, REG.target, REG.labels)
    features = candles[["timestamp", "symbol"]].copy()
    features["noise"] = rng.normal(size=len(candles))
    features["rv_168"] = labels["sigma"].to_numpy()  # the causal volatility feature
    if informative:
        features["oracle"] = labels["target"].fillna(0).to_numpy() + rng.normal(
            0, 1.0, len(candles)
        )
    return features, labels


def _rank_ic(preds: pd.DataFrame, labels: pd.DataFrame) -> float:
    merged = preds.merge(labels[["timestamp", "symbol", "realised_return"]])
    merged = merged.dropna(subset=["realised_return"])
    return float(merged["expected_return"].rank().corr(merged["realised_return"].rank()))


def test_regression_target_learns_expected_returns_pooled(fold):
    features, labels = _regression_frames(informative=True)
    model = train_gbm_fold(features, labels, fold, REG, "1h")
    assert model.manifest["n_classes"] is None
    assert model.manifest["train_symbols"] == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    preds = predict_gbm_fold(model, features, labels, fold, REG, "1h", traded=["ETH/USDT"])
    assert list(preds.columns) == PREDICTION_COLUMNS
    assert set(preds["symbol"]) == {"ETH/USDT"}  # pooled training, traded predictions
    assert preds[["p_m2", "p_p2"]].isna().all().all()  # a regression has no probabilities
    assert _rank_ic(preds, labels) > 0.4
    # the expected return is a simple return over the horizon: of the realised one's scale
    ratio = preds["expected_return"].abs().median() / labels["realised_return"].abs().median()
    assert 0.05 < ratio < 3
    assert preds["confidence"].between(0, 1).all()
    strong = preds["confidence"] >= 0.5
    assert (preds.loc[strong, "signal"].abs() == 2).all()
    assert (np.sign(preds["signal"]) == np.sign(preds["expected_return"])).all()


def test_regression_on_noise_has_no_rank_ic(fold):
    features, labels = _regression_frames(informative=False)
    model = train_gbm_fold(features, labels, fold, REG, "1h")
    preds = predict_gbm_fold(model, features, labels, fold, REG, "1h")
    assert abs(_rank_ic(preds, labels)) < 0.15
