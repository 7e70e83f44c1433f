"""Scaler: nan-aware fit on given rows only, float32 transform keeping NaN, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cryptoml_pipeline.modeling.scaling import Scaler, fit_scaler


def test_fit_is_nan_aware_and_hand_checkable() -> None:
    X = np.array([[1.0, np.nan, 7.0], [3.0, 2.0, 7.0], [5.0, 4.0, 7.0]])
    s = fit_scaler(X)
    np.testing.assert_allclose(s.mean, [3.0, 3.0, 7.0])
    np.testing.assert_allclose(s.std, [np.sqrt(8 / 3), 1.0, 1e-8])  # constant column -> floor


def test_transform_is_float32_and_keeps_nan() -> None:
    s = Scaler(mean=np.array([1.0, 2.0]), std=np.array([2.0, 4.0]))
    out = s.transform(np.array([[3.0, np.nan], [1.0, 10.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], 1.0)
    assert np.isnan(out[0, 1])
    np.testing.assert_allclose(out[1], [0.0, 2.0])


def test_scaler_sees_only_the_rows_it_is_given() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    train = np.arange(100) < 60
    before = fit_scaler(X[train])
    X[~train] = 1e9  # huge values in the test rows
    after = fit_scaler(X[train])
    np.testing.assert_array_equal(before.mean, after.mean)
    np.testing.assert_array_equal(before.std, after.std)
    assert np.abs(before.mean).max() < 1.0


def test_all_nan_column_and_wrong_width() -> None:
    s = fit_scaler(np.array([[np.nan, 1.0], [np.inf, 3.0]]))
    np.testing.assert_allclose(s.mean, [0.0, 2.0])
    np.testing.assert_allclose(s.std, [1.0, 1.0])
    with pytest.raises(ValueError, match="expected an"):
        s.transform(np.zeros((2, 3)))


def test_dict_round_trip_is_json_able() -> None:
    s = fit_scaler(np.array([[1.0, 2.0], [2.0, 5.0]]))
    back = Scaler.from_dict(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_array_equal(back.mean, s.mean)
    np.testing.assert_array_equal(back.std, s.std)
    with pytest.raises(ValueError):
        s.mean[0] = 3.0  # frozen arrays
