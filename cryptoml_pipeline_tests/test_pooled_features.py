"""The pooled feature family (issue 19, milestone 4): hand-checkable frames for every kind, the
blocking truncation check on every column, and the switches a sweep turns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.experiments.sweep import families_turned_off, feature_set_view
from cryptoml_pipeline.features import (
    build_features,
    find_lookahead,
    model_feature_columns,
    validate_feature_table,
)
from cryptoml_pipeline.features.build import family_of_column
from cryptoml_pipeline.features.causality import sample_cut_times
from cryptoml_pipeline.features.pooled import (
    basis_features,
    funding_carry_features,
    is_raw_scale,
    percentile_ranks,
    pooled_features,
    symbol_pooled_features,
)
from cryptoml_pipeline.settings import FeatureConfig, PooledConfig

SMALL = PooledConfig(
    enabled=True,
    vol_window=3,
    horizons=(1, 2),
    extreme_windows=(2,),
    volume_window=2,
    market_horizons=(1,),
    rank_horizons=(1,),
    basis_zscore_window=2,
    funding_mean_hours=16,
    funding_zscore_settlements=2,
)


def _hours(n: int, start: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="1h", tz="UTC")


def test_returns_ranges_and_distances_are_in_volatility_units() -> None:
    close = np.array([100.0, 101.0, 99.0, 102.0, 104.0, 103.0])
    high, low = close + 1.0, close - 1.0
    out = symbol_pooled_features(high, low, close, None, SMALL)
    lr = np.diff(np.log(close))  # lr[k] = log(close[k + 1] / close[k])
    sigma4 = np.std(lr[1:4], ddof=1)  # row 4: the returns into rows 2, 3, 4
    assert out["pool_ret_2"][4] == pytest.approx(math.log(104 / 99) / (sigma4 * math.sqrt(2)))
    assert out["pool_ret_1"][4] == pytest.approx(math.log(104 / 102) / sigma4)
    # the range of rows 3..4: max high 105, min low 101
    assert out["pool_range_2"][4] == pytest.approx(math.log(105 / 101) / (sigma4 * math.sqrt(2)))
    assert out["pool_dist_high_2"][4] == pytest.approx(math.log(104 / 105) / (sigma4 * 2**0.5))
    assert out["pool_dist_low_2"][4] == pytest.approx(math.log(104 / 101) / (sigma4 * 2**0.5))
    # no volatility unit before vol_window returns exist
    assert np.isnan(out["pool_ret_1"][:3]).all() and np.isfinite(out["pool_ret_1"][3:]).all()
    # a flat week has no unit: NaN, never inf
    flat = symbol_pooled_features(np.full(6, 2.0), np.full(6, 1.0), np.full(6, 1.5), None, SMALL)
    assert np.isnan(flat["pool_ret_1"]).all() and np.isnan(flat["pool_range_2"]).all()


def test_volume_is_measured_against_its_own_window() -> None:
    close = np.array([1.0, 1.1, 1.0, 1.2])
    out = symbol_pooled_features(close, close, close, np.array([1.0, 3.0, 2.0, 0.0]), SMALL)
    # mean of the last 2 bars, the bar included: -, 2, 2.5, 1
    np.testing.assert_allclose(out["pool_volume_2"], [np.nan, 1.5, 0.8, 0.0])
    silent = symbol_pooled_features(close, close, close, np.zeros(4), SMALL)
    assert np.isnan(silent["pool_volume_2"]).all()


def test_percentile_ranks_count_only_the_members_listed_at_that_bar() -> None:
    wide = pd.DataFrame(
        {"A": [1.0, 1.0, 5.0], "B": [2.0, 3.0, 5.0], "C": [np.nan, 2.0, 1.0]},
        index=_hours(3),
    )
    pct = percentile_ranks(wide)
    np.testing.assert_allclose(pct["A"], [0.25, 1 / 6, 2 / 3])
    np.testing.assert_allclose(pct["B"], [0.75, 5 / 6, 2 / 3])  # a tie shares its mean rank
    np.testing.assert_allclose(pct["C"], [np.nan, 0.5, 1 / 6])
    lone = percentile_ranks(pd.DataFrame({"A": [3.0], "B": [np.nan]}))
    assert lone["A"].iloc[0] == 0.5 and np.isnan(lone["B"].iloc[0])


def _universe(n: int = 40, late: int = 25, seed: int = 0) -> pd.DataFrame:
    """BTC and ETH from the start, SOL listed at row ``late`` (no rows before)."""
    rng = np.random.default_rng(seed)
    ts = _hours(n)
    frames = []
    for symbol, first in (("BTC/USDT", 0), ("ETH/USDT", 0), ("SOL/USDT", late)):
        close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_normal(n - first)))
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": ts[first:],
                    "symbol": symbol,
                    "open": close,
                    "high": close * 1.004,
                    "low": close * 0.996,
                    "close": close,
                    "volume": rng.uniform(1.0, 2.0, n - first),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _pooled(candles: pd.DataFrame, config: PooledConfig = SMALL, **kw) -> dict[str, np.ndarray]:
    return pooled_features(
        candles["timestamp"],
        candles["symbol"],
        candles["high"].to_numpy(),
        candles["low"].to_numpy(),
        candles["close"].to_numpy(),
        candles["volume"].to_numpy(),
        config,
        **kw,
    )


def test_market_move_btc_move_and_ranks_use_the_members_listed_at_each_bar() -> None:
    candles = _universe()
    out = _pooled(candles)
    frame = candles[["timestamp", "symbol"]].assign(**out)
    wide = frame.pivot(index="timestamp", columns="symbol", values="pool_ret_1")
    for t in (wide.index[10], wide.index[30]):  # before and after SOL's listing
        rows = frame[frame["timestamp"] == t]
        members = wide.loc[t].dropna()
        assert len(members) == (2 if t < wide.index[25] else 3)
        np.testing.assert_allclose(rows["pool_mkt_ret_1"], members.mean())
        np.testing.assert_allclose(rows["pool_btc_ret_1"], members["BTC/USDT"])
        expected = (members.rank() - 0.5) / len(members)
        got = rows.set_index("symbol")["pool_rank_ret_1"]
        pd.testing.assert_series_equal(got, expected, check_names=False)
    # SOL in its own warm-up (rows 25..27) has no value and leaves BTC/ETH ranked among two
    t = wide.index[26]
    assert np.isnan(wide.loc[t, "SOL/USDT"])
    two = frame[frame["timestamp"] == t].set_index("symbol")["pool_rank_ret_1"]
    assert sorted(two.dropna()) == [0.25, 0.75] and np.isnan(two["SOL/USDT"])
    # without BTC in the set there is no BTC move, and the plan says why
    no_btc = candles[candles["symbol"] != "BTC/USDT"].reset_index(drop=True)
    built = build_features(no_btc, config=FeatureConfig(pooled=SMALL))
    assert "pool_btc_ret_1" not in built.table.columns
    assert "BTC is not in the symbol set" in built.plan.unavailable["pool_btc_ret_*"]


def test_basis_only_where_both_perpetual_and_spot_exist() -> None:
    ts = _hours(5)
    perp = pd.DataFrame({"timestamp": list(ts) * 2, "symbol": ["BTC/USDT"] * 5 + ["DOGE/USDT"] * 5})
    close = np.array([101.0, 102.0, 103.0, 104.0, 105.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    spot = pd.DataFrame(
        {  # no spot bar at ts[2]; DOGE has no spot at all
            "timestamp": ts[[0, 1, 3, 4]],
            "symbol": "BTC/USDT",
            "close": [100.0, 100.0, 100.0, 100.0],
        }
    )
    out = basis_features(perp["timestamp"], perp["symbol"], close, spot, SMALL)
    np.testing.assert_allclose(out["pool_basis"][:5], [0.01, 0.02, np.nan, 0.04, 0.05])
    assert np.isnan(out["pool_basis"][5:]).all()
    # z over the last 2 bases: NaN when one of them is missing
    z = out["pool_basis_z_2"]
    assert np.isnan(z[[0, 2, 3]]).all()
    assert z[1] == pytest.approx((0.02 - 0.015) / np.std([0.01, 0.02], ddof=1))
    assert z[4] == pytest.approx((0.05 - 0.045) / np.std([0.04, 0.05], ddof=1))
    assert np.isnan(z[5:]).all()


def test_funding_carry_is_per_hour_of_each_settlement_interval() -> None:
    # 8 h settlements, then a switch to 4 h at the same hourly carry
    settle = pd.to_datetime(
        ["2024-01-01 00:00", "2024-01-01 08:00", "2024-01-01 16:00", "2024-01-01 20:00"], utc=True
    )
    funding = pd.DataFrame(
        {"timestamp": settle, "symbol": "BTC/USDT", "funding_rate": [8e-4, 8e-4, 1.6e-3, 4e-4]}
    )
    ts = pd.Series(_hours(22))
    out = funding_carry_features(ts, pd.Series(["BTC/USDT"] * 22), funding, SMALL)
    ph = out["pool_funding_ph"]
    assert np.isnan(ph[:8]).all()  # the first settlement has no interval
    np.testing.assert_allclose(ph[[8, 15, 16, 19, 20, 21]], [1e-4, 1e-4, 2e-4, 2e-4, 1e-4, 1e-4])
    # mean of the per-hour rates settled in the last 16 h (the settlement included): at 20:00
    # the settlements of 08:00, 16:00 and 20:00 (1, 2 and 1 x 1e-4)
    mean = out["pool_funding_mean_16h_ph"]
    np.testing.assert_allclose(mean[[8, 16, 20]], [1e-4, 1.5e-4, 4e-4 / 3])
    # z over the last 2 per-hour rates: (2 - 1.5) / std([1, 2]) = 0.707 at 16:00
    z = out["pool_funding_z_2"]
    assert np.isnan(z[8]) and z[16] == pytest.approx(0.5 / np.std([1.0, 2.0], ddof=1))
    assert z[20] == pytest.approx(-0.5 / np.std([1.0, 2.0], ddof=1))
    other = funding_carry_features(ts, pd.Series(["ETH/USDT"] * 22), funding, SMALL)
    assert np.isnan(other["pool_funding_ph"]).all()


def _market(seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    candles = _universe(n=80, late=30, seed=seed)
    settle = pd.date_range("2024-01-01", periods=10, freq="8h", tz="UTC")
    rng = np.random.default_rng(seed)
    funding = pd.concat(
        [
            pd.DataFrame(
                {"timestamp": settle, "symbol": s, "funding_rate": 1e-4 * rng.standard_normal(10)}
            )
            for s in ("BTC/USDT", "ETH/USDT")
        ],
        ignore_index=True,
    )
    btc = candles[candles["symbol"] == "BTC/USDT"]
    spot = btc[["timestamp", "symbol"]].assign(
        close=btc["close"].to_numpy() * (1 - 1e-3 * rng.standard_normal(len(btc)))
    )
    gaps = np.arange(len(spot)) % 5 == 2  # no spot bar at every fifth perpetual bar
    return candles, funding, spot[~gaps].reset_index(drop=True)


def test_every_pooled_column_passes_the_truncation_check() -> None:
    candles, funding, spot = _market()
    config = FeatureConfig(
        pooled=SMALL.model_copy(update={"horizons": (1, 4, 24), "extreme_windows": (6,)})
    )

    def compute(c: pd.DataFrame, f: pd.DataFrame | None) -> pd.DataFrame:
        cut = c["timestamp"].max()  # the spot candles are cut where the candles are
        table = build_features(c, f, config, spot=spot[spot["timestamp"] <= cut]).table
        return table[["timestamp", "symbol", *[x for x in table.columns if x.startswith("pool_")]]]

    full = compute(candles, funding)
    pooled = [c for c in full.columns if c.startswith("pool_")]
    assert {"pool_basis", "pool_funding_ph", "pool_rank_ret_1", "pool_btc_ret_1"} <= set(pooled)
    assert all(full[c].notna().any() for c in pooled)  # nothing vacuous
    cuts = sample_cut_times(candles["timestamp"], 6, first=0.2)
    assert find_lookahead(compute, candles, funding, cuts) == []

    # the check bites: a centred market move leaks and is reported
    def leaky(c: pd.DataFrame, f: pd.DataFrame | None) -> pd.DataFrame:
        out = compute(c, f)
        out["pool_mkt_ret_1"] = out.groupby("symbol")["pool_mkt_ret_1"].shift(-1)
        return out

    assert {r.column for r in find_lookahead(leaky, candles, funding, cuts)} == {"pool_mkt_ret_1"}


def test_the_family_is_a_switch_and_raw_scale_inputs_can_be_kept_from_models() -> None:
    candles, funding, _ = _market(seed=2)
    off = build_features(
        candles, funding, FeatureConfig.model_validate({"pooled": {"enabled": False}})
    )
    assert "pooled" in off.plan.disabled
    assert not [c for c in off.table.columns if c.startswith("pool_")]
    on_cfg = FeatureConfig(pooled=SMALL)
    on = build_features(candles, funding, on_cfg)  # no spot candles: no basis, with a reason
    validate_feature_table(on.table)
    assert on.plan.families["pooled"] and "pool_basis" not in on.table.columns
    assert "spot" in on.plan.unavailable["pool_basis*"]
    assert family_of_column("pool_ret_1") == "pooled"
    # the raw-scale columns stay in the table (decisions read rv_*, atr_pct_*) ...
    assert {"ret_1", "rv_168", "atr_pct_14", "macd_hist_pct"} <= set(on.table.columns)
    assert model_feature_columns(on.table, on_cfg) == [
        c for c in on.table.columns if c not in ("timestamp", "symbol")
    ]
    # ... and the models stop seeing them when asked
    strict = FeatureConfig(pooled=SMALL.model_copy(update={"exclude_raw_scale": True}))
    cols = model_feature_columns(on.table, strict)
    assert not [c for c in cols if c.startswith(("ret_", "rv_", "atr_pct_", "macd_hist", "beta_"))]
    assert not [c for c in cols if c.startswith(("rs_basket_", "sector_rot_", "vw_pressure_"))]
    assert "pool_ret_1" in cols and "rsi_14" in cols
    assert is_raw_scale("ret_24__lag4") and not is_raw_scale("pool_ret_24__lag4")
    # a sweep on a table built with the family on may turn it off or drop raw-scale inputs
    assert families_turned_off(
        on_cfg, FeatureConfig(pooled=SMALL.model_copy(update={"enabled": False}))
    ) == ("pooled",)
    assert families_turned_off(on_cfg, strict) == ()
    view = feature_set_view(on.table, ("pooled",))
    assert not [c for c in view.columns if c.startswith("pool_")] and "ret_1" in view.columns


def test_the_live_feature_path_serves_the_family_on_and_off() -> None:
    """The signal's fast path gives the pooled columns when the family is on (the default; their
    values against the batch table: ``test_signal_fast_features.py``) and none when it is off."""
    from cryptoml_pipeline.live.fast_features import signal_rows
    from cryptoml_pipeline.settings import FeatureConfig

    ts = pd.date_range("2024-01-01", periods=50, freq="1h", tz="UTC")
    tail = pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "BTC/USDT",
            "high": 2.0,
            "low": 1.0,
            "close": 1.5,
            "volume": 1.0,
        }
    )
    on = signal_rows(tail, None, FeatureConfig(), "1h", {"BTC/USDT": ts[-1]}, ["BTC/USDT"], 4)
    assert {"pool_ret_1", "pool_rank_ret_24", "pool_btc_ret_1"} <= set(on.names)
    assert not any(n.startswith(("pool_basis", "pool_funding")) for n in on.names)  # no inputs
    off_cfg = FeatureConfig.model_validate({"pooled": {"enabled": False}})
    off = signal_rows(tail, None, off_cfg, "1h", {"BTC/USDT": ts[-1]}, ["BTC/USDT"], 4)
    assert not any(name.startswith("pool_") for name in off.names)
