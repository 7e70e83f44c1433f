"""The synthetic market's planted reversal: defined as documented, causal, weak but detectable.

The feature is ``-z`` with ``z = clip(ret_24 / (rv_24 * sqrt(24)), -3, 3)`` computed from closes
up to bar ``t`` (the pipeline's own ``ret_24`` / ``rv_24`` functions); the target is the
pipeline's forward return ``log(open[t+7] / open[t+1])`` (6 bars, filled at the next open).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features import technical as ta
from cryptoml_pipeline.market import synthetic_market
from cryptoml_pipeline.market.synthetic import (
    DEFAULT_SIGNAL_STRENGTH,
    PLANTED_CLIP,
    PLANTED_WINDOW,
    _log_returns,
    planted_score,
)

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT"]
START, END = pd.Timestamp("2024-10-01", tz="UTC"), pd.Timestamp("2025-10-01", tz="UTC")
HORIZON = 6
WARMUP = 30


def _feature_and_target(candles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(-z, forward return)`` as (bars, symbols) arrays, warm-up and tail rows dropped."""
    feats, targets = [], []
    for _, g in candles.groupby("symbol", sort=True):
        close, open_ = g["close"].to_numpy(), g["open"].to_numpy()
        ret = ta.log_returns(close, PLANTED_WINDOW).to_numpy()
        vol = ta.rolling_volatility(close, PLANTED_WINDOW).to_numpy()
        z = np.clip(ret / (vol * np.sqrt(PLANTED_WINDOW)), -PLANTED_CLIP, PLANTED_CLIP)
        fwd = np.full(len(open_), np.nan)
        fwd[: -(HORIZON + 1)] = np.log(open_[HORIZON + 1 :] / open_[1:-HORIZON])
        feats.append(-z)
        targets.append(fwd)
    rows = slice(WARMUP, -(HORIZON + 1))
    return np.array(feats).T[rows], np.array(targets).T[rows]


def _pooled_rank_ic(feature: np.ndarray, target: np.ndarray) -> float:
    return float(pd.Series(feature.ravel()).corr(pd.Series(target.ravel()), method="spearman"))


def _cross_sectional_rank_ic(feature: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-bar rank IC across symbols (NaN where every symbol ties, e.g. all clipped)."""
    rf = np.array(pd.DataFrame(feature).rank(axis=1))
    rt = np.array(pd.DataFrame(target).rank(axis=1))
    rf -= rf.mean(axis=1, keepdims=True)
    rt -= rt.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rf * rt).sum(axis=1) / np.sqrt((rf**2).sum(axis=1) * (rt**2).sum(axis=1))


@pytest.fixture(scope="module")
def planted():
    return synthetic_market(SYMBOLS, "1h", START, END, seed=7)


@pytest.fixture(scope="module")
def noise():
    return synthetic_market(SYMBOLS, "1h", START, END, seed=7, signal_strength=0.0)


def test_planted_score_is_the_pipelines_ret_over_rv(planted) -> None:
    for _, g in planted.candles.groupby("symbol"):
        close = g["close"].to_numpy()
        ret = ta.log_returns(close, PLANTED_WINDOW).to_numpy()
        vol = ta.rolling_volatility(close, PLANTED_WINDOW).to_numpy()
        expected = np.clip(ret / (vol * np.sqrt(PLANTED_WINDOW)), -PLANTED_CLIP, PLANTED_CLIP)
        score = planted_score(close)
        assert (score[:PLANTED_WINDOW] == 0).all()
        np.testing.assert_allclose(score[PLANTED_WINDOW:], expected[PLANTED_WINDOW:], atol=1e-9)
        assert np.abs(score).max() == PLANTED_CLIP  # the clip binds somewhere in a year
    # causal: truncating the closes leaves the earlier scores unchanged
    close = planted.candles.loc[planted.candles["symbol"] == "BTC/USDT", "close"].to_numpy()
    np.testing.assert_array_equal(planted_score(close[:500]), planted_score(close)[:500])


def test_drift_is_minus_strength_sigma_times_previous_score() -> None:
    rng = np.random.default_rng(0)
    n, k, strength = 400, 3, 0.2
    sigma = rng.uniform(0.004, 0.012, (n, k))
    base = sigma * rng.standard_normal((n, k))
    out = _log_returns(base, sigma, strength)
    for j in range(k):
        z = planted_score(np.exp(np.cumsum(out[:, j])))
        expected = np.concatenate([[0.0], -strength * sigma[1:, j] * z[:-1]])
        np.testing.assert_allclose(out[:, j] - base[:, j], expected, atol=1e-12)
        assert np.abs(expected).max() > 0
    np.testing.assert_array_equal(_log_returns(base, sigma, 0.0), base)


def test_no_signal_without_strength(noise) -> None:
    feature, target = _feature_and_target(noise.candles)
    assert abs(_pooled_rank_ic(feature, target)) < 0.02
    assert abs(np.nanmean(_cross_sectional_rank_ic(feature, target))) < 0.02


def test_default_strength_plants_a_weak_reversal(planted, noise) -> None:
    assert DEFAULT_SIGNAL_STRENGTH > 0
    feature, target = _feature_and_target(planted.candles)
    pooled = _pooled_rank_ic(feature, target)
    assert 0.05 < pooled < 0.25, pooled  # right sign (reversal), weak next to the noise
    per_bar = pd.Series(_cross_sectional_rank_ic(feature, target))
    daily = per_bar.groupby(np.arange(len(per_bar)) // 24).mean()
    t_stat = daily.mean() / daily.std() * np.sqrt(len(daily))
    assert daily.mean() > 0.02
    assert t_stat > 3, t_stat
    # same seed, same noise: the signal is what differs, the volatility barely moves
    vol = np.log(planted.candles["close"]).groupby(planted.candles["symbol"]).diff().std()
    vol0 = np.log(noise.candles["close"]).groupby(noise.candles["symbol"]).diff().std()
    assert abs(vol / vol0 - 1) < 0.05


def test_stronger_signal_gives_higher_ic() -> None:
    weak = synthetic_market(SYMBOLS, "1h", START, END, seed=3, signal_strength=0.03)
    strong = synthetic_market(SYMBOLS, "1h", START, END, seed=3, signal_strength=0.1)
    assert _pooled_rank_ic(*_feature_and_target(strong.candles)) > _pooled_rank_ic(
        *_feature_and_target(weak.candles)
    )


def test_invalid_strength() -> None:
    for bad in (-0.1, float("nan")):
        with pytest.raises(InputError, match="signal_strength"):
            synthetic_market(SYMBOLS, "1h", START, END, signal_strength=bad)
