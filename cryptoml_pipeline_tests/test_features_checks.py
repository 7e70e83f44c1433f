"""The two feature checks: causality on several cut points (pure + the blocking Dagster check) and
warm-up sensitivity, each shown to catch a planted problem."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.defs.assets import features as feature_assets
from cryptoml_pipeline.defs.assets.run_settings import run_settings
from cryptoml_pipeline.defs.resources import MarketDataResource, PipelineResource
from cryptoml_pipeline.features import compute_features, find_lookahead, warmup_period
from cryptoml_pipeline.features.causality import find_warmup_sensitivity, sample_cut_times
from cryptoml_pipeline.settings import FeatureConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.DataFrame]:
    candles, funding = [], []
    for base in ("BTC", "ETH", "SOL"):
        c = pd.read_parquet(DATA / "market" / f"{base}_USDT-1h.parquet")
        candles.append(c[c["timestamp"] >= pd.Timestamp("2024-06-01", tz="UTC")].iloc[:1500])
        f = pd.read_parquet(DATA / "funding" / f"{base}_USDT_USDT-funding.parquet")
        funding.append(f.assign(symbol=f"{base}/USDT"))
    both = pd.concat(candles, ignore_index=True).sort_values("timestamp", kind="stable")
    fund = pd.concat(funding, ignore_index=True)
    fund = fund[(fund["timestamp"] >= "2024-05-01") & (fund["timestamp"] <= "2024-08-10")]
    return both.reset_index(drop=True), fund.reset_index(drop=True)


def _compute(c: pd.DataFrame, f: pd.DataFrame | None) -> pd.DataFrame:
    return compute_features(c, f, FeatureConfig())


def _centred_leak(c: pd.DataFrame, f: pd.DataFrame | None) -> pd.DataFrame:
    out = _compute(c, f)
    by_symbol = c.groupby("symbol", sort=False)["close"]
    out["leak_centred_mean"] = by_symbol.transform(
        lambda s: s.rolling(5, center=True, min_periods=1).mean()
    ).to_numpy()
    return out


def test_every_family_is_causal_at_sampled_cuts_and_a_leak_is_named(market) -> None:
    candles, funding = market
    cuts = sample_cut_times(candles["timestamp"], 4)
    assert len(cuts) == 5 and any(c.minute == 30 for c in cuts)  # one cut between two bars
    assert find_lookahead(_compute, candles, funding, cuts) == []
    reports = find_lookahead(_centred_leak, candles, funding, cuts[:2])
    assert {r.column for r in reports} == {"leak_centred_mean"}
    assert all(r.cut_time - pd.Timedelta(hours=2) < r.timestamp <= r.cut_time for r in reports)


def test_warmup_sensitivity_passes_declared_warmup_and_catches_a_short_one(market) -> None:
    candles, funding = market
    first = candles["timestamp"].min()
    starts = [first + pd.Timedelta(hours=97)]
    declared = warmup_period(FeatureConfig(), "1h")
    assert declared >= pd.Timedelta(hours=743)
    assert find_warmup_sensitivity(_compute, candles, funding, starts, declared) == []
    short = find_warmup_sensitivity(_compute, candles, funding, starts, pd.Timedelta(hours=60))
    columns = {r.column for r in short}
    assert {"rsi_14", "atr_pct_14", "wt1"} <= columns  # recursive smoothers still remember
    assert "ret_1" not in columns and "cci_20" not in columns  # finite windows do not
    assert all(r.timestamp >= starts[0] + pd.Timedelta(hours=60) for r in short)


def _materialize_check(monkeypatch, compute, candles, funding) -> dg.AssetCheckEvaluation:
    monkeypatch.setattr(feature_assets, "compute_features", compute)

    @dg.asset(name="ohlcv")
    def ohlcv_stub() -> pd.DataFrame:
        return candles

    @dg.asset(name="funding")
    def funding_stub() -> pd.DataFrame:
        return funding

    @dg.asset(name="dataset_info")
    def info_stub() -> dict:
        return {"timeframe": "1h", "symbols": sorted(candles["symbol"].unique())}

    checks = dg.materialize(
        [
            run_settings,
            ohlcv_stub,
            funding_stub,
            info_stub,
            feature_assets.feature_table,
            feature_assets.feature_causality,
        ],
        resources={
            "pipeline": PipelineResource(profile="demo"),
            "market": MarketDataResource(kind="synthetic"),  # no stored open interest
        },
        raise_on_error=False,
    )
    (evaluation,) = checks.get_asset_check_evaluations()
    return evaluation


def test_blocking_dagster_check_names_the_leaking_column(monkeypatch, market) -> None:
    candles, funding = market
    small = candles.groupby("symbol", group_keys=False).head(400).reset_index(drop=True)

    def leaky(c, f, config=None, timeframe="1h", **_):
        return _centred_leak(c, f)

    evaluation = _materialize_check(monkeypatch, leaky, small, funding)
    assert not evaluation.passed
    assert evaluation.metadata["leaking_columns"].value == "leak_centred_mean"
    assert "leak_centred_mean" in evaluation.description
    assert feature_assets.feature_causality.check_specs  # registered as blocking below
    spec = next(iter(feature_assets.feature_causality.check_specs))
    assert spec.blocking
    clean = _materialize_check(
        monkeypatch, lambda c, f, config=None, timeframe="1h", **_: _compute(c, f), small, funding
    )
    assert clean.passed
    assert np.isfinite(clean.metadata["leaks"].value)
