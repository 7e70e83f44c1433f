"""The grid's Optuna search inside one (configuration, split): nested (validation rows never touch
the split's test rows), its study shared through the storage and resumed, its best trial's
hyper-parameters used for the split's training."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from cryptoml_pipeline.experiments.cpcv import test_mask, train_mask
from cryptoml_pipeline.experiments.grid import SearchDimension
from cryptoml_pipeline.experiments.optuna_storage import study_storage
from cryptoml_pipeline.experiments.sweep import (
    SweepData,
    combinatorial_splits,
    sweep_labels,
    train_split,
)
from cryptoml_pipeline.experiments.tuning import cpcv_validation_masks, tune_split
from cryptoml_pipeline.features import build_features
from cryptoml_pipeline.market.synthetic import synthetic_market
from cryptoml_pipeline.settings import profile_settings

START, END = pd.Timestamp("2025-03-01", tz="UTC"), pd.Timestamp("2025-07-01", tz="UTC")
SPACE = {"gbm.num_leaves": SearchDimension(path="gbm.num_leaves", low=3, high=15, type="int")}


@pytest.fixture(scope="module")
def sweep():
    settings = profile_settings("tiny")
    market = synthetic_market(["BTC/USDT"], "1h", START, END, seed=3)
    features = build_features(market.candles, market.funding, settings.features).table
    data = SweepData(market.candles, market.funding, features, ("BTC/USDT",), START, END, "1h")
    return settings, data, sweep_labels(settings, data)


def test_cpcv_validation_rows_are_training_rows_purged_from_fit_and_clear_of_test(sweep):
    settings, data, _ = sweep
    ts = data.features["timestamp"]
    for split in combinatorial_splits(settings, data, 4, 2):
        train = train_mask(split, ts)
        fit, val = cpcv_validation_masks(split, ts, train)
        assert val.any() and fit.any()
        assert not (val & test_mask(split, ts)).any()
        assert not (fit & val).any() and not ((fit | val) & ~train).any()
        # a fit row's label window never reaches the validation group
        reach = split.reach_bars * split.bar
        lo = ts[val].min()
        before = ts[fit] < lo
        assert (ts[fit][before] + reach < lo).all()


def test_tuned_split_uses_the_best_trial_and_a_rerun_resumes_the_study(sweep, tmp_path):
    settings, data, labels = sweep
    storage = study_storage(None, tmp_path)
    records = []

    def tuner(n_trials):
        def tune(s, fold, masks):
            tuned, record = tune_split(
                s,
                data.features,
                labels,
                fold,
                masks,
                "1h",
                space=SPACE,
                n_trials=n_trials,
                storage=storage,
                study_name="tiny.cfg.cpcv-00",
            )
            records.append((record, tuned.gbm.num_leaves))
            return tuned

        return tune

    preds = train_split(settings, data, labels, "cpcv-00", n_groups=4, k_test=2, tuner=tuner(3))
    record, leaves = records[-1]
    assert record["n_trials"] == 3 and record["resumed_trials"] == 0
    assert leaves == record["best_params"]["gbm.num_leaves"]
    assert 3 <= leaves <= 15
    assert len(preds) and np.isfinite(preds["expected_return"]).all()
    # a second worker / a rerun after a kill continues the same study: only the missing trials
    train_split(settings, data, labels, "cpcv-00", n_groups=4, k_test=2, tuner=tuner(4))
    record, _ = records[-1]
    assert record["resumed_trials"] == 3 and record["n_trials"] == 4
    study = optuna.load_study(study_name="tiny.cfg.cpcv-00", storage=storage)
    assert len(study.trials) == 4
