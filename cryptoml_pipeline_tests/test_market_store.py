"""ParquetStore on slices of the real data in ../shared/data and on a temporary store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.market import ParquetStore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "market").is_dir(), reason="no ../shared/data")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="module")
def real() -> ParquetStore:
    return ParquetStore(DATA)


@needs_data
def test_read_window_is_half_open(real: ParquetStore) -> None:
    df = real.read_candles("BTC/USDT", "1h", utc("2024-03-01 00:00"), utc("2024-03-01 05:00"))
    assert list(df.columns) == ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
    assert df["timestamp"].tolist() == list(
        pd.date_range("2024-03-01 00:00", "2024-03-01 04:00", freq="h", tz="UTC")
    )
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert set(df["symbol"]) == {"BTC/USDT"}
    assert df.index.equals(pd.RangeIndex(5))
    raw = pd.read_parquet(DATA / "market" / "BTC_USDT-1h.parquet")
    row = raw.loc[raw["timestamp"] == utc("2024-03-01 02:00")].iloc[0]
    assert df.loc[2, ["open", "high", "low", "close", "volume"]].tolist() == [
        row["open"],
        row["high"],
        row["low"],
        row["close"],
        row["volume"],
    ]


@needs_data
def test_read_perp_with_user_symbol(real: ParquetStore) -> None:
    df = real.read_candles(
        "BTC/USDT:USDT", "1h", utc("2025-09-30 20:00"), None, as_symbol="BTC/USDT"
    )
    assert len(df) == 4  # 20:00 .. 23:00, the last bar of the development data
    assert set(df["symbol"]) == {"BTC/USDT"}
    spot = real.read_candles("BTC/USDT", "1h", utc("2025-09-30 20:00"))
    assert set(spot["symbol"]) == {"BTC/USDT"}
    assert not (df["close"].to_numpy() == spot["close"].to_numpy()).all()  # a different market


@needs_data
def test_read_funding_window_and_coverage(real: ParquetStore) -> None:
    f = real.read_funding("SOL/USDT:USDT", None, utc("2024-01-02"), as_symbol="SOL/USDT")
    assert f["timestamp"].tolist() == [
        utc("2024-01-01 00:00"),
        utc("2024-01-01 08:00"),
        utc("2024-01-01 16:00"),
    ]
    assert set(f["symbol"]) == {"SOL/USDT"}
    assert real.funding_coverage("SOL/USDT:USDT") == (utc("2024-01-01"), utc("2025-09-30 16:00"))
    assert real.candle_coverage("BTC/USDT", "1h") == (utc("2018-01-01"), utc("2025-09-30 23:00"))
    assert real.candle_coverage("SOL/USDT:USDT", "1h")[0] == utc("2024-01-01")
    assert real.candle_coverage("XRP/USDT", "1h") == (
        utc("2018-05-04 08:00"),
        utc("2025-09-30 23:00"),
    )
    assert real.candle_coverage("XRP/USDT:USDT", "1h")[0] == utc("2020-01-06 08:00")
    assert real.candle_coverage("ADA/USDT", "1h") is None
    assert real.has_candles("ETH/USDT:USDT", "1h")
    assert not real.has_candles("ETH/USDT:USDT", "5m")
    assert real.has_funding("ETH/USDT:USDT")
    assert real.has_funding("XRP/USDT:USDT")
    assert not real.has_funding("ADA/USDT:USDT")


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"XRP/USDT 1h candles: file .*XRP_USDT-1h.parquet"):
        ParquetStore(tmp_path).read_candles("XRP/USDT", "1h")


def _bars(start: str, n: int, price: float) -> pd.DataFrame:
    ts = pd.date_range(start, periods=n, freq="h", tz="UTC")
    return pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "ignored",
            "open": price,
            "high": price + 1,
            "low": price - 1,
            "close": price,
            "volume": 1.0,
        }
    )


def test_write_candles_merges_atomically(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    path = store.write_candles(_bars("2024-01-01 00:00", 4, 10.0), "BTC/USDT", "1h")
    assert path == tmp_path / "market" / "BTC_USDT-1h.parquet"
    # overlap 02:00-03:00 and extend to 05:00 with different prices: new rows win, old rows kept
    store.write_candles(_bars("2024-01-01 02:00", 4, 20.0), "BTC/USDT", "1h")
    df = store.read_candles("BTC/USDT", "1h")
    assert df["timestamp"].tolist() == list(
        pd.date_range("2024-01-01 00:00", periods=6, freq="h", tz="UTC")
    )
    assert df["close"].tolist() == [10.0, 10.0, 20.0, 20.0, 20.0, 20.0]
    assert set(df["symbol"]) == {"BTC/USDT"}  # the file's symbol, not the frame's
    # same column layout as the shared files, no temporary files left behind
    assert pq.read_schema(path).names == [
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "symbol",
        "timeframe",
    ]
    assert set(pd.read_parquet(path)["timeframe"]) == {"1h"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["BTC_USDT-1h.parquet"]
    # an older, unsorted batch is merged in order
    store.write_candles(_bars("2023-12-31 22:00", 2, 5.0).iloc[::-1], "BTC/USDT", "1h")
    df = store.read_candles("BTC/USDT", "1h")
    assert len(df) == 8
    assert df["timestamp"].is_monotonic_increasing
    assert store.candle_coverage("BTC/USDT", "1h") == (
        utc("2023-12-31 22:00"),
        utc("2024-01-01 05:00"),
    )


def test_invalid_write_leaves_file_untouched(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    path = store.write_candles(_bars("2024-01-01", 3, 10.0), "ETH/USDT", "1h")
    before = path.read_bytes()
    bad = _bars("2024-01-01 03:00", 2, 10.0)
    bad.loc[1, "high"] = 1.0
    with pytest.raises(DataValidationError, match=r"high >= max\(open, close\).*04:00:00"):
        store.write_candles(bad, "ETH/USDT", "1h")
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["ETH_USDT-1h.parquet"]


def test_write_funding_merges(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    first = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=3, freq="8h", tz="UTC"),
            "funding_rate": [1e-4, 2e-4, 3e-4],
        }
    )
    second = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01 16:00", periods=2, freq="8h", tz="UTC"),
            "funding_rate": [-1e-4, 5e-4],
        }
    )
    path = store.write_funding(first, "BTC/USDT:USDT")
    store.write_funding(second, "BTC/USDT:USDT")
    assert path == tmp_path / "funding" / "BTC_USDT_USDT-funding.parquet"
    assert pq.read_schema(path).names == ["timestamp", "symbol", "funding_rate"]
    f = store.read_funding("BTC/USDT:USDT")
    assert f["funding_rate"].tolist() == [1e-4, 2e-4, -1e-4, 5e-4]
    assert set(f["symbol"]) == {"BTC/USDT:USDT"}
