"""compute_features: contract shape, input order, dtypes, schema, config switches, speed."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.features import (
    compute_features,
    feature_columns,
    find_lookahead,
    validate_feature_table,
    warmup_bars,
)
from cryptoml_pipeline.features.technical import rsi
from cryptoml_pipeline.settings import FeatureConfig

DEFAULT_COLUMNS = [
    "ret_1",
    "ret_4",
    "ret_24",
    "rv_24",
    "rv_168",
    "rsi_14",
    "cci_20",
    "wt1",
    "wt2",
    "wt_cross",
    "atr_pct_14",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
    "session_asian",
    "session_european",
    "session_us",
]


def synthetic_candles(n: int, symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT")) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frames = []
    for k, sym in enumerate(symbols):
        close = (100 + 50 * k) * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        open_ = np.r_[close[0], close[:-1]]
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
                    "symbol": sym,
                    "open": open_,
                    "high": np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n)),
                    "low": np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n)),
                    "close": close,
                    "volume": rng.uniform(1, 10, n),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def synthetic_funding(candles: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    ts = pd.date_range(candles["timestamp"].min(), candles["timestamp"].max(), freq="8h")
    frames = [
        pd.DataFrame(
            {"timestamp": ts, "symbol": sym, "funding_rate": rng.normal(1e-4, 5e-5, len(ts))}
        )
        for sym in candles["symbol"].unique()
    ]
    return pd.concat(frames, ignore_index=True)


def test_default_columns_dtypes_and_schema() -> None:
    candles = synthetic_candles(400)
    out = compute_features(candles)
    assert isinstance(out.index, pd.RangeIndex)
    assert list(out.columns) == ["timestamp", "symbol", *DEFAULT_COLUMNS]
    assert feature_columns(out) == DEFAULT_COLUMNS
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(out[c].dtype == np.float64 for c in DEFAULT_COLUMNS)
    assert len(out) == len(candles)
    validate_feature_table(out)
    with_funding = compute_features(candles, synthetic_funding(candles))
    assert feature_columns(with_funding) == [*DEFAULT_COLUMNS, "funding_rate", "funding_zscore_90"]
    validate_feature_table(with_funding)


def test_one_row_per_input_row_in_input_order_when_shuffled() -> None:
    candles = synthetic_candles(300)
    funding = synthetic_funding(candles)
    ordered = compute_features(candles, funding)
    perm = np.random.default_rng(1).permutation(len(candles))
    shuffled_in = candles.iloc[perm].set_index(pd.Index(np.arange(len(candles)) * 3 + 5))
    shuffled = compute_features(shuffled_in, funding)
    assert isinstance(shuffled.index, pd.RangeIndex)
    assert shuffled["symbol"].tolist() == shuffled_in["symbol"].tolist()
    assert (shuffled["timestamp"].to_numpy() == shuffled_in["timestamp"].to_numpy()).all()
    expected = ordered.iloc[perm].reset_index(drop=True)
    pd.testing.assert_frame_equal(shuffled, expected)


def test_values_are_per_symbol() -> None:
    candles = synthetic_candles(200, symbols=("A", "B"))
    out = compute_features(candles)
    b_rows = candles["symbol"] == "B"
    expected = rsi(candles.loc[b_rows, "close"].reset_index(drop=True), 14).to_numpy()
    np.testing.assert_array_equal(out.loc[b_rows, "rsi_14"].to_numpy(), expected)
    assert out.loc[b_rows, "ret_1"].isna().sum() == 1  # B's first row has no return from A


def test_warmup_bars_is_the_first_fully_valid_row() -> None:
    cfg = FeatureConfig(volatility_windows=(24, 30))
    n_warm = warmup_bars(cfg)
    assert n_warm == 2 * 10 + 21 - 3 + 4 - 1 + 1  # wt_cross: 40 > rv_30, rsi_14, cci_20
    out = compute_features(synthetic_candles(120, symbols=("A",)), config=cfg)
    nan_rows = out[feature_columns(out)].isna().any(axis=1).to_numpy()
    assert nan_rows[:n_warm].all()
    assert not nan_rows[n_warm:].any()
    assert warmup_bars(FeatureConfig()) == 168


def test_config_switches_and_parameterised_names() -> None:
    candles = synthetic_candles(100)
    funding = synthetic_funding(candles)
    cfg = FeatureConfig(
        rsi_period=7,
        cci_period=10,
        atr_period=5,
        return_horizons=(1, 2),
        volatility_windows=(12,),
        temporal_enabled=False,
        funding_enabled=False,
        funding_zscore_window=30,
    )
    out = compute_features(candles, funding, cfg)
    assert feature_columns(out) == [
        "ret_1",
        "ret_2",
        "rv_12",
        "rsi_7",
        "cci_10",
        "wt1",
        "wt2",
        "wt_cross",
        "atr_pct_5",
    ]
    cfg2 = cfg.model_copy(update={"funding_enabled": True, "use_existing_features": False})
    assert feature_columns(compute_features(candles, funding, cfg2))[-3:] == [
        "atr_pct_5",
        "funding_rate",
        "funding_zscore_30",
    ]


def test_bad_inputs_raise() -> None:
    candles = synthetic_candles(50)
    with pytest.raises(InputError, match="duplicate candle for BTC/USDT"):
        compute_features(pd.concat([candles, candles.iloc[[3]]], ignore_index=True))
    with pytest.raises(InputError, match="lack column"):
        compute_features(candles.drop(columns=["close"]))
    with pytest.raises(InputError, match="timeframe"):
        compute_features(candles, timeframe="1x")


def test_empty_input_gives_empty_typed_table() -> None:
    out = compute_features(synthetic_candles(10).iloc[:0])
    assert len(out) == 0
    assert feature_columns(out) == DEFAULT_COLUMNS
    validate_feature_table(out)


def test_schema_names_the_bad_column() -> None:
    out = compute_features(synthetic_candles(60))
    bad = out.copy()
    bad.loc[50, "cci_20"] = np.inf
    with pytest.raises(DataValidationError, match="'cci_20'"):
        validate_feature_table(bad)
    bad = out.copy()
    bad["rsi_14"] = bad["rsi_14"].astype("float32")
    with pytest.raises(DataValidationError, match="'rsi_14'"):
        validate_feature_table(bad)
    with pytest.raises(DataValidationError, match="timestamp"):
        validate_feature_table(out.assign(timestamp=out["timestamp"].dt.tz_localize(None)))


def test_speed_three_symbols_two_years_hourly() -> None:
    candles = synthetic_candles(17_520, symbols=("BTC/USDT", "ETH/USDT", "SOL/USDT"))
    funding = synthetic_funding(candles)
    compute_features(candles.iloc[:1000], funding)  # warm caches / imports
    t0 = time.perf_counter()
    out = compute_features(candles, funding)
    elapsed = time.perf_counter() - t0
    assert len(out) == 52_560
    assert elapsed < 2.0, f"compute_features took {elapsed:.2f}s on 3 x 17,520 rows"


def test_empty_funding_gives_nan_funding_columns() -> None:
    candles = synthetic_candles(30)
    empty = pd.DataFrame(
        {
            "timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
            "symbol": pd.Series([], dtype=object),
            "funding_rate": pd.Series([], dtype=float),
        }
    )
    out = compute_features(candles, empty)
    assert out["funding_rate"].isna().all() and out["funding_zscore_90"].isna().all()
    validate_feature_table(out)


def test_find_lookahead_on_synthetic_data() -> None:
    candles = synthetic_candles(400).sample(frac=1.0, random_state=2)
    funding = synthetic_funding(candles)
    cuts = [pd.Timestamp("2024-01-05 13:00", tz="UTC"), pd.Timestamp("2024-01-12", tz="UTC")]
    assert find_lookahead(compute_features, candles, funding, cuts) == []

    def leaky(c: pd.DataFrame, f: pd.DataFrame | None) -> pd.DataFrame:
        out = compute_features(c, f)
        by_time = c.sort_values("timestamp").groupby("symbol")["close"]
        out["next_close"] = by_time.shift(-1).reindex(c.index).to_numpy()  # looks ahead
        return out

    reports = find_lookahead(leaky, candles, funding, cuts)
    assert {r.column for r in reports} == {"next_close"}
    assert sorted({(r.symbol, r.timestamp) for r in reports}) == sorted(
        (s, cut) for s in ("BTC/USDT", "ETH/USDT") for cut in cuts
    )
