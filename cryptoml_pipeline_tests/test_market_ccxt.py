"""Offline replay of the ccxt download through ccxt's real Binance request building and parsing.

A ``ccxt.binance()`` instance gets minimal markets (``set_markets``) and its low-level ``fetch`` is
replaced by a fake Binance server that answers ``/api/v3/klines``, ``/fapi/v1/klines`` and
``/fapi/v1/fundingRate`` from rows of the real parquet files, honouring startTime/endTime/limit.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import ccxt
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market import (
    ParquetStore,
    download_to_store,
    fetch_funding_history,
    fetch_ohlcv_history,
    load_via_ccxt,
    make_exchange,
)
from cryptoml_pipeline_tests.fixtures.market.wire import market

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not (DATA / "market").is_dir(), reason="no ../shared/data")
HOUR_MS = 3_600_000
SPOT, PERP = "/api/v3/klines", "/fapi/v1/klines"
FUNDING = "/fapi/v1/fundingRate"


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def raw_klines(df: pd.DataFrame) -> list[list]:
    """Binance kline arrays (strings for numbers, as the API sends them)."""
    return [
        [
            ms(r.timestamp),
            repr(r.open),
            repr(r.high),
            repr(r.low),
            repr(r.close),
            repr(r.volume),
            ms(r.timestamp) + HOUR_MS - 1,
            "0",
            100,
            "0",
            "0",
            "0",
        ]
        for r in df.itertuples()
    ]


def raw_funding(df: pd.DataFrame) -> list[dict]:
    """Binance fundingRate records; every other one with the real API's millisecond jitter."""
    return [
        {
            "symbol": "BTCUSDT",
            "fundingTime": ms(r.timestamp) + (i % 2),
            "fundingRate": f"{r.funding_rate:.8f}",
            "markPrice": "10000.00000000",
        }
        for i, r in enumerate(df.itertuples())
    ]


class FakeBinance:
    """Answers ccxt's requests like Binance: rows with startTime <= t <= endTime, at most limit."""

    def __init__(self, klines: dict[str, list[list]], funding: list[dict]) -> None:
        self.klines = klines
        self.funding = funding
        self.requests: list[tuple[str, dict[str, str]]] = []

    def __call__(self, url, method="GET", headers=None, body=None):
        parsed = urlparse(url)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        self.requests.append((parsed.path, query))
        lo = int(query.get("startTime", 0))
        hi = int(query.get("endTime", 2**62))
        limit = int(query.get("limit", 500))
        if parsed.path in self.klines:
            return [row for row in self.klines[parsed.path] if lo <= row[0] <= hi][:limit]
        if parsed.path == FUNDING:
            return [rec for rec in self.funding if lo <= rec["fundingTime"] <= hi][:limit]
        raise AssertionError(f"unexpected request {method} {url}")

    def calls(self, path: str) -> list[dict[str, str]]:
        return [q for p, q in self.requests if p == path]


@pytest.fixture(scope="module")
def real() -> ParquetStore:
    return ParquetStore(DATA)


@pytest.fixture(scope="module")
def source_rows(real: ParquetStore) -> dict[str, pd.DataFrame]:
    return {
        SPOT: real.read_candles("BTC/USDT", "1h", utc("2019-09-09"), utc("2019-09-12")),
        PERP: real.read_candles("BTC/USDT:USDT", "1h", None, utc("2019-09-12 20:00")),
        FUNDING: real.read_funding("BTC/USDT:USDT", None, utc("2019-09-13")),
    }


def _exchange(
    source_rows: dict[str, pd.DataFrame], perp: pd.DataFrame | None = None
) -> tuple[ccxt.binance, FakeBinance]:
    exchange = ccxt.binance()
    exchange.set_markets([market("BTC/USDT", "spot"), market("BTC/USDT:USDT", "swap")])
    perp = source_rows[PERP] if perp is None else perp
    server = FakeBinance(
        {SPOT: raw_klines(source_rows[SPOT]), PERP: raw_klines(perp)},
        raw_funding(source_rows[FUNDING]),
    )
    exchange.fetch = server
    return exchange, server


def test_make_exchange_is_public_and_rate_limited() -> None:
    exchange = make_exchange("binance")
    assert exchange.id == "binance"
    assert exchange.enableRateLimit is True
    assert not exchange.apiKey and not exchange.secret
    with pytest.raises(InputError, match="unknown ccxt exchange 'nope'"):
        make_exchange("nope")


def test_paginated_ohlcv_drops_unfinished_candle(source_rows) -> None:
    first = source_rows[PERP].iloc[:10]  # 2019-09-08 17:00 .. 2019-09-09 02:00: all it serves
    exchange, server = _exchange(source_rows, perp=first)
    now = first["timestamp"].iloc[9] + pd.Timedelta(minutes=30)  # the 10th candle is still open
    df = fetch_ohlcv_history(
        exchange, "BTC/USDT:USDT", "1h", utc("2019-09-08"), utc("2019-09-10"), limit=3, now=now
    )
    expected = first.iloc[:9].assign(symbol="BTC/USDT:USDT").reset_index(drop=True)
    pd.testing.assert_frame_equal(df, expected)
    assert df["timestamp"].is_unique
    starts = [int(q["startTime"]) for q in server.calls(PERP)]
    assert all(int(q["limit"]) == 3 for q in server.calls(PERP))
    # each page starts just after the last candle of the previous one; the 5th page is empty
    first_ms = ms(first["timestamp"].iloc[0])
    assert starts == [
        ms(utc("2019-09-08")),
        first_ms + 2 * HOUR_MS + 1,
        first_ms + 5 * HOUR_MS + 1,
        first_ms + 8 * HOUR_MS + 1,
        first_ms + 9 * HOUR_MS + 1,
    ]
    assert server.calls(SPOT) == []


def test_ohlcv_stops_at_until(source_rows) -> None:
    exchange, server = _exchange(source_rows)
    df = fetch_ohlcv_history(
        exchange, "BTC/USDT", "1h", utc("2019-09-10 00:00"), utc("2019-09-10 07:00"), limit=3
    )
    expected = source_rows[SPOT]
    expected = expected[
        (expected["timestamp"] >= utc("2019-09-10"))
        & (expected["timestamp"] < utc("2019-09-10 07:00"))
    ]
    pd.testing.assert_frame_equal(df, expected.reset_index(drop=True))
    assert all(int(q["endTime"]) == ms(utc("2019-09-10 07:00")) - 1 for q in server.calls(SPOT))
    assert len(server.calls(SPOT)) <= 4


def test_funding_history_is_paginated_and_floored(source_rows) -> None:
    exchange, server = _exchange(source_rows)
    df = fetch_funding_history(
        exchange, "BTC/USDT:USDT", utc("2019-09-10"), utc("2019-09-12 08:00"), limit=2
    )
    expected = source_rows[FUNDING]
    expected = expected[expected["timestamp"] < utc("2019-09-12 08:00")].reset_index(drop=True)
    assert len(expected) == 6
    pd.testing.assert_frame_equal(df, expected)  # jittered fundingTime floored to the second
    assert len(server.calls(FUNDING)) >= 3
    assert all(int(q["limit"]) == 2 for q in server.calls(FUNDING))


def test_download_to_store_round_trips(tmp_path: Path, real: ParquetStore, source_rows) -> None:
    exchange, server = _exchange(source_rows)
    store = ParquetStore(tmp_path)
    start, end = utc("2019-09-10"), utc("2019-09-11")
    fetched = download_to_store(store, ["BTC/USDT"], "1h", start, end, exchange=exchange)
    assert fetched == {"BTC/USDT 1h": 24, "BTC/USDT:USDT 1h": 24, "BTC/USDT:USDT funding": 2}
    for symbol in ("BTC/USDT", "BTC/USDT:USDT"):
        pd.testing.assert_frame_equal(
            store.read_candles(symbol, "1h"), real.read_candles(symbol, "1h", start, end)
        )
    pd.testing.assert_frame_equal(
        store.read_funding("BTC/USDT:USDT"),
        real.read_funding("BTC/USDT:USDT", start - pd.Timedelta(hours=8), end),
    )
    # a second download finds the candles already stored and asks only for missing funding
    before = len(server.calls(SPOT)) + len(server.calls(PERP))
    spot_file = store.candles_path("BTC/USDT", "1h").read_bytes()
    data = load_via_ccxt(store, ["BTC/USDT"], "1h", start, end, exchange=exchange)
    assert len(server.calls(SPOT)) + len(server.calls(PERP)) == before
    assert store.candles_path("BTC/USDT", "1h").read_bytes() == spot_file
    assert (data.source, data.synthetic, data.price_source) == ("ccxt", False, "perpetual")
    pd.testing.assert_frame_equal(
        data.candles, real.read_candles("BTC/USDT:USDT", "1h", start, end, as_symbol="BTC/USDT")
    )
    assert data.funding["timestamp"].tolist() == [utc("2019-09-10 08:00"), utc("2019-09-10 16:00")]


def test_download_checks_capabilities_and_markets(tmp_path: Path, source_rows) -> None:
    exchange, _ = _exchange(source_rows)
    store = ParquetStore(tmp_path)
    with pytest.raises(InputError, match="binance lists no market 'ETH/USDT'"):
        download_to_store(
            store, ["ETH/USDT"], "1h", utc("2019-09-10"), utc("2019-09-11"), exchange=exchange
        )
    exchange.has = {**exchange.has, "fetchFundingRateHistory": False}
    with pytest.raises(InputError, match="'binance' does not support fetchFundingRateHistory"):
        download_to_store(
            store, ["BTC/USDT"], "1h", utc("2019-09-10"), utc("2019-09-11"), exchange=exchange
        )
    assert not (tmp_path / "market").exists()
