"""Temporal features at known timestamps; funding as-of alignment and z-scores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import DataValidationError
from cryptoml_pipeline.features.flow import funding_features, funding_settlement_features
from cryptoml_pipeline.features.temporal import session_indicators, temporal_features
from cryptoml_pipeline.settings import FeatureConfig, SessionBoundaries


def _ts(*values: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True))


def test_temporal_known_timestamps() -> None:
    ts = _ts("2024-01-01 00:00", "2024-01-06 18:00", "2024-01-03 08:00", "2024-01-07 07:00")
    out = temporal_features(ts, FeatureConfig())
    assert list(out) == [
        "hour_sin",
        "hour_cos",
        "dow_sin",
        "dow_cos",
        "session_asian",
        "session_european",
        "session_us",
    ]
    # 2024-01-01 00:00 is Monday, hour 0
    assert out["hour_sin"][0] == 0.0 and out["hour_cos"][0] == 1.0
    assert out["dow_sin"][0] == 0.0 and out["dow_cos"][0] == 1.0
    # Saturday (dow 5) 18:00
    assert out["hour_sin"][1] == pytest.approx(-1.0)
    assert out["hour_cos"][1] == pytest.approx(0.0, abs=1e-12)
    assert out["dow_sin"][1] == pytest.approx(math.sin(2 * math.pi * 5 / 7))
    assert out["dow_cos"][1] == pytest.approx(math.cos(2 * math.pi * 5 / 7))
    assert out["session_asian"].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert out["session_european"].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert out["session_us"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert all(v.dtype == np.float64 for v in out.values())


def test_session_boundaries_are_half_open_and_may_wrap() -> None:
    ts = _ts("2024-01-01 07:00", "2024-01-01 08:00", "2024-01-01 15:00", "2024-01-01 16:00")
    out = session_indicators(ts, SessionBoundaries())
    assert out["session_asian"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert out["session_european"].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert out["session_us"].tolist() == [0.0, 0.0, 0.0, 1.0]
    wrap = SessionBoundaries(asian=(22, 6), european=(6, 14), us=(14, 22))
    got = session_indicators(_ts("2024-01-01 23:00", "2024-01-01 05:00", "2024-01-01 22:00"), wrap)
    assert got["session_asian"].tolist() == [1.0, 1.0, 1.0]


def _funding() -> pd.DataFrame:
    """8h settlements; each symbol's first (2023-12-31 16:00) has no known interval."""
    stamps = ["2023-12-31 16:00", "2024-01-01 00:00", "2024-01-01 08:00"]
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime(stamps * 2, utc=True),
            "symbol": ["A"] * 3 + ["B"] * 3,
            "funding_rate": [0.0009, 0.0001, 0.0003, 0.0009, -0.0002, -0.0005],
        }
    )


def test_funding_as_of_alignment_is_backward_only() -> None:
    hours = pd.date_range("2023-12-31 23:00", "2024-01-01 09:00", freq="h", tz="UTC")
    ts = pd.Series(np.r_[hours, hours])
    sym = pd.Series(["A"] * len(hours) + ["B"] * len(hours))
    out = funding_features(ts, sym, _funding(), zscore_window=2)
    rate = pd.Series(out["funding_rate_per_hour"], index=pd.MultiIndex.from_arrays([sym, ts]))
    t = pd.Timestamp
    assert np.isnan(rate[("A", t("2023-12-31 23:00", tz="UTC"))])  # first settlement: no interval
    assert rate[("A", t("2024-01-01 00:00", tz="UTC"))] == 0.0001 / 8  # per hour of its 8h
    assert rate[("A", t("2024-01-01 07:00", tz="UTC"))] == 0.0001 / 8  # 08:00 not yet visible
    assert rate[("A", t("2024-01-01 08:00", tz="UTC"))] == 0.0003 / 8  # visible from 08:00 on
    assert rate[("A", t("2024-01-01 09:00", tz="UTC"))] == 0.0003 / 8
    assert rate[("B", t("2024-01-01 07:00", tz="UTC"))] == -0.0002 / 8  # never the other's
    assert rate[("B", t("2024-01-01 08:00", tz="UTC"))] == -0.0005 / 8
    z = pd.Series(out["funding_zscore_2"], index=rate.index)
    assert np.isnan(z[("A", t("2024-01-01 07:00", tz="UTC"))])  # only one settlement known
    assert z[("A", t("2024-01-01 08:00", tz="UTC"))] == pytest.approx(1 / math.sqrt(2))


def test_funding_rows_follow_input_order() -> None:
    ts = _ts("2024-01-01 09:00", "2024-01-01 01:00", "2024-01-01 09:00")
    out = funding_features(ts, pd.Series(["B", "A", "A"]), _funding(), zscore_window=2)
    assert out["funding_rate_per_hour"].tolist() == [-0.0005 / 8, 0.0001 / 8, 0.0003 / 8]


def test_funding_zscore_by_hand() -> None:
    rates = [1e-4, 2e-4, 3e-4, 10e-4, 1e-4, 1e-4, 1e-4]
    funding = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=len(rates), freq="8h", tz="UTC"),
            "symbol": "A",
            "funding_rate": rates,
        }
    )
    z = funding_settlement_features(funding, zscore_window=3)["funding_zscore_3"].to_numpy()
    assert np.isnan(z[:3]).all()  # the first settlement has no per-hour rate
    assert z[3] == pytest.approx(5.0 / math.sqrt(19.0))  # (2, 3, 10) / 8: mean 5, std sqrt(19)
    assert z[4] == pytest.approx((1.0 - 14.0 / 3.0) / np.std([3.0, 10.0, 1.0], ddof=1))
    assert z[6] == 0.0  # constant window: z = 0, not noise / noise


def test_duplicate_settlement_raises() -> None:
    funding = _funding()
    with pytest.raises(DataValidationError, match="duplicate funding settlement for A"):
        funding_settlement_features(
            pd.concat([funding, funding.iloc[[0]]], ignore_index=True), zscore_window=2
        )
