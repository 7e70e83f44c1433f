"""Probability of backtest overfitting by CSCV: hand-checked cases, noise and a planted winner."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.experiments.pbo import default_n_partitions, pbo_cscv, sharpe

NOISE_SEEDS = range(40)
PLANTED_SEEDS = range(20)


def _noise(seed: int, t: int = 730, n: int = 10) -> np.ndarray:
    """Two years of daily returns of ``n`` skill-less configurations (1% daily volatility)."""
    return np.random.default_rng(seed).normal(0.0, 0.01, size=(t, n))


def test_mean_pbo_on_noise_is_near_one_half():
    pbos = [pbo_cscv(_noise(seed)).pbo for seed in NOISE_SEEDS]
    # observed: mean 0.579 over seeds 0-39 (0.534 over 0-19; 0.532 over 200 seeds)
    assert 0.35 <= float(np.mean(pbos)) <= 0.65


def test_planted_winner_has_low_pbo():
    below = 0
    for seed in PLANTED_SEEDS:
        perf = _noise(seed)
        perf[:, 3] += 0.0025  # daily Sharpe 0.25 (about 4.8 annualised) on one configuration
        result = pbo_cscv(perf)
        below += result.pbo < 0.1
    # observed: 20 of 20 (largest PBO 0.025)
    assert below >= 19


def test_hand_checked_two_configurations_two_blocks():
    # block 0 = rows 0-1, block 1 = rows 2-3. A: Sharpe +2.12 then -2.12; B: 0.71 in both.
    # IS block 0 picks A, whose OOS (-2.12) is the worst; IS block 1 picks B, worst OOS too.
    perf = np.array([[1.0, 0.0], [2.0, 1.0], [-2.0, 0.0], [-1.0, 1.0]])
    result = pbo_cscv(perf, n_partitions=2)
    assert result.n_combinations == 2 and result.n_partitions == 2
    assert result.n_configurations == 2 and result.n_observations == 4
    assert result.pbo == 1.0
    np.testing.assert_allclose(result.logits, [math.log(0.5)] * 2)  # omega = 1/3
    assert result.prob_oos_loss == 0.5  # A loses OOS, B does not
    np.testing.assert_allclose(result.is_metric, [1.5 / math.sqrt(0.5), 0.5 / math.sqrt(0.5)])


def test_dominant_configuration_gives_pbo_zero_and_top_logits():
    perf = _noise(1, t=64, n=5)
    perf[:, 2] += 0.05
    result = pbo_cscv(perf, n_partitions=8)
    assert result.n_combinations == math.comb(8, 4) == 70
    assert result.pbo == 0.0
    np.testing.assert_allclose(result.logits, math.log(5 / 1))  # omega = 5/6
    assert result.prob_oos_loss == 0.0


def test_default_partitions_shrink_for_short_samples():
    assert default_n_partitions(1000) == 16
    assert default_n_partitions(32) == 16
    assert default_n_partitions(31) == 14
    assert default_n_partitions(21) == 10
    assert default_n_partitions(5) == 2
    assert default_n_partitions(3) == 0
    result = pbo_cscv(_noise(0, t=21, n=3))
    assert result.n_partitions == 10 and result.n_observations == 20
    assert result.n_combinations == math.comb(10, 5)


def test_remainder_rows_at_the_start_are_dropped():
    perf = _noise(2, t=67, n=4)  # 16 blocks of 4 rows, 3 remainder rows
    changed = perf.copy()
    changed[:3] = 5.0
    a, b = pbo_cscv(perf), pbo_cscv(changed)
    assert a.n_observations == 64
    np.testing.assert_array_equal(a.logits, b.logits)


def test_nan_rows_are_dropped_and_dataframes_accepted():
    perf = _noise(3, t=40, n=4)
    with_nan = np.insert(perf, 7, [np.nan, 0.1, 0.2, 0.3], axis=0)
    frame = pd.DataFrame(with_nan, columns=list("abcd"))
    np.testing.assert_array_equal(pbo_cscv(frame).logits, pbo_cscv(perf).logits)


def test_fast_sharpe_path_matches_a_generic_metric():
    perf = _noise(4, t=80, n=6)
    perf[:, 0] = 0.001  # constant column: NaN Sharpe ranks last
    fast = pbo_cscv(perf, n_partitions=8)
    slow = pbo_cscv(perf, n_partitions=8, metric=lambda x: sharpe(x) * 1.0)
    np.testing.assert_allclose(fast.logits, slow.logits)
    np.testing.assert_allclose(fast.oos_metric, slow.oos_metric)
    assert fast.pbo == slow.pbo


def test_mean_metric_and_degradation_slope():
    perf = _noise(5, t=96, n=8)
    result = pbo_cscv(perf, n_partitions=6, metric=lambda x: x.mean(axis=0))
    assert 0.0 <= result.pbo <= 1.0 and result.n_combinations == 20
    # on noise the IS winner's OOS mean falls as its IS mean rises (complementary halves)
    assert result.degradation_slope is not None and result.degradation_slope < 0
    assert set(result.summary()) >= {"pbo", "n_partitions", "n_combinations", "prob_oos_loss"}


@pytest.mark.parametrize(
    ("perf", "kw", "message"),
    [
        (np.zeros((40, 1)), {}, "at least 2 configurations"),
        (np.zeros(40), {}, "2-D"),
        (np.ones((40, 3)), {"n_partitions": 5}, "even number"),
        (np.ones((40, 3)), {"n_partitions": 0}, "even number"),
        (np.ones((30, 3)), {"n_partitions": 16}, ">= 32 complete rows"),
        (np.ones((3, 3)), {}, "even number of partitions"),
    ],
)
def test_bad_input_raises_input_error(perf, kw, message):
    with pytest.raises(InputError, match=message):
        pbo_cscv(perf, **kw)
