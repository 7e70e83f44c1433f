"""Stacking: inner folds stay inside the training window, OOF only, causal recent accuracy."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.ensemble import (
    inner_folds,
    meta_frame,
    out_of_fold_predictions,
    predict_meta,
    recent_accuracy,
    train_meta_learner,
)
from cryptoml_pipeline.modeling.folds import fold_row_masks, walk_forward_folds
from cryptoml_pipeline.modeling.gbm import predict_gbm_fold, train_gbm_fold
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.settings import (
    GbmConfig,
    PipelineSettings,
    TargetConfig,
    TrainingConfig,
    WalkForwardConfig,
)

START = pd.Timestamp("2024-01-01", tz="UTC")
END = START + pd.Timedelta(days=60)
H = 3
SETTINGS = PipelineSettings(
    target=TargetConfig(kind="classes", horizon=H),
    walk_forward=WalkForwardConfig(
        train_days=45, test_days=10, step_days=10, validation_fraction=0.2, embargo_bars=1
    ),
    gbm=GbmConfig(
        n_estimators=40,
        min_child_samples=20,
        early_stopping_rounds=10,
        num_threads=1,
        learning_rate=0.05,
        num_leaves=31,
        feature_fraction=0.8,
        bagging_fraction=0.8,
        lambda_l2=1.0,
    ),
)
META_TRAINING = TrainingConfig(
    batch_size=64,
    epochs=15,
    early_stopping_patience=5,
    t0=5,
    device="cpu",
    num_threads=1,
    learning_rate=3e-3,
    class_weights=None,
)


def _frames():
    rng = np.random.default_rng(5)
    parts = []
    for symbol in ("BTC/USDT", "ETH/USDT"):
        ts = pd.date_range(START, END, freq="1h", inclusive="left")
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
        parts.append(pd.DataFrame({"timestamp": ts, "symbol": symbol, "close": close}))
    candles = pd.concat(parts, ignore_index=True)
    candles["timestamp"] = candles["timestamp"].astype("datetime64[ns, UTC]")
    labels = make_labels(candles, SETTINGS.target, SETTINGS.labels)
    lab = labels["label"].fillna(0).to_numpy()
    features = pd.DataFrame(
        {
            "timestamp": candles["timestamp"],
            "symbol": candles["symbol"],
            # planted oracle for base model "good"; pure noise for "bad"
            "oracle": lab + rng.normal(0, 0.4, len(candles)),
            "noise": rng.normal(size=len(candles)),
            "volatility_24": np.abs(rng.normal(size=len(candles))),
        }
    )
    return features, labels


def _runner(features, labels, cols):
    sub = features[["timestamp", "symbol", *cols]]

    def run(fold):
        model = train_gbm_fold(sub, labels, fold, SETTINGS, "1h")
        return predict_gbm_fold(model, sub, labels, fold, SETTINGS, "1h")

    return run


@pytest.fixture(scope="module")
def fold():
    return walk_forward_folds(START, END, SETTINGS.walk_forward)[-1]


def test_inner_folds_tile_the_end_of_the_training_window(fold):
    inner = inner_folds(fold, n_splits=3, oof_fraction=0.4, validation_fraction=0.2, timeframe="1h")
    assert inner[-1].test_end == fold.test_start
    for a, b in itertools.pairwise(inner):
        assert a.test_end == b.test_start
    for f in inner:
        assert f.train_start == fold.train_start < f.val_start < f.test_start < f.test_end
        assert f.test_end <= fold.test_start  # never inside the fold's test window
    with pytest.raises(InputError):
        inner_folds(fold, n_splits=1, oof_fraction=0.4, validation_fraction=0.2, timeframe="1h")


def test_recent_accuracy_uses_only_matured_labels():
    rng = np.random.default_rng(1)
    ts = pd.date_range(START, periods=40, freq="1h")
    preds = pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "A",
            "signal": rng.integers(-2, 3, 40),
            "label": rng.integers(-2, 3, 40).astype(float),
        }
    )
    preds.loc[7, "label"] = np.nan
    got = recent_accuracy(preds, horizon=H, window=5, timeframe="1h")
    for i in range(40):
        known = [
            j
            for j in range(40)
            if ts[j] + pd.Timedelta(hours=H) <= ts[i] and not np.isnan(preds.loc[j, "label"])
        ][-5:]
        if not known:
            assert np.isnan(got[i])
        else:
            hits = [preds.loc[j, "signal"] == preds.loc[j, "label"] for j in known]
            assert got[i] == pytest.approx(np.mean(hits))


def test_stacking_trains_on_out_of_fold_rows_only_and_prefers_the_good_model(fold):
    features, labels = _frames()
    runners = {
        "good": _runner(features, labels, ["oracle"]),
        "bad": _runner(features, labels, ["noise"]),
    }
    inner = inner_folds(fold, n_splits=2, oof_fraction=0.4, validation_fraction=0.2, timeframe="1h")
    oof = out_of_fold_predictions(runners, inner)
    for preds in oof.values():
        # every OOF row lies in some inner test chunk, after that chunk's training rows
        assert preds["timestamp"].min() >= inner[0].test_start
        assert preds["timestamp"].max() < fold.test_start
    for f in inner:
        fit_and_val = fold_row_masks(
            features["timestamp"], f, horizon=H, timeframe="1h", embargo_bars=1
        )
        trained_until = features["timestamp"][fit_and_val.fit | fit_and_val.val].max()
        assert trained_until < f.test_start
    kwargs = dict(regime_column="volatility_24", horizon=H, accuracy_window=24, timeframe="1h")
    meta_train = meta_frame(oof, features, **kwargs)
    meta = train_meta_learner(meta_train, inner[-1].test_start, META_TRAINING)
    assert meta.manifest["n_fit_rows"] > 0 and meta.manifest["n_val_rows"] > 0
    test_preds = {name: run(fold) for name, run in runners.items()}
    stacked = predict_meta(meta, meta_frame(test_preds, features, **kwargs), fold.key)
    assert stacked["timestamp"].min() >= fold.test_start
    scored = stacked.dropna(subset=["label"])
    acc = float((scored["pred_class"] == scored["label"] + 2).mean())
    good = test_preds["good"].dropna(subset=["label"])
    bad = test_preds["bad"].dropna(subset=["label"])
    acc_good = float((good["pred_class"] == good["label"] + 2).mean())
    acc_bad = float((bad["pred_class"] == bad["label"] + 2).mean())
    assert acc > acc_bad + 0.2
    assert acc > acc_good - 0.1
