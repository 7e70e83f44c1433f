"""Technical indicators on hand-checkable series and against direct loop implementations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.features.technical import (
    atr,
    cci,
    log_returns,
    rolling_volatility,
    rsi,
    true_range,
    wavetrend,
    wavetrend_cross,
    wilder_smooth,
)


def _random_ohlc(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    high = close * (1 + rng.uniform(0, 0.01, n))
    low = close * (1 - rng.uniform(0, 0.01, n))
    return high, low, close


def _ema_loop(x: list[float], span: int) -> list[float]:
    """Pine-style EMA seeded with the first valid value; NaN for the first span-1 valid rows."""
    alpha = 2.0 / (span + 1)
    out, prev, seen = [], math.nan, 0
    for v in x:
        if math.isnan(v):
            out.append(math.nan if seen < span else prev)
            continue
        prev = v if seen == 0 else alpha * v + (1 - alpha) * prev
        seen += 1
        out.append(prev if seen >= span else math.nan)
    return out


def test_rsi_rising_is_100_after_warmup() -> None:
    out = rsi(pd.Series(np.arange(1.0, 41.0)), 14)
    assert out.iloc[:14].isna().all()
    assert (out.iloc[14:] == 100.0).all()


def test_rsi_alternating_is_about_50_and_falling_is_0() -> None:
    alternating = pd.Series(100.0 + np.tile([0.0, 1.0], 50))
    out = rsi(alternating, 14)
    assert out.iloc[:14].isna().all()
    settled = out.iloc[40:]
    assert np.all(np.abs(settled - 50.0) < 2.5)  # oscillates ~51.9 / ~48.1 for period 14
    assert settled.mean() == pytest.approx(50.0, abs=0.1)
    assert rsi(pd.Series(np.arange(40.0, 0.0, -1.0)), 14).iloc[14:].eq(0.0).all()
    assert rsi(pd.Series(np.full(30, 5.0)), 14).iloc[14:].eq(50.0).all()


def test_rsi_matches_wilder_loop() -> None:
    _, _, close = _random_ohlc(120, seed=1)
    p = 14
    d = np.diff(close)
    g, lo = np.maximum(d, 0), np.maximum(-d, 0)
    ag, al = g[:p].mean(), lo[:p].mean()
    expected = [100 * ag / (ag + al)]
    for k in range(p, len(d)):
        ag = (ag * (p - 1) + g[k]) / p
        al = (al * (p - 1) + lo[k]) / p
        expected.append(100 * ag / (ag + al))
    np.testing.assert_allclose(rsi(close, p).to_numpy()[p:], expected, rtol=1e-12)


def test_cci_matches_loop_on_40_rows() -> None:
    high, low, close = _random_ohlc(40, seed=2)
    period = 20
    got = cci(pd.Series(high), pd.Series(low), pd.Series(close), period).to_numpy()
    tp = (high + low + close) / 3
    expected = np.full(40, np.nan)
    for i in range(period - 1, 40):
        window = tp[i - period + 1 : i + 1]
        sma = sum(window) / period
        mad = sum(abs(v - sma) for v in window) / period
        expected[i] = (tp[i] - sma) / (0.015 * mad)
    assert np.isnan(got[: period - 1]).all()
    np.testing.assert_allclose(got, expected, rtol=1e-10, equal_nan=True)


def test_cci_flat_window_is_zero() -> None:
    flat = np.full(25, 10.0)
    assert (cci(flat, flat, flat, 20).to_numpy()[19:] == 0.0).all()


def test_atr_by_hand_on_five_rows() -> None:
    high = pd.Series([10.0, 11.0, 12.0, 11.0, 14.0])
    low = pd.Series([8.0, 9.0, 9.0, 10.0, 11.0])
    close = pd.Series([9.0, 10.0, 11.0, 10.5, 13.0])
    # TR: 2 (h-l), max(2,2,0)=2, max(3,2,1)=3, max(1,0,1)=1, max(3,3.5,0.5)=3.5
    assert true_range(high, low, close).tolist() == [2.0, 2.0, 3.0, 1.0, 3.5]
    out = atr(high, low, close, 3).to_numpy()
    assert np.isnan(out[:2]).all()
    seed = 7 / 3
    second = (seed * 2 + 1.0) / 3
    third = (second * 2 + 3.5) / 3
    np.testing.assert_allclose(out[2:], [seed, second, third], rtol=1e-15)
    assert third == pytest.approx(65.5 / 27)


def test_wilder_smooth_seed_skips_leading_nan() -> None:
    out = wilder_smooth(np.array([np.nan, 1.0, 2.0, 3.0, 7.0]), 3).to_numpy()
    assert np.isnan(out[:3]).all()
    assert out[3] == 2.0
    assert out[4] == pytest.approx((2.0 * 2 + 7.0) / 3)


def test_wavetrend_matches_lazybear_loop() -> None:
    high, low, close = _random_ohlc(150, seed=3)
    n1, n2, sig = 10, 21, 4
    wt1, wt2 = wavetrend(high, low, close, n1, n2, sig)
    ap = ((high + low + close) / 3).tolist()
    esa = _ema_loop(ap, n1)
    d = _ema_loop([abs(a - e) for a, e in zip(ap, esa, strict=True)], n1)
    ci = [(a - e) / (0.015 * dd) for a, e, dd in zip(ap, esa, d, strict=True)]
    exp1 = np.array(_ema_loop(ci, n2))
    exp2 = pd.Series(exp1).rolling(sig).mean().to_numpy()
    first = 2 * n1 + n2 - 3
    assert np.isnan(wt1.to_numpy()[:first]).all() and not np.isnan(wt1.iloc[first])
    assert np.isnan(wt2.to_numpy()[: first + sig - 1]).all() and not np.isnan(wt2.iloc[first + 3])
    np.testing.assert_allclose(wt1.to_numpy(), exp1, rtol=1e-10, equal_nan=True)
    np.testing.assert_allclose(wt2.to_numpy(), exp2, rtol=1e-10, equal_nan=True)


def test_wavetrend_cross_by_hand() -> None:
    wt1 = np.array([np.nan, 1.0, 2.0, 3.0, 2.0, 1.0, 1.5])
    wt2 = np.array([np.nan, 2.0, 2.0, 2.0, 2.0, 2.0, 1.5])
    out = wavetrend_cross(wt1, wt2).to_numpy()
    assert np.isnan(out[:2]).all()
    assert out[2:].tolist() == [0.0, 1.0, 0.0, -1.0, 0.0]


def test_wavetrend_cross_sign_on_a_sine_wave() -> None:
    i = np.arange(300)
    phase = 2 * np.pi * i / 50
    close = 100 + 10 * np.sin(phase)
    wt1, wt2 = wavetrend(close + 0.5, close - 0.5, close)
    cross = wavetrend_cross(wt1, wt2).to_numpy()
    ups, downs = np.flatnonzero(cross == 1.0), np.flatnonzero(cross == -1.0)
    assert ups.size >= 4 and downs.size >= 4
    # upward crosses at the troughs (oversold, wt1 < 0), downward ones at the peaks
    assert (np.sin(phase[ups]) < -0.9).all() and (wt1.to_numpy()[ups] < 0).all()
    assert (np.sin(phase[downs]) > 0.9).all() and (wt1.to_numpy()[downs] > 0).all()
    signs = cross[np.sort(np.r_[ups, downs])]
    assert (signs[1:] != signs[:-1]).all()  # crosses alternate
    for k in ups:
        assert wt1.iloc[k] > wt2.iloc[k] and wt1.iloc[k - 1] <= wt2.iloc[k - 1]


def test_returns_and_volatility() -> None:
    close = pd.Series([100.0, 110.0, 99.0, 120.0, 118.0, 130.0])
    r4 = log_returns(close, 4).to_numpy()
    assert np.isnan(r4[:4]).all()
    assert r4[4] == pytest.approx(math.log(118 / 100))
    rv = rolling_volatility(close, 3).to_numpy()
    one = np.log(close / close.shift(1))
    expected = one.rolling(3).std().to_numpy()
    assert np.isnan(rv[:3]).all()
    np.testing.assert_allclose(rv, expected, rtol=1e-12, equal_nan=True)
