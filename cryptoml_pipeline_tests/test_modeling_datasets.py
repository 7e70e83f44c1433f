"""SequenceDataset windows: exact rows, never across symbols, gaps or NaN; masks and labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.datasets import build_dataset
from cryptoml_pipeline.modeling.scaling import Scaler

IDENTITY = Scaler(mean=np.zeros(2), std=np.ones(2))


def _frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Symbol A: 8 hourly rows with a missing hour after row 3; symbol B: 6 hourly rows."""
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    hours_a = [0, 1, 2, 3, 5, 6, 7, 8]  # hour 4 is missing
    ts = [t0 + pd.Timedelta(hours=h) for h in hours_a] + [
        t0 + pd.Timedelta(hours=h) for h in range(6)
    ]
    n = len(ts)
    features = pd.DataFrame(
        {
            "timestamp": pd.Series(ts).astype("datetime64[ns, UTC]"),
            "symbol": ["A"] * 8 + ["B"] * 6,
            "f1": np.arange(n, dtype=np.float64),
            "f2": np.arange(n, dtype=np.float64) * 10.0,
        }
    )
    labels = features[["timestamp", "symbol"]].copy()
    labels["label"] = np.tile([-2.0, -1.0, 0.0, 1.0, 2.0], 3)[:n]
    return features, labels


def test_windows_never_cross_symbols_or_gaps() -> None:
    features, labels = _frame()
    ds = build_dataset(features, labels, ["f1", "f2"], np.ones(14, bool), IDENTITY, 3)
    # A: rows 0-3 then a gap, rows 4-7; B: rows 8-13. Windows of 3 end at:
    np.testing.assert_array_equal(ds.rows, [2, 3, 6, 7, 10, 11, 12, 13])
    assert len(ds) == 8


def test_window_for_row_i_is_rows_i_minus_l_plus_1_to_i() -> None:
    features, labels = _frame()
    scaler = Scaler(mean=np.array([1.0, 0.0]), std=np.array([2.0, 10.0]))
    ds = build_dataset(features, labels, ["f1", "f2"], np.ones(14, bool), scaler, 3)
    for k, i in enumerate(ds.rows):
        x, y = ds[k]
        assert x.shape == (3, 2) and x.dtype.is_floating_point and str(x.dtype) == "torch.float32"
        expected = (features[["f1", "f2"]].to_numpy()[i - 2 : i + 1] - [1.0, 0.0]) / [2.0, 10.0]
        np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6)
        assert int(y) == int(labels["label"].iloc[i]) + 2
        assert str(y.dtype) == "torch.int64"


def test_nan_features_nan_labels_and_row_mask_exclude_samples() -> None:
    features, labels = _frame()
    features.loc[9, "f2"] = np.nan  # kills B windows containing row 9: ends 10, 11
    labels.loc[13, "label"] = np.nan
    mask = np.ones(14, bool)
    mask[2] = False
    ds = build_dataset(features, labels, ["f1", "f2"], mask, IDENTITY, 3)
    np.testing.assert_array_equal(ds.rows, [3, 6, 7, 12])


def test_unlabeled_inference_dataset() -> None:
    features, labels = _frame()
    labels["label"] = np.nan
    mask = np.zeros(14, bool)
    mask[11:] = True
    ds = build_dataset(features, None, ["f1", "f2"], mask, IDENTITY, 3)
    np.testing.assert_array_equal(ds.rows, [11, 12, 13])
    assert all(int(ds[k][1]) == -1 for k in range(len(ds)))
    assert len(build_dataset(features, labels, ["f1", "f2"], mask, IDENTITY, 3)) == 0


def test_timeframe_defines_contiguity() -> None:
    features, labels = _frame()
    ds = build_dataset(
        features, labels, ["f1", "f2"], np.ones(14, bool), IDENTITY, 2, timeframe="2h"
    )
    # hourly rows are never 2h apart, except A's 03:00 -> 05:00 across the missing hour
    np.testing.assert_array_equal(ds.rows, [4])


def test_misaligned_labels_are_rejected() -> None:
    features, labels = _frame()
    labels = labels.iloc[::-1].reset_index(drop=True)
    with pytest.raises(InputError, match="not aligned"):
        build_dataset(features, labels, ["f1", "f2"], np.ones(14, bool), IDENTITY, 3)
    with pytest.raises(InputError, match="row_mask"):
        build_dataset(features, None, ["f1", "f2"], np.ones(3, bool), IDENTITY, 3)
