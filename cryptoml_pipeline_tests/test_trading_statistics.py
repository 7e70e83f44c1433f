"""PSR / DSR / bootstrap CIs, label shuffling and the shuffled-label verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.evaluation.controls import shuffled_label_verdict
from cryptoml_pipeline.evaluation.shuffle import shuffle_training_labels
from cryptoml_pipeline.evaluation.statistics import (
    bootstrap_intervals,
    deflated_sharpe_from_trials,
    expected_max_sharpe,
    probabilistic_sharpe,
)


def test_psr_is_high_for_a_clear_edge_and_half_for_none() -> None:
    rng = np.random.default_rng(0)
    edge = rng.normal(0.01, 0.01, 400)
    assert probabilistic_sharpe(edge) > 0.999
    centred = rng.normal(0, 0.01, 400)
    centred -= centred.mean()
    assert probabilistic_sharpe(centred) == pytest.approx(0.5, abs=1e-9)


def test_dsr_falls_with_the_number_of_trials() -> None:
    r = np.random.default_rng(1).normal(0.002, 0.01, 300)

    def dsr(n_trials: int) -> float:
        return deflated_sharpe_from_trials(r, None, n_trials)["dsr"]

    assert dsr(1) == pytest.approx(probabilistic_sharpe(r))
    assert dsr(100) < dsr(10) < dsr(1)
    assert expected_max_sharpe(1, 0.1) == 0.0


def test_bootstrap_interval_contains_the_point_estimate_and_is_seeded() -> None:
    r = np.random.default_rng(2).normal(0.001, 0.02, 200)
    a = bootstrap_intervals(r, samples=500, block=5, seed=3)
    b = bootstrap_intervals(r, samples=500, block=5, seed=3)
    assert a == b
    lo, hi = a["avg_daily_return"]
    assert lo < r.mean() < hi
    assert bootstrap_intervals(r[:5], samples=500, block=5, seed=3)["sharpe"] is None


def test_labels_are_permuted_only_inside_the_training_window() -> None:
    ts = pd.date_range("2024-01-01", periods=100, freq="1h", tz="UTC")
    labels = pd.DataFrame({"timestamp": ts, "symbol": "A", "label": np.arange(100) % 5 - 2.0})
    out = shuffle_training_labels(labels, ts[10], ts[60], seed=0)
    inside = (ts >= ts[10]) & (ts < ts[60])
    assert (out.loc[~inside, "label"] == labels.loc[~inside, "label"]).all()
    assert sorted(out.loc[inside, "label"]) == sorted(labels.loc[inside, "label"])
    assert (out.loc[inside, "label"] != labels.loc[inside, "label"]).any()


def _hourly(n: int) -> pd.DatetimeIndex:
    return pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")


def test_shuffled_label_verdict_flags_an_edge_beyond_its_own_sign_mix() -> None:
    rng = np.random.default_rng(4)
    label = rng.choice([-1.0, 1.0], size=960, p=[0.3, 0.7])  # a rising market: 70 % up
    # always long: 70 % directional accuracy is exactly what its sign mix earns by chance
    long_only = pd.DataFrame({"timestamp": _hourly(960), "signal": 1, "label": label})
    fine = shuffled_label_verdict(long_only, horizon=8, bars_per_day=24)
    assert fine["leak"] is False and fine["verdict"] == "no edge"
    assert fine["directional_accuracy"] == pytest.approx(0.7, abs=0.05)
    assert fine["directional_baseline"] == pytest.approx(fine["directional_accuracy"])
    # calls that follow the label 80 % of the time: an edge over any sign mix
    calls = np.where(rng.random(960) < 0.8, label, -label)
    leaky = long_only.assign(signal=calls)
    verdict = shuffled_label_verdict(leaky, horizon=8, bars_per_day=24)
    assert verdict["leak"] is True and verdict["verdict"] == "LEAK SUSPECTED"
    assert "own long/short mix" in verdict["reason"]
    assert shuffled_label_verdict(None, horizon=8, bars_per_day=24)["available"] is False


def test_shuffled_label_verdict_judges_class_accuracy_against_the_majority_class() -> None:
    rng = np.random.default_rng(3)
    label = rng.choice([-1.0, 0.0, 1.0], size=600, p=[0.3, 0.4, 0.3])
    # a model that learnt only the prior: always the majority class (0) -> no edge
    prior = pd.DataFrame({"timestamp": _hourly(600), "signal": 0, "pred_class": 2, "label": label})
    fine = shuffled_label_verdict(prior, horizon=8, bars_per_day=24)
    assert fine["leak"] is False and "majority" in fine["reason"]
    # a "shuffled" model that still hits 90 % of the classes has seen the labels somehow
    hit = np.where(rng.random(600) < 0.9, label + 2, 2).astype(int)
    leaky = prior.assign(signal=hit - 2, pred_class=hit)
    verdict = shuffled_label_verdict(leaky, horizon=8, bars_per_day=24)
    assert verdict["leak"] is True and "majority class rate" in verdict["reason"]
