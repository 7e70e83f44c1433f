"""A sweep's split trainings: the grid's Optuna search inside one (configuration, split) —
nested (validation rows never touch the split's test rows), its study shared through the storage
and resumed, its best trial's hyper-parameters used for the split's training — and a feature set
as the shared table without the families a configuration turns off."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.experiments.cpcv import test_mask, train_mask
from cryptoml_pipeline.experiments.grid import SearchDimension
from cryptoml_pipeline.experiments.optuna_storage import study_storage
from cryptoml_pipeline.experiments.sweep import (
    SweepData,
    combinatorial_splits,
    families_turned_off,
    feature_set_view,
    sweep_labels,
    train_split,
)
from cryptoml_pipeline.experiments.tuning import cpcv_validation_masks, tune_split
from cryptoml_pipeline.features import build_features, feature_columns
from cryptoml_pipeline.features.build import family_of_column
from cryptoml_pipeline.market.synthetic import synthetic_market
from cryptoml_pipeline.settings import apply_overrides, profile_settings

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


def test_a_feature_set_is_the_shared_table_without_the_families_turned_off(sweep):
    settings, data, labels = sweep
    no_temporal = apply_overrides(settings, {"features": {"temporal": {"enabled": False}}})
    off = families_turned_off(settings.features, no_temporal.features)
    assert off == ("temporal",)
    view = feature_set_view(data.features, off)
    dropped = set(data.features.columns) - set(view.columns)
    assert dropped and all(family_of_column(c) == "temporal" for c in dropped)
    assert not [c for c in feature_columns(view) if family_of_column(c) == "temporal"]
    pd.testing.assert_frame_equal(view, data.features[list(view.columns)])
    # the split's model trains on that feature set only
    preds = train_split(
        no_temporal, replace(data, features=view), labels, "wf-00", n_groups=4, k_test=2
    )
    assert len(preds)
    # a different window would need another feature table: refused with the reason
    other = apply_overrides(settings, {"features": {"rsi_period": 7}})
    with pytest.raises(InputError, match="rsi_period"):
        families_turned_off(settings.features, other.features)
