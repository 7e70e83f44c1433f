"""Labels: exact classes at the thresholds, NaN tail, per-symbol forward returns, input order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.labels import LABEL_COLUMNS, classify_returns, make_labels
from cryptoml_pipeline.modeling.predictions import class_to_signal, label_to_class
from cryptoml_pipeline.settings import LabelConfig, TargetConfig

# Powers of two: every return below is exactly representable, so boundaries are tested exactly.
CFG = LabelConfig(weak_threshold=0.25, strong_threshold=0.5)
H1 = TargetConfig(kind="classes", horizon=1)
H2 = TargetConfig(kind="classes", horizon=2)


def _candles(closes: dict[str, list[float]]) -> pd.DataFrame:
    frames = [
        pd.DataFrame(
            {
                "timestamp": pd.date_range("2024-01-01", periods=len(c), freq="h", tz="UTC"),
                "symbol": sym,
                "close": np.asarray(c, dtype=float),
            }
        )
        for sym, c in closes.items()
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize(
    ("ret", "expected"),
    [
        (0.75, 2.0),
        (0.5, 1.0),  # r == strong -> 1 (strong needs r > strong)
        (0.375, 1.0),
        (0.25, 0.0),  # r == weak -> 0
        (0.0, 0.0),
        (-0.125, 0.0),
        (-0.25, -1.0),  # r == -weak -> -1 (hold needs r > -weak)
        (-0.375, -1.0),
        (-0.5, -2.0),  # r == -strong -> -2
        (-0.75, -2.0),
    ],
)
def test_label_classes_at_boundaries(ret: float, expected: float) -> None:
    labels = make_labels(_candles({"X": [4.0, 4.0 * (1 + ret)]}), H1, CFG)
    assert labels["forward_return"].iloc[0] == ret
    assert labels["label"].iloc[0] == expected
    assert np.isnan(labels["label"].iloc[1])


def test_forward_return_horizon_and_nan_tail() -> None:
    closes = [100.0, 110.0, 121.0, 99.0, 105.0, 130.0]
    out = make_labels(_candles({"BTC/USDT": closes}), H2)
    expected = [121.0 / 100 - 1, 99.0 / 110 - 1, 105.0 / 121 - 1, 130.0 / 99 - 1]
    np.testing.assert_allclose(out["forward_return"].to_numpy()[:4], expected, rtol=1e-15)
    assert out["forward_return"].iloc[-2:].isna().all()
    assert out["label"].iloc[-2:].isna().all()
    assert out["label"].tolist()[:4] == [2.0, -2.0, -2.0, 2.0]


def test_labels_do_not_leak_across_symbols_and_keep_input_order() -> None:
    candles = _candles({"A": [1.0, 2.0, 3.0, 4.0], "B": [10.0, 10.0, 10.0]})
    shuffled = candles.sample(frac=1.0, random_state=3)
    out = make_labels(shuffled, H2)
    assert isinstance(out.index, pd.RangeIndex)
    assert list(out.columns) == list(LABEL_COLUMNS)
    assert out["symbol"].tolist() == shuffled["symbol"].tolist()
    assert (out["timestamp"].to_numpy() == shuffled["timestamp"].to_numpy()).all()
    by_key = out.set_index(["symbol", "timestamp"])["forward_return"]
    t = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC")
    assert by_key[("A", t[0])] == 2.0
    assert by_key[("A", t[1])] == 1.0
    assert np.isnan(by_key[("A", t[2])])  # A's last 2 rows: NaN, never B's closes
    assert np.isnan(by_key[("A", t[3])])
    assert by_key[("B", t[0])] == 0.0
    assert np.isnan(by_key[("B", t[1])])
    assert out["forward_return"].dtype == np.float64
    assert out["label"].dtype == np.float64
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_gap_leaves_the_row_unlabelled() -> None:
    ts = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 05:00"], utc=True)
    candles = pd.DataFrame({"timestamp": ts, "symbol": "A", "close": [1.0, 2.0, 4.0]})
    out = make_labels(candles, H1)
    assert out["forward_return"].iloc[0] == 1.0
    assert np.isnan(out["forward_return"].iloc[1])  # 01:00 -> 05:00 crosses a gap


def test_classification_matches_spec_if_chain() -> None:
    rng = np.random.default_rng(0)
    r = rng.normal(0, 0.01, 5000)

    def spec(x: float) -> int:
        if x > 0.015:
            return 2
        if x > 0.005:
            return 1
        if x > -0.005:
            return 0
        if x > -0.015:
            return -1
        return -2

    got = classify_returns(r, weak_threshold=0.005, strong_threshold=0.015)
    assert got.tolist() == [float(spec(x)) for x in r]
    assert set(np.unique(got)) == {-2.0, -1.0, 0.0, 1.0, 2.0}


def test_class_mapping_round_trip() -> None:
    labels = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    cls = label_to_class(labels)
    assert cls.dtype == np.int64
    assert cls.tolist() == [0, 1, 2, 3, 4]
    assert class_to_signal(cls).tolist() == [-2, -1, 0, 1, 2]
    with pytest.raises(InputError):
        label_to_class(np.array([0.0, np.nan]))


def test_duplicate_rows_raise() -> None:
    candles = _candles({"A": [1.0, 2.0]})
    with pytest.raises(InputError, match="duplicate candle for symbol A"):
        make_labels(pd.concat([candles, candles.iloc[[0]]], ignore_index=True), H1, CFG)


def test_no_label_across_a_data_gap() -> None:
    """A label never reaches further than h bars of calendar time (the purge relies on it)."""
    from cryptoml_pipeline.modeling.labels import make_labels as _make

    ts = pd.date_range("2024-01-01", periods=12, freq="h", tz="UTC").delete([6])  # 06:00 missing
    candles = pd.DataFrame({"timestamp": ts, "symbol": "X", "close": np.linspace(100, 110, 11)})
    out = _make(candles, H2, timeframe="1h")
    # rows at 04:00 and 05:00 would need 06:00/07:00 via the gap -> 05:00 has no label;
    # 04:00 -> 06:00 is missing too; 03:00 -> 05:00 fine
    by_ts = dict(zip(out["timestamp"], out["forward_return"], strict=True))
    assert np.isnan(by_ts[pd.Timestamp("2024-01-01 04:00", tz="UTC")])
    assert np.isnan(by_ts[pd.Timestamp("2024-01-01 05:00", tz="UTC")])
    assert np.isfinite(by_ts[pd.Timestamp("2024-01-01 03:00", tz="UTC")])
    assert np.isfinite(by_ts[pd.Timestamp("2024-01-01 07:00", tz="UTC")])
