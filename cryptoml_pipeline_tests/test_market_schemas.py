"""Layout names and the candles/funding schemas on small hand-made frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.market import (
    candles_path,
    funding_path,
    perpetual_symbol,
    spot_symbol,
    symbol_to_stem,
    validate_candles,
    validate_funding,
)


def _candles(n: int = 5, symbol: str = "BTC/USDT") -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")  # pandas 3: datetime64[us, UTC]
    open_ = 100.0 + np.arange(n)
    return pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": symbol,
            "open": open_,
            "high": open_ + 2.0,
            "low": open_ - 1.0,
            "close": open_ + 1.0,
            "volume": np.full(n, 10.0),
        }
    )


def _funding(n: int = 3) -> pd.DataFrame:
    ts = pd.date_range("2024-01-01", periods=n, freq="8h", tz="UTC")
    return pd.DataFrame(
        {"timestamp": ts, "symbol": "BTC/USDT", "funding_rate": [1e-4, -2e-4, 3e-4]}
    )


# ----------------------------------------------------------------------------- layout
def test_layout_names() -> None:
    assert symbol_to_stem("BTC/USDT:USDT") == "BTC_USDT_USDT"
    assert symbol_to_stem("BTC/USDT") == "BTC_USDT"
    assert perpetual_symbol("BTC/USDT") == "BTC/USDT:USDT"
    assert perpetual_symbol("ETH/BUSD") == "ETH/BUSD:BUSD"  # settle = quote currency
    assert perpetual_symbol("BTC/USDT:USDT") == "BTC/USDT:USDT"
    assert spot_symbol("SOL/USDT:USDT") == "SOL/USDT"
    root = Path("/data")
    assert candles_path(root, "BTC/USDT", "1h") == Path("/data/market/BTC_USDT-1h.parquet")
    assert candles_path(root, "BTC/USDT:USDT", "5m") == Path(
        "/data/market/BTC_USDT_USDT-5m.parquet"
    )
    assert funding_path(root, "BTC/USDT:USDT") == Path(
        "/data/funding/BTC_USDT_USDT-funding.parquet"
    )


@pytest.mark.parametrize("bad", ["BTCUSDT", "BTC/", "/USDT", ""])
def test_layout_rejects_malformed_symbols(bad: str) -> None:
    with pytest.raises(InputError, match="BASE/QUOTE"):
        perpetual_symbol(bad)


# ----------------------------------------------------------------------------- candles
def test_valid_candles_are_normalised_to_ns_utc() -> None:
    df = _candles()
    df["timestamp"] = df["timestamp"].dt.tz_convert("Europe/Berlin")
    out = validate_candles(df, source="hand")
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert out["timestamp"].iloc[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")
    pd.testing.assert_frame_equal(
        out.drop(columns="timestamp"), _candles().drop(columns="timestamp")
    )


def test_integer_prices_are_accepted_as_float() -> None:
    df = _candles()
    df["volume"] = np.arange(5)
    assert validate_candles(df, source="hand")["volume"].dtype == np.float64


def _reject(df: pd.DataFrame, *patterns: str) -> str:
    with pytest.raises(DataValidationError) as info:
        validate_candles(df, source="data/BTC_USDT-1h.parquet")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("data/BTC_USDT-1h.parquet: ")
    for pattern in patterns:
        assert pattern in message, message
    return message


def test_rejects_nan() -> None:
    df = _candles()
    df.loc[3, "close"] = np.nan
    _reject(df, "no NaN", "'close'", "2024-01-01 03:00:00+00:00")


def test_rejects_infinite_volume() -> None:
    df = _candles()
    df.loc[1, "volume"] = np.inf
    _reject(df, "volume is finite", "2024-01-01 01:00:00+00:00")


def test_rejects_negative_price() -> None:
    df = _candles()
    df.loc[2, ["open", "low"]] = [-1.0, -2.0]
    _reject(df, "open > 0", "2024-01-01 02:00:00+00:00")


def test_rejects_negative_volume() -> None:
    df = _candles()
    df.loc[4, "volume"] = -0.5
    _reject(df, "volume >= 0", "2024-01-01 04:00:00+00:00")


def test_rejects_high_below_open_or_close() -> None:
    df = _candles()
    df.loc[2, "high"] = df.loc[2, "close"] - 0.5  # above open, below close
    message = _reject(df, "high >= max(open, close)", "(1 row)", "2024-01-01 02:00:00+00:00")
    assert "low <=" not in message


def test_rejects_low_above_open_or_close() -> None:
    df = _candles()
    df.loc[1, "low"] = df.loc[1, "open"] + 0.5
    _reject(df, "low <= min(open, close)", "2024-01-01 01:00:00+00:00")


def test_rejects_duplicate_timestamps() -> None:
    df = _candles()
    df.loc[3, "timestamp"] = df.loc[2, "timestamp"]
    _reject(df, "(symbol, timestamp) unique", "first at 2024-01-01 02:00:00+00:00")


def test_rejects_unsorted_rows() -> None:
    df = _candles().iloc[[0, 1, 3, 2, 4]]
    _reject(df, "strictly increasing", "first at 2024-01-01 02:00:00+00:00")


def test_sorting_is_per_symbol() -> None:
    both = pd.concat([_candles(symbol="BTC/USDT"), _candles(symbol="ETH/USDT")], ignore_index=True)
    out = validate_candles(both, source="hand")  # timestamps restart for the second symbol: fine
    assert len(out) == 10
    assert out.index.equals(both.index)


def test_rejects_naive_timestamps() -> None:
    df = _candles()
    df["timestamp"] = df["timestamp"].dt.tz_localize(None)
    with pytest.raises(DataValidationError, match=r"^src: naive timestamps"):
        validate_candles(df, source="src")


def test_rejects_missing_column() -> None:
    with pytest.raises(DataValidationError, match=r"lacks column\(s\) \['volume'\]"):
        validate_candles(_candles().drop(columns="volume"), source="src")


# ----------------------------------------------------------------------------- funding
def test_valid_funding() -> None:
    out = validate_funding(_funding(), source="f")
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert out["funding_rate"].tolist() == [1e-4, -2e-4, 3e-4]  # negative rates are fine


def test_funding_rejects_nan_and_naive() -> None:
    df = _funding()
    df.loc[1, "funding_rate"] = np.nan
    with pytest.raises(DataValidationError, match=r"^BTC/USDT:USDT: funding fail .*08:00:00"):
        validate_funding(df, source="BTC/USDT:USDT")
    naive = _funding()
    naive["timestamp"] = naive["timestamp"].dt.tz_localize(None)
    with pytest.raises(DataValidationError, match="naive"):
        validate_funding(naive, source="f")
