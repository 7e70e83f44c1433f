"""Feature families: spec config mapping, `ta` oracle, microstructure (bars and real trades),
cross-asset absences, regimes, open interest and pluggable sentiment sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.features import build_features, feature_columns, warmup_bars
from cryptoml_pipeline.features import technical as tech
from cryptoml_pipeline.features.sentiment_sources import SourceResult
from cryptoml_pipeline.settings import FeatureConfig, SentimentFlowConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "features"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")

SPEC_FEATURE_CONFIG = {  # verbatim from the spec's FEATURE_CONFIG
    "use_existing_features": True,
    "existing_features": ["rsi", "cci", "wave_trend"],
    "market_microstructure": {
        "enabled": True,
        "orderbook_levels": 10,
        "trade_size_buckets": [1000, 10000, 100000],
    },
    "cross_asset": {
        "enabled": True,
        "reference_assets": ["BTC", "ETH"],
        "correlation_windows": [24, 168, 720],
    },
    "temporal": {
        "enabled": True,
        "timezone": "UTC",
        "session_boundaries": {"asian": [0, 8], "european": [8, 16], "us": [16, 24]},
    },
}


def _real(bases: tuple[str, ...], start: str, rows: int) -> pd.DataFrame:
    frames = []
    for base in bases:
        c = pd.read_parquet(DATA / "market" / f"{base}_USDT-1h.parquet")
        frames.append(c[c["timestamp"] >= pd.Timestamp(start, tz="UTC")].iloc[:rows])
    return pd.concat(frames, ignore_index=True)


def test_spec_feature_config_maps_one_to_one() -> None:
    cfg = FeatureConfig.model_validate(SPEC_FEATURE_CONFIG)
    assert cfg == FeatureConfig()  # the spec's values are the defaults
    dumped = cfg.model_dump(mode="json")
    for key, value in SPEC_FEATURE_CONFIG.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                assert dumped[key][sub] == v, (key, sub)
        else:
            assert dumped[key] == value
    with pytest.raises(ValueError, match="extra"):
        FeatureConfig.model_validate({**SPEC_FEATURE_CONFIG, "unknown_family": {}})


def _real_range(bases: tuple[str, ...], start: str, end: str) -> list[pd.DataFrame]:
    out = []
    for base in bases:
        c = pd.read_parquet(DATA / "market" / f"{base}_USDT-1h.parquet")
        keep = (c["timestamp"] >= pd.Timestamp(start, tz="UTC")) & (
            c["timestamp"] < pd.Timestamp(end, tz="UTC")
        )
        out.append(c[keep].reset_index(drop=True))
    return out


@needs_data
def test_indicators_match_the_ta_package_after_warmup() -> None:
    """3 symbols x 2 years of real 1h bars (the benchmark's data): allclose 1e-9 after warm-up."""
    ta = pytest.importorskip("ta")
    w = warmup_bars(FeatureConfig())
    for c in _real_range(("BTC", "ETH", "SOL"), "2023-10-01", "2025-10-01"):
        assert len(c) > 17000
        h, lo, cl = c["high"], c["low"], c["close"]
        pairs = {
            "rsi": (tech.rsi(cl, 14), ta.momentum.RSIIndicator(cl, 14).rsi()),
            "cci": (tech.cci(h, lo, cl, 20), ta.trend.CCIIndicator(h, lo, cl, 20).cci()),
            "atr": (
                tech.atr(h, lo, cl, 14),
                ta.volatility.AverageTrueRange(h, lo, cl, 14).average_true_range(),
            ),
            "bb_pctb": (
                tech.bollinger_pctb(cl, 20),
                ta.volatility.BollingerBands(cl, 20, 2).bollinger_pband(),
            ),
            "macd": (tech.macd(cl)[2], ta.trend.MACD(cl, 26, 12, 9).macd_diff()),
        }
        for name, (ours, theirs) in pairs.items():
            a, b = ours.to_numpy()[w:], theirs.to_numpy()[w:]
            assert np.isfinite(a).all(), name
            np.testing.assert_allclose(
                a, b, rtol=1e-9, atol=1e-9, err_msg=f"{name} {c['symbol'][0]}"
            )


@needs_data
def test_bollinger_pctb_is_causal_and_its_history_drift_is_bounded() -> None:
    """%B uses pandas' online rolling variance (to equal `ta`): prefix values are bit-identical
    when later rows are dropped; a later history start moves them by far less than the warm-up
    check's tolerance (rtol 1e-6, atol 1e-9) on the check's 2000-bar windows."""
    (c,) = _real_range(("BTC",), "2023-10-01", "2025-10-01")
    cl = c["close"]
    full = tech.bollinger_pctb(cl, 20).to_numpy()
    np.testing.assert_array_equal(tech.bollinger_pctb(cl.iloc[:5000], 20).to_numpy(), full[:5000])
    w = warmup_bars(FeatureConfig())
    seg = cl.iloc[-2000:].reset_index(drop=True)
    ref = tech.bollinger_pctb(seg, 20).to_numpy()
    for start in (97, 233):
        late = tech.bollinger_pctb(seg.iloc[start:].reset_index(drop=True), 20).to_numpy()
        np.testing.assert_allclose(late[w:], ref[start + w :], rtol=1e-6, atol=1e-9)
    # and it is the exact %B up to that rounding: two-pass std on every window
    std = tech.rolling_std(cl, 20, ddof=0).to_numpy()
    mean = tech.rolling_mean(cl, 20).to_numpy()
    exact = (cl.to_numpy() - (mean - 2 * std)) / (4 * std)
    np.testing.assert_allclose(full[w:], exact[w:], rtol=0, atol=1e-7)
    flat = tech.bollinger_pctb(pd.Series(np.full(30, 100.0)), 20).to_numpy()
    assert np.isnan(flat[:19]).all() and (flat[19:] == 0.5).all()


@needs_data
def test_microstructure_estimators_on_real_bars_and_a_planted_spike() -> None:
    c = _real(("ETH",), "2024-03-01", 800)
    spike_at = 600
    c.loc[spike_at, "volume"] *= 40
    out = build_features(c).table
    assert out["ofi_bvc_24"].abs().max() <= 1 and out["ofi_tick_24"].abs().max() <= 1
    for col in ("spread_cs_24", "spread_ar_24"):
        v = out[col].dropna()
        assert (v >= 0).all() and v.median() < 0.01, col  # a fraction of price, not percent
    assert out.loc[spike_at, "large_volume_168"] == 1.0
    assert out.loc[spike_at - 1, "large_volume_168"] == 0.0  # known only from the spike on
    assert out["volume_z_168"].iloc[spike_at] > 3
    rising = c.assign(close=np.linspace(100, 200, len(c)))
    rising = rising.assign(high=rising["close"] * 1.001, low=rising["close"] * 0.999)
    up = build_features(rising).table
    assert (up["ofi_tick_24"].dropna() == 1).all()
    assert (up["tick_imbalance_24"].dropna() == 1).all()


def test_trade_level_path_on_real_trades() -> None:
    trades = json.loads((FIXTURES / "eth_usdt_trades_2023-02-02.json").read_text())
    frame = pd.DataFrame(trades)
    frame["bar"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True).dt.floor("1min")
    bars = frame.groupby("bar").agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("amount", "sum"),
    )
    candles = bars.reset_index().rename(columns={"bar": "timestamp"}).assign(symbol="ETH/USDT")
    assert len(candles) == 2
    cfg = FeatureConfig(sentiment_flow=SentimentFlowConfig(enabled=False))
    built = build_features(candles, config=cfg, timeframe="1m", trades=trades)
    out = built.table
    for name in ("ofi_trades", "tick_imbalance_trades", "vw_pressure_trades"):
        assert name in out.columns
    for i, (_, g) in enumerate(frame.groupby("bar")):
        sign = np.where(g["side"] == "buy", 1.0, -1.0)
        expected = (sign * g["amount"]).sum() / g["amount"].sum()
        assert out["ofi_trades"].iloc[i] == pytest.approx(expected, rel=1e-12)
        big = g.loc[g["cost"] >= 10000, "amount"].sum() / g["amount"].sum()
        assert out["large_trade_share_10000"].iloc[i] == pytest.approx(big, rel=1e-12)
        vwap = (g["price"] * g["amount"]).sum() / g["amount"].sum()
        expected_p = np.log(g["price"].iloc[-1] / vwap)
        assert out["vw_pressure_trades"].iloc[i] == pytest.approx(expected_p, rel=1e-9)
    assert out["ofi_trades"].iloc[0] > 0 > out["ofi_trades"].iloc[1]  # buying, then selling
    without = build_features(candles, config=cfg, timeframe="1m")
    assert "ofi_trades" not in without.table.columns
    assert any("trade-level" in r for r in without.plan.unavailable.values())


@needs_data
def test_cross_asset_absent_features_carry_reasons_and_values_are_right() -> None:
    c = _real(("ETH", "SOL"), "2024-01-01", 400)
    built = build_features(c)
    cols = feature_columns(built.table)
    assert not any(col.startswith(("corr_btc", "beta_btc")) for col in cols)
    assert "corr_eth_24" in cols and "rs_basket_24" in cols
    reasons = built.plan.unavailable
    assert "BTC is not in the symbol set" in reasons["corr_btc_*"]
    assert reasons["sector_rot_defi_168"] == "sector 'defi' has no symbol in the set"
    assert "two non-empty sectors" in reasons["sector_rot_layer1_168"]  # ETH, SOL: one sector
    assert not any(col.startswith("sector_rot") for col in cols)
    out = built.table
    sol = out[out["symbol"] == "SOL/USDT"].reset_index(drop=True)
    r = {
        s: np.log(c.loc[c["symbol"] == s, "close"].to_numpy()).astype(float)
        for s in ("ETH/USDT", "SOL/USDT")
    }
    i = 300
    re, rs = np.diff(r["ETH/USDT"])[i - 24 : i], np.diff(r["SOL/USDT"])[i - 24 : i]
    assert sol["corr_eth_24"].iloc[i] == pytest.approx(np.corrcoef(re, rs)[0, 1], rel=1e-9)
    eth = out[out["symbol"] == "ETH/USDT"]
    assert set(eth["corr_eth_24"].dropna()) == {1.0}
    rs24 = sol["rs_basket_24"].iloc[i]
    move = {s: r[s][i] - r[s][i - 24] for s in r}
    assert rs24 == pytest.approx(move["SOL/USDT"] - np.mean(list(move.values())), rel=1e-9)


@needs_data
def test_volatility_regime_and_trend_strength() -> None:
    c = _real(("BTC",), "2024-01-01", 2000)
    out = build_features(c).table
    regime = out["vol_regime_720"].dropna()
    assert set(regime.unique()) == {0.0, 1.0, 2.0}
    assert regime.value_counts(normalize=True).min() > 0.15  # tertiles of a rolling window
    rank = out["vol_rank_720"].dropna()
    assert ((rank > 0) & (rank <= 1)).all()
    assert (out.loc[out["vol_regime_720"] == 2, "vol_rank_720"] > 0.6).all()
    assert out["trend_strength_24"].abs().max() <= 1
    decay = out["trend_decay_24"].dropna()
    assert ((decay >= 0) & (decay <= 1)).all() and (decay == 1).any()


class _FakeWhales:
    name = "fake"

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def fetch(self, symbols, start, end) -> SourceResult:
        return SourceResult("available", self.frame)


def test_sentiment_sources_and_open_interest() -> None:
    ts = pd.date_range("2024-01-01", periods=60, freq="h", tz="UTC")
    close = 100 * np.exp(np.cumsum(np.random.default_rng(3).normal(0, 0.01, 60)))
    candles = pd.DataFrame(
        {"timestamp": ts, "symbol": "BTC/USDT", "high": close * 1.01, "low": close * 0.99}
    ).assign(close=close, volume=5.0)
    default = build_features(candles)
    assert "whale_movement" not in default.table.columns
    assert default.plan.unavailable["whale_movement"].startswith("no whale source configured")
    assert "social_sentiment" in default.plan.unavailable
    assert default.plan.unavailable["oi_change_*"] == "no open-interest data given"
    whales = pd.DataFrame(
        {"timestamp": ts[[10, 30]] + pd.Timedelta(minutes=30), "symbol": "BTC/USDT"}
    ).assign(value=[5.0, -2.0])
    oi = pd.DataFrame({"timestamp": ts, "symbol": "BTC/USDT", "open_interest": np.arange(60.0) + 1})
    cfg = FeatureConfig(sentiment_flow=SentimentFlowConfig(whale_source="fake"))
    built = build_features(
        candles, config=cfg, open_interest=oi, sources={"fake": _FakeWhales(whales)}
    )
    out = built.table
    w = out["whale_movement"].to_numpy()
    assert np.isnan(w[:11]).all()  # stamped 10:30 -> first seen by the 11:00 row
    assert (w[11:31] == 5.0).all() and (w[31:] == -2.0).all()
    assert out["oi_change_1"].iloc[5] == pytest.approx(np.log(6 / 5))
    assert out["oi_change_24"].iloc[30] == pytest.approx(np.log(31 / 7))
    missing = build_features(candles, config=cfg)
    assert "configured but not provided" in missing.plan.unavailable["whale_movement"]
