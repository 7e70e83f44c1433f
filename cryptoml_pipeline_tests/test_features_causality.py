"""Causality: features recomputed on real data cut at T are identical at every row <= T, and the
same check catches a planted look-ahead feature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.features import LeakReport, compute_features, find_lookahead
from cryptoml_pipeline.settings import FeatureConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
START = pd.Timestamp("2024-05-01", tz="UTC")
ROWS = 1_500

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.DataFrame]:
    candles, funding = [], []
    for base in ("BTC", "ETH"):
        c = pd.read_parquet(DATA / "market" / f"{base}_USDT-1h.parquet")
        c = c[c["timestamp"] >= START].iloc[:ROWS]
        candles.append(c[["timestamp", "symbol", "open", "high", "low", "close", "volume"]])
        f = pd.read_parquet(DATA / "funding" / f"{base}_USDT_USDT-funding.parquet")
        f = f[(f["timestamp"] >= START - pd.Timedelta(days=40)) & (f["timestamp"] <= c.iloc[-1, 0])]
        funding.append(f.assign(symbol=f"{base}/USDT")[["timestamp", "symbol", "funding_rate"]])
    # interleave the symbols so the computation cannot rely on sorted input
    both = pd.concat(candles, ignore_index=True).sort_values("timestamp", kind="stable")
    return both.reset_index(drop=True), pd.concat(funding, ignore_index=True)


def _cut_times(candles: pd.DataFrame) -> list[pd.Timestamp]:
    ts = candles["timestamp"].sort_values().unique()
    first = pd.Timestamp(ts[0])
    return [
        first + pd.Timedelta(hours=200),  # inside the rv_168 / funding warm-up
        first + pd.Timedelta(hours=700, minutes=30),  # between two bars
        pd.Timestamp("2024-06-10 08:00", tz="UTC"),  # exactly on a funding settlement
        pd.Timestamp("2024-06-10 07:00", tz="UTC"),  # one bar before it
        pd.Timestamp(ts[-2]),
    ]


def _compute(candles: pd.DataFrame, funding: pd.DataFrame | None) -> pd.DataFrame:
    return compute_features(candles, funding, FeatureConfig())


def test_real_data_features_are_identical_on_truncated_data(market) -> None:
    candles, funding = market
    full = _compute(candles, funding)
    fcols = [c for c in full.columns if c not in ("timestamp", "symbol")]
    assert "funding_zscore_90" in fcols
    assert full["funding_zscore_90"].notna().mean() > 0.9  # funding block really exercised
    assert full["rv_168"].notna().sum() > 2 * (ROWS - 200)
    for cut in _cut_times(candles):
        keep = (candles["timestamp"] <= cut).to_numpy()
        cut_fund = funding[funding["timestamp"] <= cut]
        truncated = _compute(candles[keep], cut_fund)
        reference = full[keep].reset_index(drop=True)
        assert len(truncated) == keep.sum()
        for col in fcols:
            # exact: NaN == NaN, no tolerance
            np.testing.assert_array_equal(
                truncated[col].to_numpy(), reference[col].to_numpy(), err_msg=f"{col} @ {cut}"
            )
    assert find_lookahead(_compute, candles, funding, _cut_times(candles)) == []


def _with_planted_leak(candles: pd.DataFrame, funding: pd.DataFrame | None) -> pd.DataFrame:
    out = _compute(candles, funding)
    by_symbol = candles.groupby("symbol", sort=False)["close"]
    centred = by_symbol.transform(lambda s: s.rolling(5, center=True, min_periods=1).mean())
    out["leak_centred_mean"] = centred.to_numpy()
    return out


def test_planted_centred_window_is_detected(market) -> None:
    candles, funding = market
    cuts = _cut_times(candles)[1:3]
    reports = find_lookahead(_with_planted_leak, candles, funding, cuts)
    assert reports, "the centred rolling mean looks 2 bars ahead and must be reported"
    assert {r.column for r in reports} == {"leak_centred_mean"}
    for r in reports:
        assert isinstance(r, LeakReport)
        assert r.full_value != r.truncated_value
        # only the last 2 bars before each cut can see past it
        assert r.cut_time - pd.Timedelta(hours=2) < r.timestamp <= r.cut_time
        assert r.symbol in {"BTC/USDT", "ETH/USDT"}
        assert "leak_centred_mean" in r.describe()


def test_planted_forward_funding_alignment_is_detected(market) -> None:
    candles, funding = market

    def forward_funding(c: pd.DataFrame, f: pd.DataFrame | None) -> pd.DataFrame:
        out = _compute(c, f)
        assert f is not None
        left = c[["timestamp", "symbol"]].assign(_pos=np.arange(len(c))).sort_values("timestamp")
        merged = pd.merge_asof(
            left, f.sort_values("timestamp"), on="timestamp", by="symbol", direction="forward"
        )
        values = np.empty(len(c))
        values[merged["_pos"].to_numpy()] = merged["funding_rate"].to_numpy()
        out["leak_next_funding"] = values
        return out

    cut = pd.Timestamp("2024-06-10 07:00", tz="UTC")
    reports = find_lookahead(forward_funding, candles, funding, [cut])
    assert {r.column for r in reports} == {"leak_next_funding"}
    assert all(np.isnan(r.truncated_value) and np.isfinite(r.full_value) for r in reports)
