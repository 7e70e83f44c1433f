"""Optuna tuning is nested in the training window: the test window cannot change its result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.folds import walk_forward_folds
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.modeling.tuning import tune_gbm_fold
from cryptoml_pipeline.settings import (
    GbmConfig,
    PipelineSettings,
    TargetConfig,
    TrainingConfig,
    WalkForwardConfig,
)

START = pd.Timestamp("2024-01-01", tz="UTC")
END = START + pd.Timedelta(days=40)
SETTINGS = PipelineSettings(
    target=TargetConfig(kind="classes", horizon=3),
    walk_forward=WalkForwardConfig(
        train_days=25, test_days=7, step_days=7, validation_fraction=0.25, embargo_bars=2
    ),
    gbm=GbmConfig(n_estimators=30, min_child_samples=20, early_stopping_rounds=5, num_threads=1),
    training=TrainingConfig(row_stride=1),  # every hourly row: a 40-day toy market is small
)


def _frames():
    rng = np.random.default_rng(11)
    ts = pd.date_range(START, END, freq="1h", inclusive="left").astype("datetime64[ns, UTC]")
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
    candles = pd.DataFrame({"timestamp": ts, "symbol": "BTC/USDT", "close": close})
    labels = make_labels(candles, SETTINGS.target, SETTINGS.labels)
    features = pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "BTC/USDT",
            "oracle": labels["label"].fillna(0).to_numpy() + rng.normal(0, 0.8, len(ts)),
            "noise": rng.normal(size=len(ts)),
        }
    )
    return features, labels


def test_tuning_never_reads_the_test_window():
    features, labels = _frames()
    fold = walk_forward_folds(START, END, SETTINGS.walk_forward)[-1]
    a = tune_gbm_fold(features, labels, fold, SETTINGS, "1h", n_trials=3)
    assert a.n_trials == 3 and len(a.trials) == 3
    assert np.isfinite(a.best_value)
    assert a.best_value == min(t["value"] for t in a.trials)
    # scramble everything in the test window: identical study
    poisoned = features.copy()
    in_test = poisoned["timestamp"] >= fold.test_start
    poisoned.loc[in_test, ["oracle", "noise"]] = 1e6
    poisoned_labels = labels.copy()
    poisoned_labels.loc[in_test.to_numpy(), "label"] = 2.0
    b = tune_gbm_fold(poisoned, poisoned_labels, fold, SETTINGS, "1h", n_trials=3)
    assert a.best_params == b.best_params and a.best_value == b.best_value
    with pytest.raises(InputError):
        tune_gbm_fold(features, labels, fold, SETTINGS, "1h", n_trials=0)
