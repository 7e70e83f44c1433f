"""A universe member's missing hours are never filled from another bar: no row is invented for
it, the basket at that hour is the mean over the members present, and its own windows that would
span the hole are missing (LightGBM sees NaN), never bridged with a stale close."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.features import build_features
from cryptoml_pipeline.settings import CrossAssetConfig, FeatureConfig

H = 300  # the missing hour of ALT/USDT


def _universe() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    ts = pd.date_range("2024-01-01", periods=500, freq="h", tz="UTC")
    frames = []
    for sym in ("BTC/USDT", "ETH/USDT", "ALT/USDT"):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(ts))))
        open_ = np.r_[close[0], close[:-1]]
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": ts,
                    "symbol": sym,
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.002,
                    "low": np.minimum(open_, close) * 0.998,
                    "close": close,
                    "volume": rng.uniform(10, 20, len(ts)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


CONFIG = FeatureConfig(cross_asset=CrossAssetConfig(correlation_windows=(24,)))


def test_missing_hours_are_never_filled() -> None:
    full = _universe()
    hole = full.index[(full["symbol"] == "ALT/USDT") & (full.index % 500 == H)]
    gappy = full.drop(index=hole).reset_index(drop=True)
    missing_at = full.loc[hole[0], "timestamp"]
    table = build_features(gappy, None, CONFIG).table
    alt = table[table["symbol"] == "ALT/USDT"].set_index("timestamp")
    assert missing_at not in alt.index  # no row invented for the hole
    # the basket at the hole is the mean of the members present (BTC, ETH): check BTC's value
    wide = gappy.pivot(index="timestamp", columns="symbol", values="close")
    ret24 = np.log(wide / wide.shift(24)).loc[missing_at]
    btc = table[(table["symbol"] == "BTC/USDT") & (table["timestamp"] == missing_at)]
    expected = ret24["BTC/USDT"] - ret24[["BTC/USDT", "ETH/USDT"]].mean()
    assert btc["rs_basket_24"].iloc[0] == pytest_approx(expected)
    # ALT's own windows spanning the hole are missing, not bridged by its previous close
    after = alt.loc[missing_at + pd.Timedelta(hours=1) : missing_at + pd.Timedelta(hours=23)]
    assert after["corr_btc_24"].isna().all()  # every 1-bar return of the window is needed
    # a 24-bar return between two closes that exist spans the hole legitimately (no fill):
    # log(close[t] / close[t - 24]) with both rows present
    t = missing_at + pd.Timedelta(hours=5)
    w = gappy[gappy["symbol"] == "ALT/USDT"].set_index("timestamp")["close"]
    own = np.log(w.loc[t] / w.loc[t - pd.Timedelta(hours=24)])
    basket = np.log(wide.loc[t] / wide.loc[t - pd.Timedelta(hours=24)]).mean()
    assert alt.loc[t, "rs_basket_24"] == pytest_approx(own - basket)
    later = alt.loc[missing_at + pd.Timedelta(hours=30) :]
    assert later["corr_btc_24"].notna().all()


def test_other_members_features_do_not_depend_on_the_missing_row() -> None:
    """BTC's and ETH's own (non-basket) features are identical with or without ALT's hole."""
    full = _universe()
    hole = full.index[(full["symbol"] == "ALT/USDT") & (full.index % 500 == H)]
    a = build_features(full, None, CONFIG).table
    b = build_features(full.drop(index=hole).reset_index(drop=True), None, CONFIG).table
    cols = ["rsi_14", "ret_24", "rv_24", "corr_eth_24"]
    for sym in ("BTC/USDT", "ETH/USDT"):
        x = a[a["symbol"] == sym].set_index("timestamp")[cols]
        y = b[b["symbol"] == sym].set_index("timestamp")[cols]
        pd.testing.assert_frame_equal(x, y)


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, rel=1e-9, abs=1e-12)
