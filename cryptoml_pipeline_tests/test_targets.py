"""The forecast targets on hand-checkable frames: the vol-scaled return from the next open, the
triple-barrier labels and weights, gaps, and the purge reach that follows the target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features.technical import rolling_volatility
from cryptoml_pipeline.modeling.labels import make_labels, triple_barrier
from cryptoml_pipeline.settings import PipelineSettings, TargetConfig


def _frame(opens: list[float], *, symbol: str = "A", start: str = "2024-01-01") -> pd.DataFrame:
    o = np.asarray(opens, dtype=float)
    c = np.r_[o[1:], o[-1]]  # close = next open
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=len(o), freq="h", tz="UTC"),
            "symbol": symbol,
            "open": o,
            "high": np.maximum(o, c) * 1.001,
            "low": np.minimum(o, c) * 0.999,
            "close": c,
        }
    )


def test_vol_scaled_target_starts_at_the_next_open() -> None:
    rng = np.random.default_rng(1)
    opens = list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60))))
    frame = _frame(opens)
    h, w = 3, 5
    out = make_labels(frame, TargetConfig(kind="vol_scaled_return", horizon=h, vol_window=w))
    t = 20
    realised = opens[t + 1 + h] / opens[t + 1] - 1.0
    assert out["realised_return"].iloc[t] == pytest.approx(realised, rel=1e-12)
    sigma = rolling_volatility(frame["close"].to_numpy(), w).iloc[t]  # closes up to t only
    assert out["sigma"].iloc[t] == pytest.approx(sigma, rel=1e-12)
    assert out["target"].iloc[t] == pytest.approx(np.log1p(realised) / (sigma * np.sqrt(h)))
    # the last h + 1 rows have no target (they would need opens past the data)
    assert out["target"].iloc[-(h + 1) :].isna().all()
    assert np.isfinite(out["target"].iloc[-(h + 2)])
    assert (out["weight"].dropna() == 1.0).all()


def test_changing_the_future_moves_the_target_but_never_sigma() -> None:
    rng = np.random.default_rng(2)
    opens = list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 80))))
    cfg = TargetConfig(kind="vol_scaled_return", horizon=4, vol_window=10)
    base = make_labels(_frame(opens), cfg)
    shocked = opens[:50] + [o * 1.2 for o in opens[50:]]
    moved = make_labels(_frame(shocked), cfg)
    # sigma at t uses closes up to t (close[t] = open[t+1]): rows < 49 are unchanged
    np.testing.assert_array_equal(base["sigma"].iloc[:49], moved["sigma"].iloc[:49])
    assert not np.allclose(base["target"].iloc[45:49], moved["target"].iloc[45:49])


def test_a_gap_inside_the_window_leaves_no_target() -> None:
    frame = _frame([100.0 + i for i in range(30)]).drop(index=[15]).reset_index(drop=True)
    out = make_labels(frame, TargetConfig(kind="vol_scaled_return", horizon=2, vol_window=3))
    by_ts = dict(zip(out["timestamp"], out["realised_return"], strict=True))
    ts = pd.Timestamp("2024-01-01", tz="UTC")
    for hour in (12, 13, 14):  # their window [t+1, t+3] touches the missing 15:00 bar
        assert np.isnan(by_ts[ts + pd.Timedelta(hours=hour)])
    assert np.isfinite(by_ts[ts + pd.Timedelta(hours=11)])  # 12:00 .. 14:00: no gap
    assert np.isfinite(by_ts[ts + pd.Timedelta(hours=16)])


def test_triple_barrier_by_hand() -> None:
    entry = np.array([100.0, 100.0, 100.0, 100.0])
    highs = [np.array([100.5, 100.5, 103.0, 100.5]), np.array([102.5, 100.5, 100.5, 100.5])]
    lows = [np.array([99.5, 97.0, 97.0, 99.5]), np.array([99.5, 99.5, 99.5, 99.5])]
    exit_ = np.array([101.0, 99.0, 100.0, 100.2])
    width = np.full(4, 0.02)
    label, span = triple_barrier(entry, highs, lows, exit_, width)
    # row 0: upper touched in bar 2; row 1: lower in bar 1; row 2: both in bar 1 -> 0;
    # row 3: no touch -> vertical barrier
    assert label.tolist() == [1.0, -1.0, 0.0, 0.0]
    assert span.tolist() == [2.0, 1.0, 1.0, 2.0]


def test_triple_barrier_weights_are_average_uniqueness() -> None:
    rng = np.random.default_rng(3)
    opens = list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 200))))
    out = make_labels(_frame(opens), TargetConfig(kind="triple_barrier", horizon=6, vol_window=5))
    w = out["weight"].dropna()
    assert set(np.unique(out["target"].dropna())) <= {-1.0, 0.0, 1.0}
    # overlapping 1..6-bar spans: uniqueness strictly between 1/6 and 1
    assert (w > 1 / 6 - 1e-12).all() and (w <= 1.0).all() and w.mean() < 0.6


def test_classes_keep_the_spec_definition() -> None:
    opens = [100.0, 100.0, 103.0, 100.0, 99.0, 97.0]
    frame = _frame(opens)
    out = make_labels(frame, TargetConfig(kind="classes", horizon=1))
    close = frame["close"].to_numpy()
    assert out["forward_return"].iloc[0] == pytest.approx(close[1] / close[0] - 1)
    assert out["target"].iloc[0] == out["label"].iloc[0] == 2.0  # +3 % > 1.5 %


def test_purge_reach_follows_the_target() -> None:
    assert TargetConfig(kind="classes", horizon=5).reach == 5
    assert TargetConfig(kind="vol_scaled_return", horizon=5).reach == 6
    assert TargetConfig(kind="triple_barrier", horizon=24).reach == 25
    with pytest.raises(ValueError, match="vol_window"):
        PipelineSettings(target=TargetConfig(vol_window=50))


def test_missing_columns_are_one_clear_error() -> None:
    frame = _frame([1.0, 2.0, 3.0]).drop(columns=["open"])
    with pytest.raises(InputError, match="open"):
        make_labels(frame, TargetConfig(kind="vol_scaled_return", horizon=1))
