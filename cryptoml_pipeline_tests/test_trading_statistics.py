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


def test_shuffled_label_verdict_flags_an_edge() -> None:
    preds = pd.DataFrame({"signal": [1] * 400, "label": [1.0] * 300 + [-1.0] * 100})
    leak = shuffled_label_verdict({"psr": 0.5, "directional_accuracy": 0.75}, preds)
    assert leak["leak"] is True
    fine = shuffled_label_verdict({"psr": 0.5, "directional_accuracy": 0.51}, preds)
    assert fine["leak"] is False
    assert shuffled_label_verdict(None, None)["available"] is False


def test_shuffled_label_verdict_judges_class_accuracy_against_the_majority_class() -> None:
    rng = np.random.default_rng(3)
    label = rng.choice([-1.0, 0.0, 1.0], size=600, p=[0.3, 0.4, 0.3])
    # a model that learnt only the prior: always the majority class (0) -> no edge
    prior = pd.DataFrame({"signal": 0, "pred_class": 2, "label": label})
    fine = shuffled_label_verdict({"psr": None, "directional_accuracy": None}, prior)
    assert fine["leak"] is False and "majority" in fine["reason"]
    # a "shuffled" model that still hits 90 % of the classes has seen the labels somehow
    hit = np.where(rng.random(600) < 0.9, label + 2, 2).astype(int)
    leaky = pd.DataFrame({"signal": hit - 2, "pred_class": hit, "label": label})
    verdict = shuffled_label_verdict({"psr": 0.5, "directional_accuracy": None}, leaky)
    assert verdict["leak"] is True and "majority class rate" in verdict["reason"]
