"""ModelPerformanceTracker, rolling metrics, PSI drift and the retrain policy."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.monitoring.drift import feature_psi, psi
from cryptoml_pipeline.monitoring.retrain_policy import retrain_decision
from cryptoml_pipeline.monitoring.tracker import ModelPerformanceTracker, rolling_metrics
from cryptoml_pipeline.settings import RetrainConfig

pytest_plugins = ["cryptoml_pipeline_tests.db_fixtures"]

T0 = pd.Timestamp("2025-06-01", tz="UTC")


def _preds(n: int, start: pd.Timestamp = T0, symbol: str = "BTC/USDT") -> pd.DataFrame:
    rng = np.random.default_rng(0)
    cls = rng.integers(0, 5, n)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=n, freq="1h"),
            "symbol": symbol,
            "pred_class": cls,
            "signal": cls - 2,
            "confidence": rng.uniform(0, 1, n),
            "p_m2": 0.2,
        }
    )


def _labels(preds: pd.DataFrame, correct: np.ndarray) -> pd.DataFrame:
    label = np.where(correct, preds["signal"], (preds["signal"] + 3) % 5 - 2)
    return pd.DataFrame(
        {
            "timestamp": preds["timestamp"],
            "symbol": preds["symbol"],
            "label": label.astype(float),
            "forward_return": label * 0.005,
        }
    )


def test_predictions_are_stored_once_and_outcomes_wait_for_the_horizon(engine) -> None:
    tr = ModelPerformanceTracker(engine)
    preds = _preds(10)
    assert tr.record_predictions("v1", preds, horizon=5, timeframe="1h") == 10
    assert tr.record_predictions("v1", preds, horizon=5, timeframe="1h") == 0  # idempotent
    assert tr.record_predictions("v2", preds.head(3), horizon=5, timeframe="1h") == 3
    labels = _labels(preds, np.ones(10, bool))
    # at T0 + 8h only bars with t + 6h <= now are due: t <= T0 + 2h -> 3 rows per model
    filled = tr.fill_outcomes(labels, now=(T0 + pd.Timedelta(hours=8)).to_pydatetime())
    assert filled == 6
    frame = tr.frame("v1")
    assert frame["outcome"].notna().sum() == 3 and (frame["correct"].dropna() == 1).all()
    assert frame["confidence"].between(0, 1).all() and frame["timestamp"].is_monotonic_increasing
    assert tr.fill_outcomes(labels, now=(T0 + pd.Timedelta(hours=8)).to_pydatetime()) == 0
    with pytest.raises(InputError, match="lack columns"):
        tr.record_predictions("v1", preds.drop(columns="confidence"), horizon=5, timeframe="1h")


def test_spec_accuracy_windows_and_should_retrain(engine) -> None:
    tr = ModelPerformanceTracker(engine)
    preds = _preds(200)
    correct = np.r_[np.arange(150) % 5 < 2, np.arange(50) % 5 < 1]  # 40 % then 20 %
    tr.record_predictions("v1", preds, horizon=5, timeframe="1h")
    tr.fill_outcomes(_labels(preds, correct), now=datetime(2030, 1, 1, tzinfo=UTC))
    recent, prior = tr.accuracy_windows("v1", 50, 150)
    assert recent == pytest.approx(0.2) and prior == pytest.approx(0.4)
    cfg = RetrainConfig()
    d = retrain_decision(
        acc_recent=recent,
        acc_prior=prior,
        max_psi=0.01,
        drifted_feature="rsi_14",
        model_age_days=1.0,
        config=cfg,
    )
    assert d.retrain and "accuracy degraded" in d.summary


def test_rolling_metrics_cover_the_spec_list() -> None:
    n = 60
    frame = pd.DataFrame(
        {
            "timestamp": pd.date_range(T0, periods=n, freq="1h"),
            "symbol": "A",
            "signal": np.tile([1, -1, 0], n // 3),
            "outcome": np.tile([1, 1, 0], n // 3),
            "forward_return": np.tile([0.01, 0.01, 0.0], n // 3),
            "correct": np.tile([1, 0, 1], n // 3),
            "confidence": 0.5,
        }
    )
    m = rolling_metrics(frame, window=30)
    last = m.iloc[-1]
    assert last["accuracy"] == pytest.approx(2 / 3)
    assert last["precision"] == pytest.approx(0.5)  # long right, short wrong
    assert last["recall"] == pytest.approx(0.5)  # outcomes up: half called long
    assert last["win_rate"] == pytest.approx(0.5)
    assert last["avg_return_per_trade"] == pytest.approx(0.0)
    assert last["signal_frequency"] == pytest.approx(2 / 3)
    assert last["max_drawdown"] == pytest.approx(0.01)
    assert np.isfinite(last["sharpe_ratio"]) or np.isnan(last["sharpe_ratio"])
    assert rolling_metrics(frame.assign(correct=np.nan)).empty


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, 5000)
    assert psi(ref, rng.normal(0, 1, 5000)) < 0.02
    assert psi(ref, rng.normal(1.5, 1, 5000)) > 0.5
    assert psi(ref, np.array([np.nan])) is None
    with pytest.raises(InputError):
        psi(ref, ref, bins=1)
    frame_a = pd.DataFrame({"x": ref, "y": ref})
    frame_b = pd.DataFrame({"x": ref, "y": ref + 2})
    out = feature_psi(frame_a, frame_b, ["x", "y"])
    assert list(out.index) == ["y", "x"] and out["x"] < 0.01
    with pytest.raises(InputError, match="missing"):
        feature_psi(frame_a, frame_b, ["z"])


@pytest.mark.parametrize(
    ("psi_value", "age", "expected"),
    [(0.05, 2.0, None), (0.4, 2.0, "feature drift"), (0.05, 45.0, "model age")],
)
def test_drift_and_age_trigger_retraining(psi_value, age, expected) -> None:
    d = retrain_decision(
        acc_recent=0.4,
        acc_prior=0.4,
        max_psi=psi_value,
        drifted_feature="rv_24",
        model_age_days=age,
        config=RetrainConfig(),
    )
    assert d.retrain == (expected is not None)
    if expected:
        assert expected in d.summary
    else:
        assert d.summary.startswith("healthy")
