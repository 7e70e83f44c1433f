"""Zoo helpers: metrics by hand, configurations counted for the DSR, stacking on earlier folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.evaluation.model_comparison import configurations_tried
from cryptoml_pipeline.modeling.folds import walk_forward_folds
from cryptoml_pipeline.modeling.predictions import PREDICTION_COLUMNS, signal_from_expected
from cryptoml_pipeline.modeling.zoo import classification_metrics, run_ensemble
from cryptoml_pipeline.settings import (
    EnsembleConfig,
    PipelineSettings,
    TargetConfig,
    TrainingConfig,
    WalkForwardConfig,
)

PROBS = ["p_m2", "p_m1", "p_0", "p_p1", "p_p2"]
CLASS_RETURNS = np.array([-0.02, -0.01, 0.0, 0.01, 0.02])  # a mean realised return per class


def _preds(labels, classes, probs=None):
    n = len(labels)
    out = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"),
            "symbol": "A",
            "fold": "f",
            "pred_class": classes,
            "label": labels,
        }
    )
    p = np.full((n, 5), 0.2) if probs is None else probs
    for j, c in enumerate(PROBS):
        out[c] = p[:, j]
    # the prediction schema: expected return from the probabilities, signal derived from it
    out["expected_return"] = p @ CLASS_RETURNS
    out["confidence"] = 0.5
    out["signal"] = signal_from_expected(out["expected_return"], out["confidence"])
    return out[PREDICTION_COLUMNS]


def test_classification_metrics_by_hand():
    # labels (class idx): 0, 2, 2, 4 ; predictions: 0, 2, 4, 4
    m = classification_metrics(_preds([-2.0, 0.0, 0.0, 2.0], [0, 2, 4, 4]))
    assert m["n"] == 4 and m["accuracy"] == pytest.approx(0.75)
    # F1: class0 1.0; class2 tp1 fn1 -> 2/3; class4 tp1 fp1 -> 2/3
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert m["log_loss"] == pytest.approx(-np.log(0.2))
    nan_probs = _preds([0.0], [2], probs=np.full((1, 5), np.nan))
    assert classification_metrics(nan_probs)["log_loss"] is None
    assert classification_metrics(_preds([np.nan], [2]))["accuracy"] is None


def test_configurations_tried_counts_models_times_trials():
    cards = {
        "transformer": [{"status": "trained", "n_trials": 1}],
        "gbm": [{"status": "trained", "n_trials": 4}, {"status": "trained", "n_trials": 4}],
        "lstm_cnn": [{"status": "unavailable"}],
    }
    assert configurations_tried(cards) == 1 + 4 + 1


def test_ensemble_trains_only_on_earlier_folds_predictions():
    start, end = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-04-01", tz="UTC")
    settings = PipelineSettings(
        target=TargetConfig(kind="classes", horizon=3),
        walk_forward=WalkForwardConfig(train_days=40, test_days=15, step_days=15),
        ensemble=EnsembleConfig(base_models=("a", "b"), regime_column=None),
        training=TrainingConfig(
            batch_size=64,
            epochs=40,
            early_stopping_patience=40,
            t0=40,
            learning_rate=1e-2,
            device="cpu",
            num_threads=1,
        ),
    )
    folds = walk_forward_folds(start, end, settings.walk_forward)
    rng = np.random.default_rng(0)
    ts = pd.date_range(folds[0].test_start, folds[-1].test_end, freq="1h", inclusive="left")
    labels = rng.integers(-2, 3, len(ts)).astype(float)
    base = {}
    for name, noise in (("a", 0.1), ("b", 3.0)):
        good = np.where(
            rng.random(len(ts)) < 1 - noise / 3, labels + 2, rng.integers(0, 5, len(ts))
        )
        probs = np.full((len(ts), 5), 0.05)
        probs[np.arange(len(ts)), good.astype(int)] = 0.8
        frame = _preds(labels, good.astype(int), probs)
        frame["timestamp"] = ts
        frame["fold"] = [next(f.key for f in folds if f.test_start <= t < f.test_end) for t in ts]
        base[name] = frame
    features = pd.DataFrame({"timestamp": ts, "symbol": "A"})
    preds, cards = run_ensemble(base, features, folds, settings, "1h")
    assert cards[0]["status"] == "unavailable"  # the first fold has no earlier predictions
    assert "first fold" in cards[0]["reason"]
    trained = [c for c in cards if c["status"] == "trained"]
    assert trained
    for fold in folds:
        part = preds[preds["fold"] == fold.key]
        if part.empty:
            continue
        assert part["timestamp"].min() >= fold.test_start
        assert part["timestamp"].max() < fold.test_end
    for fold, card in zip(folds, cards, strict=True):
        if card["status"] != "trained":
            continue
        # meta-training rows: earlier test windows inside this training window, purged
        history = ts[(ts >= fold.train_start) & (ts + pd.Timedelta(hours=3) < fold.test_start)]
        assert card["n_train_samples"] + card["n_val_samples"] == len(history)
    scored = preds.dropna(subset=["label"])
    accuracy = float((scored["pred_class"] == scored["label"] + 2).mean())
    assert accuracy > 0.6  # it leans on the good base model "a"
