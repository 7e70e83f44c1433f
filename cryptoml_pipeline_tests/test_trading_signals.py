"""Confidence, signals, the rule strategy and the predictions -> decisions join."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.predictions import (
    entropy_confidence,
    margin_confidence,
    probs_to_signal,
)
from cryptoml_pipeline.settings import RuleStrategyConfig
from cryptoml_pipeline.strategy.from_predictions import decisions_from_predictions
from cryptoml_pipeline.strategy.rules import infer_timeframe, rule_decisions, rule_signals


def test_entropy_confidence_uniform_is_zero_and_one_hot_is_one() -> None:
    probs = np.array([[0.2] * 5, [0.0, 0.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.0, 0.0, 0.0]])
    conf = entropy_confidence(probs)
    assert conf[0] == pytest.approx(0.0, abs=1e-12)
    assert conf[1] == pytest.approx(1.0, abs=1e-12)
    assert conf[2] == pytest.approx(1.0 - math.log(2) / math.log(5), rel=1e-12)


def test_entropy_confidence_accepts_one_row() -> None:
    assert entropy_confidence(np.array([0.0, 1.0, 0.0, 0.0, 0.0])).shape == (1,)


def test_margin_confidence_is_top1_minus_top2() -> None:
    probs = np.array([[0.1, 0.2, 0.3, 0.4, 0.0], [0.2] * 5])
    np.testing.assert_allclose(margin_confidence(probs), [0.1, 0.0], atol=1e-12)


def test_probs_to_signal_is_argmax_minus_two() -> None:
    probs = np.eye(5)
    np.testing.assert_array_equal(probs_to_signal(probs), [-2, -1, 0, 1, 2])
    assert probs_to_signal(probs).dtype == np.int64
    with pytest.raises(InputError):
        probs_to_signal(np.eye(3))


def _rule_features() -> pd.DataFrame:
    rows = [
        # rsi, cci, wt_cross -> expected
        (25.0, -150.0, 1.0),  # +1
        (25.0, -150.0, 0.0),  # no cross -> 0
        (25.0, -50.0, 1.0),  # cci not low enough -> 0
        (75.0, 150.0, -1.0),  # -1
        (75.0, 150.0, 1.0),  # wrong cross -> 0
        (np.nan, -150.0, 1.0),  # warm-up -> 0
        (35.0, -150.0, 1.0),  # rsi not oversold -> 0
    ]
    frame = pd.DataFrame(rows, columns=["rsi_14", "cci_20", "wt_cross"])
    frame.insert(0, "symbol", "BTC/USDT")
    frame.insert(0, "timestamp", pd.date_range("2024-01-01", periods=len(rows), freq="h", tz="UTC"))
    frame["rv_168"] = 0.01
    frame["atr_pct_14"] = 0.02
    return frame


def test_rule_signals_need_all_three_conditions() -> None:
    signal = rule_signals(_rule_features(), RuleStrategyConfig())
    assert signal.tolist() == [1, 0, 0, -1, 0, 0, 0]
    assert signal.dtype == np.int64


def test_rule_signals_missing_column_raises() -> None:
    with pytest.raises(InputError, match="cci_20"):
        rule_signals(_rule_features().drop(columns="cci_20"), RuleStrategyConfig())


def test_rule_decisions_scale_signal_and_annualise_volatility() -> None:
    dec = rule_decisions(_rule_features(), RuleStrategyConfig(), timeframe="1h")
    assert dec["signal"].tolist() == [2, 0, 0, -2, 0, 0, 0]
    assert (dec["confidence"] == 1.0).all()
    np.testing.assert_allclose(dec["volatility"], 0.01 * math.sqrt(24 * 365))
    np.testing.assert_allclose(dec["atr_pct"], 0.02)
    assert str(dec["timestamp"].dtype) == "datetime64[ns, UTC]"
    # without a timeframe the 1h spacing of the rows is inferred
    inferred = rule_decisions(_rule_features(), RuleStrategyConfig())
    np.testing.assert_allclose(inferred["volatility"], dec["volatility"])
    assert infer_timeframe(_rule_features().iloc[::4]) == "240m"


def test_decisions_from_predictions_joins_same_row() -> None:
    ts = pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC")
    features = pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "ETH/USDT",
            "rv_168": [0.01, 0.02, 0.03],
            "atr_pct_14": [0.1, 0.2, 0.3],
        }
    )
    predictions = pd.DataFrame(
        {
            "timestamp": [ts[1], ts[2] + pd.Timedelta(hours=1)],
            "symbol": "ETH/USDT",
            "signal": [2, -1],
            "confidence": [0.7, 0.4],
        }
    )
    dec = decisions_from_predictions(predictions, features, timeframe="4h")
    assert dec["signal"].tolist() == [2, -1]
    assert dec["volatility"].iloc[0] == pytest.approx(0.02 * math.sqrt(6 * 365))
    assert dec["atr_pct"].iloc[0] == pytest.approx(0.2)
    assert np.isnan(dec["volatility"].iloc[1])  # no feature row -> never entered on


def test_decisions_from_predictions_rejects_duplicates() -> None:
    ts = pd.Timestamp("2024-01-01", tz="UTC")
    features = pd.DataFrame(
        {"timestamp": [ts], "symbol": ["BTC/USDT"], "rv_168": [0.01], "atr_pct_14": [0.1]}
    )
    predictions = pd.DataFrame(
        {"timestamp": [ts, ts], "symbol": "BTC/USDT", "signal": [1, 1], "confidence": [0.5, 0.5]}
    )
    with pytest.raises(InputError, match="duplicate"):
        decisions_from_predictions(predictions, features, timeframe="1h")
