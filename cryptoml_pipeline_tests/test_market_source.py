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
    # last bar of every series is 2025-09-30 23:00 -> end 2025-10-01; all the data by default:
    # the start is the EARLIEST first timestamp (BTC's funding, 2019-09-10 08:00), SOL joins 2024
    assert resolve_window(real, THREE, "1h", None, None, None) == (
        utc("2019-09-10 08:00"),
        utc("2025-10-01"),
    )
    assert resolve_window(real, THREE, "1h", None, None, 730) == (
        utc("2023-10-02"),
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
        window = resolve_window(real, THREE, "1h", utc("2019-01-01"), utc("2026-01-01"), 730)
    assert window == (utc("2019-09-10 08:00"), utc("2025-10-01"))
    text = caplog.text
    assert "start 2019-01-01 00:00:00+00:00 is before the data" in text
    assert "end 2026-01-01 00:00:00+00:00 is beyond the data" in text


def test_no_symbols(real: ParquetStore) -> None:
    with pytest.raises(InputError, match=r"^no symbols selected$"):
        resolve_window(real, [], "1h", None, None, 30)


def test_unknown_symbol_names_files_and_directory(real: ParquetStore) -> None:
    with pytest.raises(InputError) as info:
        resolve_window(real, ["BTC/USDT", "ADA/USDT"], "1h", None, None, 30)
    message = str(info.value)
    assert "traded symbol 'ADA/USDT' has no 1h perpetual candles" in message
    assert "ADA_USDT_USDT-1h.parquet" in message
    assert str(DATA / "market") in message
    assert "\n" not in message and "only spot candles" not in message  # no file at all
    # a symbol with spot candles only (AVAX) cannot be traded: no spot proxy, one line with a hint
    with pytest.raises(InputError) as info:
        resolve_window(real, ["BTC/USDT", "AVAX/USDT"], "1h", None, None, 30)
    message = str(info.value)
    assert "traded symbol 'AVAX/USDT' has no 1h perpetual candles" in message
    assert "AVAX_USDT_USDT-1h.parquet" in message and "\n" not in message
    assert "(only spot candles: it can be a --universe member, not traded)" in message


def test_unknown_timeframe_for_symbol(real: ParquetStore) -> None:
    # 4h has no file but is resampled from 1h (test_market_repair); 3m has no file and no base
    with pytest.raises(InputError, match="has no 3m perpetual candles"):
        resolve_window(real, ["BTC/USDT"], "3m", None, None, 30)
    with pytest.raises(InputError, match="unsupported timeframe"):
        resolve_window(real, ["BTC/USDT"], "1x", None, None, 30)


def test_symbol_without_funding(tmp_path: Path, real: ParquetStore) -> None:
    store = ParquetStore(tmp_path)
    perp = real.read_candles("BTC/USDT:USDT", "1h", utc("2024-01-01"), utc("2024-01-03"))
    store.write_candles(perp, "BTC/USDT:USDT", "1h")
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


def test_perp_starting_inside_the_window_joins_there(real: ParquetStore) -> None:
    """A traded perpetual whose data begin after the window's start joins at its first bar
    (nothing filled before it); one without data in the window is an error (no spot proxy)."""
    data = load_market_data(real, THREE, "1h", utc("2023-12-31"), utc("2024-01-02"))
    first = data.candles.groupby("symbol")["timestamp"].min()
    assert first["SOL/USDT"] == utc("2024-01-01") and first["BTC/USDT"] == utc("2023-12-31")
    assert (data.candles["symbol"] == "SOL/USDT").sum() == 24
    assert data.funding.loc[data.funding["symbol"] == "SOL/USDT", "timestamp"].min() == utc(
        "2024-01-01"
    )
    with pytest.raises(InputError) as info:
        load_market_data(real, THREE, "1h", utc("2023-06-01"), utc("2023-06-02"))
    message = str(info.value)
    assert message.startswith("traded symbol 'SOL/USDT': perpetual SOL/USDT:USDT has candles")
    assert "only from 2024-01-01 00:00:00+00:00 (SOL_USDT_USDT-1h.parquet)" in message
    assert "the window ends 2023-06-02 00:00:00+00:00" in message and "\n" not in message


def test_universe_member_comes_as_spot_candles(real: ParquetStore) -> None:
    """SOL as a (non-traded) universe member before its perpetual exists: its spot candles join
    the candles, the traded symbols are perpetuals and only they have funding."""
    data = load_market_data(
        real, ["BTC/USDT", "ETH/USDT"], "1h", utc("2023-06-01"), utc("2023-06-02"), universe=THREE
    )
    assert data.traded == ("BTC/USDT", "ETH/USDT") and data.universe == tuple(THREE)
    assert data.price_sources == {"BTC/USDT": "perpetual", "ETH/USDT": "perpetual"}
    assert data.price_source == "perpetual"
    assert data.candles["symbol"].tolist() == [s for s in THREE for _ in range(24)]
    spot = real.read_candles("SOL/USDT", "1h", utc("2023-06-01"), utc("2023-06-02"))
    sol = data.candles[data.candles["symbol"] == "SOL/USDT"]
    assert sol["close"].tolist() == spot["close"].tolist()
    perp = real.read_candles("BTC/USDT:USDT", "1h", utc("2023-06-01"), utc("2023-06-02"))
    btc = data.candles[data.candles["symbol"] == "BTC/USDT"]
    assert btc["close"].tolist() == perp["close"].tolist()
    assert set(data.funding["symbol"]) == {"BTC/USDT", "ETH/USDT"}  # universe members: no funding


def test_spot_only_store_cannot_be_traded(tmp_path: Path, real: ParquetStore) -> None:
    """A store with spot candles only has nothing to trade: the loader, the window and the default
    symbol list each fail with one line (formerly a spot proxy was traded)."""
    from cryptoml_pipeline.market.source import (
        available_perpetuals,
        available_spot,
        resolve_symbols,
    )

    store = ParquetStore(tmp_path)
    for symbol in ("BTC/USDT", "ETH/USDT"):
        store.write_candles(
            real.read_candles(symbol, "1h", utc("2024-05-01"), utc("2024-05-03")), symbol, "1h"
        )
    with pytest.raises(InputError, match=r"^traded symbol 'ETH/USDT': perpetual ETH/USDT:USDT has"):
        load_market_data(
            store, ["ETH/USDT", "BTC/USDT"], "1h", utc("2024-05-01 12:00"), utc("2024-05-02")
        )
    with pytest.raises(InputError, match="only spot candles"):
        resolve_window(store, ["BTC/USDT"], "1h", None, None, 30)
    assert available_perpetuals(store, "1h") == []
    assert available_spot(store, "1h") == ["BTC/USDT", "ETH/USDT"]
    with pytest.raises(InputError, match="no perpetual with 1h candles and funding"):
        resolve_symbols(store, None, None, "1h")


def test_load_errors(tmp_path: Path, real: ParquetStore) -> None:
    with pytest.raises(InputError, match="perpetual ADA/USDT:USDT has no candle file"):
        load_market_data(real, ["ADA/USDT"], "1h", utc("2025-01-01"), utc("2025-01-02"))
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


# ------------------------------------------------------------------- resolve_symbols / universe
def test_default_symbols_are_every_perpetual_with_funding(real: ParquetStore) -> None:
    """The shared data has BTC, ETH, SOL and XRP perpetuals with funding (AVAX etc. spot only)."""
    from cryptoml_pipeline.market.source import available_perpetuals, resolve_symbols

    assert available_perpetuals(real, "1h") == [*THREE, "XRP/USDT"]
    assert resolve_symbols(real, None, None, "1h") == ((*THREE, "XRP/USDT"), None)
    # given symbols are kept; the universe always contains them
    assert resolve_symbols(real, ["ETH/USDT:USDT"], ["BTC/USDT"], "1h") == (
        ("ETH/USDT",),
        ("BTC/USDT", "ETH/USDT"),
    )
    with pytest.raises(InputError, match="duplicate traded symbols"):
        resolve_symbols(real, ["BTC/USDT", "BTC/USDT:USDT"], None, "1h")


def test_default_universe_is_every_spot_series_in_the_window(real: ParquetStore) -> None:
    from cryptoml_pipeline.market.source import universe_in_window

    members = universe_in_window(
        real, ["BTC/USDT"], None, "1h", utc("2025-01-01"), utc("2025-01-06")
    )
    assert members == tuple(
        f"{c}/USDT"
        for c in ("AVAX", "BCH", "BTC", "DOGE", "DOT", "ETH", "LINK", "NEAR", "SOL", "XRP", "XTZ")
    )
    # in March 2018 only BTC and ETH spot exist (XRP spot starts 2018-05-04): the rest is skipped
    early = universe_in_window(real, ["BTC/USDT"], None, "1h", utc("2018-03-01"), utc("2018-04-01"))
    assert early == ("BTC/USDT", "ETH/USDT")
    with pytest.raises(InputError, match="universe member 'ADA/USDT' has no 1h spot candles"):
        universe_in_window(
            real, ["BTC/USDT"], ["ADA/USDT"], "1h", utc("2025-01-01"), utc("2025-01-06")
        )
