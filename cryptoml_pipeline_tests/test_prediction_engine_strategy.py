"""The prediction engine over the zoo: degraded members switched off, disagreement cuts size."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.evaluation.model_comparison import engine_predictions
from cryptoml_pipeline.modeling.predictions import PREDICTION_COLUMNS, signal_from_expected
from cryptoml_pipeline.settings import profile_settings

PROBS = ["p_m2", "p_m1", "p_0", "p_p1", "p_p2"]
N = 600


def _member(signal: np.ndarray, label: np.ndarray, ts) -> pd.DataFrame:
    probs = np.full((len(signal), 5), 0.05)
    probs[np.arange(len(signal)), signal + 2] = 0.8
    out = pd.DataFrame({"timestamp": ts, "symbol": "BTC/USDT", "fold": "f"})
    for j, c in enumerate(PROBS):
        out[c] = probs[:, j]
    out["pred_class"] = signal + 2
    # the prediction schema: an expected return with the class's sign; confidence 0.5 makes the
    # derived signal strong (|signal| = 2), i.e. the class itself
    out["expected_return"] = 0.01 * signal
    out["confidence"] = 0.5
    out["signal"] = signal_from_expected(out["expected_return"], out["confidence"])
    assert (out["signal"] == signal).all()
    out["label"] = label.astype(float)
    return out[PREDICTION_COLUMNS]


def _candles(ts) -> pd.DataFrame:
    close = 100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, len(ts))))
    return pd.DataFrame({"timestamp": ts, "symbol": "BTC/USDT", "close": close})


def test_a_degraded_member_is_switched_off_and_the_other_decides():
    rng = np.random.default_rng(0)
    ts = pd.date_range("2025-01-01", periods=N, freq="1h", tz="UTC")
    label = rng.choice([-2, 2], size=N)
    # transformer: right for the first 300 bars, then always wrong
    t_sig = np.where(np.arange(N) < 300, label, -label)
    # gbm: right 60 % of the time throughout
    g_sig = np.where(rng.random(N) < 0.6, label, -label)
    preds = {"transformer": _member(t_sig, label, ts), "gbm": _member(g_sig, label, ts)}
    out, info = engine_predictions(preds, _candles(ts), profile_settings("demo"), "1h")
    assert info["available"] and set(info["members"]) == {"transformer", "gbm"}
    late = (out["timestamp"] >= ts[300 + 60]).to_numpy()  # 50 wrong outcomes have matured
    # where gbm is on (it is itself switched off now and then by chance), the engine follows it;
    # where both are off, it holds
    on = late & (out["confidence"].to_numpy() > 0)
    assert on.sum() > 150
    assert (out["signal"].to_numpy()[on] == g_sig[on]).mean() > 0.97
    assert (out["signal"].to_numpy()[late & ~on] == 0).all()
    early = (out["timestamp"] >= ts[250]) & (out["timestamp"] < ts[300])
    # before the drop the transformer is trusted (higher regime accuracy): the engine takes its
    # side (where gbm disagrees, the disagreement cuts confidence and so |signal| to 1)
    side = np.sign(out.loc[early, "signal"].to_numpy())
    assert (side == np.sign(t_sig[early.to_numpy()])).mean() > 0.7


def test_disagreement_reduces_confidence():
    ts = pd.date_range("2025-01-01", periods=N, freq="1h", tz="UTC")
    label = np.where(np.arange(N) % 2 == 0, 2, -2)
    agree = {
        "transformer": _member(label, label, ts),
        "gbm": _member(label, label, ts),
    }
    disagree = {
        "transformer": _member(label, label, ts),
        "gbm": _member(-label, label, ts),
    }
    settings = profile_settings("demo")
    a, _ = engine_predictions(agree, _candles(ts), settings, "1h")
    d, _ = engine_predictions(disagree, _candles(ts), settings, "1h")
    assert d["confidence"].mean() < a["confidence"].mean()
    assert a["confidence"].iloc[:100].min() > 0


def test_needs_two_models_with_expected_returns():
    ts = pd.date_range("2025-01-01", periods=50, freq="1h", tz="UTC")
    label = np.full(50, 2)
    out, info = engine_predictions(
        {"transformer": _member(label, label, ts)}, _candles(ts), profile_settings("demo"), "1h"
    )
    assert out.empty and not info["available"] and "fewer than two" in info["reason"]
    # a regression model without probabilities counts (NaN probabilities, finite expected return)
    regression = _member(label, label, ts).assign(**dict.fromkeys(PROBS, np.nan))
    out, info = engine_predictions(
        {"transformer": _member(label, label, ts), "gbm": regression},
        _candles(ts),
        profile_settings("demo"),
        "1h",
    )
    assert info["available"] and len(out) == 50
    # a member without any finite expected return does not
    blank = regression.assign(expected_return=np.nan)
    _, info = engine_predictions(
        {"transformer": _member(label, label, ts), "gbm": blank},
        _candles(ts),
        profile_settings("demo"),
        "1h",
    )
    assert not info["available"]
