"""resolve_window and load_market_data on the real data (../shared/data) and small temp stores."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market import MarketData, ParquetStore, load_market_data, resolve_window

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not (DATA / "market").is_dir(), reason="no ../shared/data")
THREE = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="module")
def real() -> ParquetStore:
    return ParquetStore(DATA)


# ------------------------------------------------------------------------------ resolve_window
def test_default_window_on_real_data(real: ParquetStore) -> None:
    # last bar of every series is 2025-09-30 23:00 -> end 2025-10-01; SOL perp + funding start 2024
    assert resolve_window(real, THREE, "1h", None, None, 730) == (
        utc("2024-01-01"),
        utc("2025-10-01"),
    )
    assert resolve_window(real, THREE, "1h", None, None, 30) == (
        utc("2025-09-01"),
        utc("2025-10-01"),
    )
    # BTC alone: the perp starts 2019-09-08 17:00, its funding 2019-09-10 08:00
    assert resolve_window(real, ["BTC/USDT"], "1h", None, None, 5000)[0] == utc("2019-09-10 08:00")


def test_given_window_is_kept_and_default_start_follows_given_end(real: ParquetStore) -> None:
    window = resolve_window(real, THREE, "1h", utc("2025-01-01"), utc("2025-02-01"), 730)
    assert window == (utc("2025-01-01"), utc("2025-02-01"))
    assert resolve_window(real, THREE, "1h", None, utc("2025-03-01"), 10) == (
        utc("2025-02-19"),
        utc("2025-03-01"),
    )


def test_given_window_is_clipped_with_warning(real: ParquetStore, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="cryptoml_pipeline.market.source"):
        window = resolve_window(real, THREE, "1h", utc("2023-01-01"), utc("2026-01-01"), 730)
    assert window == (utc("2024-01-01"), utc("2025-10-01"))
    text = caplog.text
    assert "start 2023-01-01 00:00:00+00:00 is before the data" in text
    assert "end 2026-01-01 00:00:00+00:00 is beyond the data" in text


def test_no_symbols(real: ParquetStore) -> None:
    with pytest.raises(InputError, match=r"^no symbols selected$"):
        resolve_window(real, [], "1h", None, None, 30)


def test_unknown_symbol_names_files_and_directory(real: ParquetStore) -> None:
    with pytest.raises(InputError) as info:
        resolve_window(real, ["BTC/USDT", "XRP/USDT"], "1h", None, None, 30)
    message = str(info.value)
    assert "'XRP/USDT'" in message
    assert "XRP_USDT-1h.parquet" in message and "XRP_USDT_USDT-1h.parquet" in message
    assert str(DATA / "market") in message


def test_unknown_timeframe_for_symbol(real: ParquetStore) -> None:
    # 4h has no file but is resampled from 1h (test_market_repair); 3m has no file and no base
    with pytest.raises(InputError, match="no 3m candle file"):
        resolve_window(real, ["BTC/USDT"], "3m", None, None, 30)
    with pytest.raises(InputError, match="unsupported timeframe"):
        resolve_window(real, ["BTC/USDT"], "1x", None, None, 30)


def test_symbol_without_funding(tmp_path: Path, real: ParquetStore) -> None:
    store = ParquetStore(tmp_path)
    store.write_candles(
        real.read_candles("BTC/USDT", "1h", utc("2024-01-01"), utc("2024-01-03")), "BTC/USDT", "1h"
    )
    with pytest.raises(InputError, match=r"no funding data for 'BTC/USDT': BTC_USDT_USDT-funding"):
        resolve_window(store, ["BTC/USDT"], "1h", None, None, 30)


def test_start_not_before_end(real: ParquetStore) -> None:
    with pytest.raises(InputError, match=r"start 2025-01-02.* is not before end 2025-01-01"):
        resolve_window(real, THREE, "1h", utc("2025-01-02"), utc("2025-01-01"), 30)
    with pytest.raises(InputError, match="not before end"):
        resolve_window(real, THREE, "1h", utc("2025-01-01"), utc("2025-01-01"), 30)


def test_window_outside_the_data_of_a_symbol(real: ParquetStore) -> None:
    with pytest.raises(InputError) as info:
        resolve_window(real, THREE, "1h", utc("2021-01-01"), utc("2022-01-01"), 30)
    message = str(info.value)
    assert "outside the data of SOL/USDT" in message
    assert "2024-01-01 00:00:00+00:00 .. 2025-10-01 00:00:00+00:00" in message
    with pytest.raises(InputError, match="outside the data of BTC/USDT"):
        resolve_window(real, ["BTC/USDT"], "1h", utc("2025-10-01"), None, 30)


# --------------------------------------------------------------------------- load_market_data
def test_load_perpetual_on_real_data(real: ParquetStore) -> None:
    data = load_market_data(real, THREE, "1h", utc("2025-09-01"), utc("2025-09-03"))
    assert isinstance(data, MarketData)
    assert (data.source, data.synthetic, data.price_source) == ("parquet", False, "perpetual")
    assert data.price_sources == dict.fromkeys(THREE, "perpetual")
    assert (data.start, data.end, data.timeframe) == (utc("2025-09-01"), utc("2025-09-03"), "1h")
    c = data.candles
    assert list(c.columns) == ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
    assert c.index.equals(pd.RangeIndex(3 * 48))
    assert c["symbol"].tolist() == [s for s in THREE for _ in range(48)]
    assert c["timestamp"].min() == utc("2025-09-01") and c["timestamp"].max() == utc(
        "2025-09-02 23:00"
    )
    perp = real.read_candles("SOL/USDT:USDT", "1h", utc("2025-09-01"), utc("2025-09-03"))
    assert c.loc[c["symbol"] == "SOL/USDT", "close"].tolist() == perp["close"].tolist()
    f = data.funding
    assert list(f.columns) == ["timestamp", "symbol", "funding_rate"]
    assert f.index.equals(pd.RangeIndex(3 * 7))
    first = f.groupby("symbol")["timestamp"].min()
    assert (first == utc("2025-08-31 16:00")).all()  # [start - 8h, end)
    assert f["timestamp"].max() == utc("2025-09-02 16:00")


def test_perp_not_covering_start_uses_spot_proxy(real: ParquetStore, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="cryptoml_pipeline.market.source"):
        data = load_market_data(real, THREE, "1h", utc("2023-06-01"), utc("2023-06-02"))
    assert data.price_sources == {
        "BTC/USDT": "perpetual",
        "ETH/USDT": "perpetual",
        "SOL/USDT": "spot_proxy",
    }
    assert data.price_source == "mixed"
    assert "SOL/USDT:USDT starts only at 2024-01-01" in caplog.text
    spot = real.read_candles("SOL/USDT", "1h", utc("2023-06-01"), utc("2023-06-02"))
    sol = data.candles[data.candles["symbol"] == "SOL/USDT"]
    assert sol["close"].tolist() == spot["close"].tolist()
    assert set(data.funding["symbol"]) == {"BTC/USDT", "ETH/USDT"}  # no SOL funding before 2024


def test_spot_only_store_is_spot_proxy(tmp_path: Path, real: ParquetStore) -> None:
    store = ParquetStore(tmp_path)
    for symbol in ("BTC/USDT", "ETH/USDT"):
        store.write_candles(
            real.read_candles(symbol, "1h", utc("2024-05-01"), utc("2024-05-03")), symbol, "1h"
        )
    data = load_market_data(
        store, ["ETH/USDT", "BTC/USDT"], "1h", utc("2024-05-01 12:00"), utc("2024-05-02")
    )
    assert data.price_source == "spot_proxy"
    assert data.price_sources == {"ETH/USDT": "spot_proxy", "BTC/USDT": "spot_proxy"}
    assert data.candles["symbol"].tolist() == ["BTC/USDT"] * 12 + ["ETH/USDT"] * 12
    assert data.funding.empty and list(data.funding.columns) == [
        "timestamp",
        "symbol",
        "funding_rate",
    ]


def test_load_errors(tmp_path: Path, real: ParquetStore) -> None:
    with pytest.raises(InputError, match="no 1h candles for 'XRP/USDT'"):
        load_market_data(real, ["XRP/USDT"], "1h", utc("2025-01-01"), utc("2025-01-02"))
    with pytest.raises(InputError, match="not before end"):
        load_market_data(real, ["BTC/USDT"], "1h", utc("2025-01-02"), utc("2025-01-01"))
    with pytest.raises(InputError, match="no symbols selected"):
        load_market_data(real, [], "1h", utc("2025-01-01"), utc("2025-01-02"))


FUNDING_CUT = pd.Timestamp("2025-09-28 16:00", tz="UTC")


def _store_with_funding_cut(root: Path) -> ParquetStore:
    """BTC perpetual candles to 2025-09-30 23:00 with funding only up to FUNDING_CUT."""
    import shutil

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    (root / "market").mkdir()
    (root / "funding").mkdir()
    shutil.copy(shared / "market" / "BTC_USDT_USDT-1h.parquet", root / "market")
    funding = pd.read_parquet(shared / "funding" / "BTC_USDT_USDT-funding.parquet")
    funding[funding["timestamp"] <= FUNDING_CUT].to_parquet(
        root / "funding" / "BTC_USDT_USDT-funding.parquet", index=False
    )
    return ParquetStore(root)


def test_window_end_never_passes_the_funding_history(tmp_path) -> None:
    """Funding that stops before the candles bounds the window (no MissingFundingError later)."""
    store = _store_with_funding_cut(tmp_path)
    _, end = resolve_window(store, ["BTC/USDT"], "1h", None, None, 30)
    assert end == FUNDING_CUT + pd.Timedelta(hours=8)


def test_window_end_uses_the_configured_funding_interval(tmp_path) -> None:
    store = _store_with_funding_cut(tmp_path)
    _, end = resolve_window(store, ["BTC/USDT"], "1h", None, None, 30, funding_interval_hours=4)
    assert end == FUNDING_CUT + pd.Timedelta(hours=4)


def test_history_is_prepended_for_warm_up_only() -> None:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    store = ParquetStore(shared)
    start, end = pd.Timestamp("2025-03-01", tz="UTC"), pd.Timestamp("2025-04-01", tz="UTC")
    plain = load_market_data(store, ["BTC/USDT", "SOL/USDT"], "1h", start, end)
    warm = load_market_data(
        store, ["BTC/USDT", "SOL/USDT"], "1h", start, end, history=pd.Timedelta(days=10)
    )
    assert warm.start == start and warm.price_sources == plain.price_sources
    assert warm.candles["timestamp"].min() == start - pd.Timedelta(days=10)
    inside = warm.candles[warm.candles["timestamp"] >= start].reset_index(drop=True)
    pd.testing.assert_frame_equal(inside, plain.candles)
    assert warm.funding["timestamp"].min() < start - pd.Timedelta(days=9)
