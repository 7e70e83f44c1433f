"""Sizer and ML risk rules: each a small pure function with hand numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.execution.sizing import MLPositionSizer
from cryptoml_pipeline.settings import IntegratorConfig
from cryptoml_pipeline.strategy.integrator import combine_signals, integrated_decisions
from cryptoml_pipeline.strategy.members import MLPredictionEngine, ModelMember, combine
from cryptoml_pipeline.strategy.risk import (
    atr_stop_distance,
    detect_regime,
    disagreement_multiplier,
    model_enabled,
    passes_confidence,
    regime_weights,
)


def test_spec_sizer_multipliers_and_cap() -> None:
    sizer = MLPositionSizer()
    # 10_000 x 2 % x (2/2) x 0.5 x min(1, 0.2/0.4) = 50
    assert sizer.calculate_position_size(2, 0.5, 10_000, 0.4) == pytest.approx(50.0)
    assert sizer.calculate_position_size(-1, 1.0, 10_000, 0.1) == pytest.approx(100.0)
    assert sizer.calculate_position_size(0, 1.0, 10_000, 0.1) == 0.0
    big = MLPositionSizer(base_position_size=0.5)
    assert big.calculate_position_size(2, 1.0, 10_000, 0.1) == pytest.approx(500.0)  # 5 % cap
    assert sizer.calculate_position_size(2, float("nan"), 10_000, 0.1) == 0.0


def test_atr_stop_distance_and_confidence_threshold() -> None:
    assert atr_stop_distance(0.01, 2.0) == pytest.approx(0.02)
    assert np.isnan(atr_stop_distance(0.6, 2.0))
    np.testing.assert_array_equal(
        passes_confidence(np.array([0.1, 0.3, np.nan, 0.0]), 0.2), [False, True, False, False]
    )


def test_disagreement_reduces_size() -> None:
    np.testing.assert_allclose(
        disagreement_multiplier(np.array([1.0, 0.5, 0.0]), 0.25), [1, 0.5, 0.25]
    )


def test_degraded_model_is_switched_off() -> None:
    assert model_enabled(0.5, 0.5, 0.9)
    assert not model_enabled(0.40, 0.50, 0.9)
    assert model_enabled(None, 0.5, 0.9)


def test_regime_detection_is_causal_and_labels_trend_and_range() -> None:
    n = 600
    idx = pd.RangeIndex(n)
    trend = pd.Series(100 * np.exp(np.linspace(0, 1, n)), index=idx)
    rng = np.random.default_rng(0)
    noise = pd.Series(
        100 * np.exp(rng.normal(0, 0.001, n).cumsum() * 0.0 + rng.normal(0, 0.01, n)), index=idx
    )
    assert (detect_regime(trend, window=48).iloc[100:] == "trend").mean() > 0.9
    assert (detect_regime(noise, window=48).iloc[100:] != "trend").mean() > 0.9
    full = detect_regime(noise, window=48)
    cut = detect_regime(noise.iloc[:300], window=48)
    pd.testing.assert_series_equal(full.iloc[:300], cut)  # no look-ahead


def test_regime_weights() -> None:
    table = {"trend": {"transformer": 2.0}}
    assert regime_weights("trend", {"transformer": 1.0, "lgbm": 1.0}, table) == {
        "transformer": 2.0,
        "lgbm": 1.0,
    }


def test_prediction_engine_confidences_follow_the_spec() -> None:
    p = np.array([[0.1, 0.1, 0.2, 0.5, 0.1]])
    ens = combine({"tree": p}, {"tree": "proba"}, {"tree": 1.0})
    assert ens.signal[0] == 1
    assert ens.confidence[0] == pytest.approx(0.3)  # top-two margin 0.5 - 0.2
    net = combine({"net": p}, {"net": "net"}, {"net": 1.0})
    h = -np.sum(p * np.log(p))
    assert net.confidence[0] == pytest.approx(1 - h / np.log(5))


def test_prediction_engine_ensemble_agreement_and_switch_off() -> None:
    up = np.array([[0.0, 0.0, 0.1, 0.1, 0.8]])
    down = np.array([[0.8, 0.1, 0.1, 0.0, 0.0]])
    engine = MLPredictionEngine(
        {
            "a": ModelMember(lambda x: up, "proba"),
            "b": ModelMember(lambda x: up, "proba"),
            "c": ModelMember(lambda x: down, "proba", weight=0.5),
        }
    )
    out = engine.generate_signal(np.zeros((1, 3)))
    assert out.signal[0] == 2
    assert out.agreement[0] == pytest.approx(2 / 2.5)
    assert set(out.individual) == {"a", "b", "c"}
    engine.set_enabled("a", False)
    engine.set_enabled("b", False)
    assert engine.generate_signal(np.zeros((1, 3))).signal[0] == -2


def test_integrator_three_cases() -> None:
    cfg = IntegratorConfig()
    out = combine_signals(
        np.array([1, 1, -1, 0]),
        0.5,
        np.array([1, -2, 2, 1]),
        np.array([0.3, 0.9, 0.5, 0.8]),
        cfg,
    )
    assert out["source"].tolist() == [
        "combined_agreement",
        "ml_override",
        "conflict_hold",
        "conflict_hold",  # 0.8 is not ABOVE 0.8
    ]
    assert out["direction"].tolist() == [1, -2, 0, 0]
    np.testing.assert_allclose(out["strength"], [0.8, 0.9, 0.1, 0.1])


def test_integrated_decisions_join_on_the_same_row() -> None:
    ts = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC")
    ml = pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "A",
            "signal": [1, 2, -1],
            "confidence": [0.2, 0.95, 0.3],
            "volatility": 0.5,
            "atr_pct": 0.01,
        }
    )
    rule = pd.DataFrame({"timestamp": ts[:2], "symbol": "A", "rule_signal": [1, -1]})
    out = integrated_decisions(ml, rule, IntegratorConfig())
    assert out["signal"].tolist() == [1, 2, 0]
    assert out["source"].tolist() == ["combined_agreement", "ml_override", "conflict_hold"]
