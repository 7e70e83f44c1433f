"""Incremental, idempotent landing through ccxt's real Binance code, offline.

The exchange is a real ``ccxt.binance`` whose HTTP session answers from the wire-format fixtures
in ``fixtures/market`` (real Binance candles/funding from ../shared/data; open interest made up).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import ccxt
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market import ParquetStore
from cryptoml_pipeline.market.ccxt_source import fetch_ohlcv_history, make_exchange
from cryptoml_pipeline.market.ingest import (
    backfill,
    check_exchange,
    land_funding_day,
    land_ohlcv_day,
    land_open_interest_day,
    summarise,
)
from cryptoml_pipeline.market.retry import Backoff
from cryptoml_pipeline.settings import IngestConfig
from cryptoml_pipeline_tests.fixtures.market.wire import (
    FUNDING,
    OPEN_INTEREST,
    PERP,
    SPOT,
    fake_binance,
    reply,
)

DAY1, DAY2 = "2025-03-01", "2025-03-02"
CONFIG = IngestConfig(symbols=("BTC/USDT",), timeframes=("1h",))


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def no_sleep() -> tuple[Backoff, list[float]]:
    slept: list[float] = []
    return Backoff(max_attempts=5, sleep=slept.append, rng=random.Random(0)), slept


def wire_rows(name: str, day: str) -> list:
    lo, hi = utc(day).value // 10**6, (utc(day) + pd.Timedelta(days=1)).value // 10**6
    return [r for r in reply(name) if lo <= r[0] < hi]


def test_landing_a_day_stores_exactly_the_wire_values(tmp_path: Path) -> None:
    exchange, server = fake_binance()
    store = ParquetStore(tmp_path)
    backoff, _ = no_sleep()
    results = land_ohlcv_day(store, exchange, DAY1, CONFIG, backoff=backoff)
    assert [(r.series, r.status, r.rows) for r in results] == [
        ("BTC/USDT 1h", "written", 24),
        ("BTC/USDT:USDT 1h", "written", 24),
    ]
    for symbol, name in (
        ("BTC/USDT", "binance_spot_klines_btcusdt_1h.json"),
        ("BTC/USDT:USDT", "binance_perp_klines_btcusdt_1h.json"),
    ):
        stored = store.read_candles(symbol, "1h")
        raw = wire_rows(name, DAY1)
        assert stored["timestamp"].tolist() == [
            utc(DAY1) + pd.Timedelta(hours=i) for i in range(24)
        ]
        assert stored["close"].tolist() == [float(r[4]) for r in raw]
        assert stored["volume"].tolist() == [float(r[5]) for r in raw]
    assert server.calls(SPOT) and server.calls(PERP)


def test_relanding_replaces_the_day_and_never_duplicates(tmp_path: Path) -> None:
    exchange, _ = fake_binance()
    store = ParquetStore(tmp_path)
    backoff, _ = no_sleep()
    land_ohlcv_day(store, exchange, DAY1, CONFIG, backoff=backoff)
    land_ohlcv_day(store, exchange, DAY2, CONFIG, backoff=backoff)
    first = store.read_candles("BTC/USDT", "1h")
    # the exchange now reports a corrected close for one bar of day 2: re-landing replaces it
    routes = fake_binance()[1].routes
    fixed = [list(r) for r in routes[(SPOT, "1h")]]
    k = next(i for i, r in enumerate(fixed) if r[0] == utc(DAY2 + " 05:00").value // 10**6)
    fixed[k][4] = str(float(fixed[k][4]) + 1.0)
    fixed[k][2] = str(max(float(fixed[k][2]), float(fixed[k][4])))
    exchange2, _ = fake_binance({**routes, (SPOT, "1h"): fixed})
    land_ohlcv_day(store, exchange2, DAY2, CONFIG, backoff=backoff)
    land_ohlcv_day(store, exchange2, DAY2, CONFIG, backoff=backoff)
    second = store.read_candles("BTC/USDT", "1h")
    assert len(second) == len(first) == 48 and second["timestamp"].is_unique
    changed = second["close"] != first["close"]
    assert second.loc[changed, "timestamp"].tolist() == [utc(DAY2 + " 05:00")]
    pd.testing.assert_frame_equal(second.iloc[:24], first.iloc[:24])  # day 1 untouched


def test_unfinished_candle_is_never_stored(tmp_path: Path) -> None:
    exchange, _ = fake_binance()
    store = ParquetStore(tmp_path)
    now = utc(DAY1 + " 10:30")  # the 10:00 candle is still forming
    land_ohlcv_day(store, exchange, DAY1, CONFIG, now=now, backoff=no_sleep()[0])
    stamps = store.read_candles("BTC/USDT", "1h")["timestamp"]
    assert stamps.max() == utc(DAY1 + " 09:00") and len(stamps) == 10
    # a later run completes the day without duplicating the first ten bars
    land_ohlcv_day(store, exchange, DAY1, CONFIG, backoff=no_sleep()[0])
    assert len(store.read_candles("BTC/USDT", "1h")) == 24


def test_pagination_respects_the_request_limit(tmp_path: Path) -> None:
    exchange, server = fake_binance()
    df = fetch_ohlcv_history(
        exchange, "BTC/USDT", "5m", utc(DAY1), utc(DAY2), limit=100, backoff=no_sleep()[0]
    )
    assert len(df) == 288 and df["timestamp"].is_unique and df["timestamp"].is_monotonic_increasing
    assert [int(q["limit"]) for q in server.calls(SPOT)] == [100, 100, 100, 100]
    assert all(int(q["endTime"]) == utc(DAY2).value // 10**6 - 1 for q in server.calls(SPOT))


def test_backfill_resumes_where_it_stopped(tmp_path: Path) -> None:
    exchange, server = fake_binance()
    store = ParquetStore(tmp_path)
    config = CONFIG.model_copy(update={"markets": ("spot",), "funding": False})
    # the first backfill dies on day 2: after day 1's two requests Binance answers HTTP 500
    original = server.request

    def failing_after_day_one(method, url, **kwargs):
        if len(server.calls(SPOT)) >= 2:
            server.failures[SPOT].append((500, "Internal"))
        return original(method, url, **kwargs)

    server.request = failing_after_day_one
    backoff = Backoff(max_attempts=2, sleep=lambda s: None)
    with pytest.raises(Exception, match="ExchangeNotAvailable after 2 attempts"):
        backfill(store, exchange, DAY1, "2025-03-03", config, backoff=backoff, chunk_days=1)
    assert len(store.read_candles("BTC/USDT", "1h")) == 24  # day 1 kept
    # the rerun skips day 1 (complete) and lands day 2
    exchange2, server2 = fake_binance()
    results = backfill(store, exchange2, DAY1, "2025-03-03", config, backoff=backoff, chunk_days=1)
    assert [(r.series, r.status) for r in results] == [
        ("BTC/USDT 1h", "skipped"),
        ("BTC/USDT 1h", "written"),
    ]
    starts = {int(q["startTime"]) for q in server2.calls(SPOT)}
    assert min(starts) >= utc(DAY2).value // 10**6
    assert len(store.read_candles("BTC/USDT", "1h")) == 48
    assert summarise(results)["rows_written"] == 24


def test_backfill_fetches_missing_days_in_paginated_chunks(tmp_path: Path) -> None:
    exchange, server = fake_binance()
    store = ParquetStore(tmp_path)
    config = CONFIG.model_copy(update={"timeframes": ("5m",), "markets": ("spot",)})
    results = backfill(store, exchange, DAY1, "2025-03-03", config, backoff=no_sleep()[0])
    assert [(r.series, r.status, r.rows) for r in results] == [("BTC/USDT 5m", "written", 576)]
    assert len(server.calls(SPOT)) == 2  # 576 bars in one page of 1000 + the empty last page
    again = backfill(store, exchange, DAY1, "2025-03-03", config, backoff=no_sleep()[0])
    assert [(r.status, r.reason) for r in again] == [("skipped", "2 days complete")]
    assert len(server.calls(SPOT)) == 2


def test_funding_and_open_interest_days(tmp_path: Path) -> None:
    exchange, server = fake_binance()
    store = ParquetStore(tmp_path)
    backoff, _ = no_sleep()
    res = land_funding_day(store, exchange, DAY1, CONFIG, backoff=backoff)
    assert [(r.series, r.rows) for r in res] == [("BTC/USDT:USDT funding", 3)]
    funding = store.read_funding("BTC/USDT:USDT")
    wire = [
        r
        for r in reply("binance_funding_btcusdt.json")
        if DAY1 in str(pd.Timestamp(r["fundingTime"], unit="ms", tz="UTC").date())
    ]
    assert funding["funding_rate"].tolist() == [float(r["fundingRate"]) for r in wire]
    assert funding["timestamp"].dt.second.eq(0).all()  # millisecond jitter floored
    res = land_open_interest_day(store, exchange, DAY1, CONFIG, backoff=backoff)
    assert [(r.status, r.rows) for r in res] == [("written", 24)]
    oi = store.read_open_interest("BTC/USDT:USDT", "1h")
    assert oi["open_interest"].iloc[0] == 80000.0 and server.calls(OPEN_INTEREST)
    assert server.calls(FUNDING)


def test_open_interest_unavailable_is_explicit(tmp_path: Path) -> None:
    exchange, _ = fake_binance()
    exchange.has = {**exchange.has, "fetchOpenInterestHistory": False}
    res = land_open_interest_day(ParquetStore(tmp_path), exchange, DAY1, CONFIG)
    assert res[0].status == "unavailable" and "does not offer" in res[0].reason
    assert not (tmp_path / "open_interest").exists()


def test_capabilities_timeframes_and_markets_fail_clearly() -> None:
    exchange, _ = fake_binance()
    backoff, _ = no_sleep()
    check_exchange(exchange, CONFIG, backoff)
    with pytest.raises(InputError, match="offers no 7m candles"):
        check_exchange(exchange, CONFIG.model_copy(update={"timeframes": ("7m",)}), backoff)
    with pytest.raises(InputError, match="binance lists no market 'ETH/USDT', 'ETH/USDT:USDT'"):
        check_exchange(exchange, CONFIG.model_copy(update={"symbols": ("ETH/USDT",)}), backoff)
    exchange.has = {**exchange.has, "fetchOHLCV": False, "fetchFundingRateHistory": False}
    with pytest.raises(InputError, match="does not support fetchOHLCV, fetchFundingRateHistory"):
        check_exchange(exchange, CONFIG, backoff)
    kraken = ccxt.kraken()
    with pytest.raises(InputError, match="'kraken' does not support fetchFundingRateHistory"):
        check_exchange(kraken, CONFIG, backoff)


def test_keys_only_when_given_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    public = make_exchange("binance")
    assert public.enableRateLimit is True and not public.apiKey
    secret = "s3cr3t-value-never-logged"
    keyed = make_exchange("binance", api_key="key-id-123", secret=secret)
    assert keyed.apiKey == "key-id-123" and keyed.secret == secret
    exchange, server = fake_binance()
    exchange.apiKey, exchange.secret = "key-id-123", secret
    server.failures[SPOT] = [(429, '{"code":-1003,"msg":"Too many requests"}')]
    with caplog.at_level(logging.DEBUG, logger="cryptoml_pipeline"):
        land_ohlcv_day(ParquetStore(tmp_path), exchange, DAY1, CONFIG, backoff=no_sleep()[0])
    assert caplog.records and all(secret not in r.getMessage() for r in caplog.records)


def test_cli_data_fails_clearly_before_any_request(tmp_path: Path, capsys) -> None:
    from cryptoml_pipeline.cli import main

    assert main(["data", "--data-dir", str(tmp_path), "--exchange", "nope"]) == 2
    assert capsys.readouterr().err.strip() == "cryptoml: error: unknown ccxt exchange 'nope'"
    assert main(["data", "--data-dir", str(tmp_path), "--exchange", "kraken"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cryptoml: error: exchange 'kraken' does not support fetchFundingRateHistory"]
    assert not any(tmp_path.iterdir())
