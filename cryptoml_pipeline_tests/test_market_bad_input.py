"""Bad input gets the documented repair or a one-line error, and stored data never changes.

Corrupted parquet files (built from the wire fixtures' real Binance values) are landed into a
store that already holds data; corrupted exchange replies go through ccxt's real HTTP error
mapping (:class:`FakeBinanceSession`). Every failure must be one line naming the file or the
symbol and the timestamp, and the stored file must be byte-identical afterwards.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from cryptoml_pipeline.errors import DataValidationError
from cryptoml_pipeline.market import ParquetStore
from cryptoml_pipeline.market.ccxt_source import fetch_ohlcv_history
from cryptoml_pipeline.market.ingest import land_candles_frame, land_ohlcv_day
from cryptoml_pipeline.market.retry import Backoff, ExchangeFetchError, PermanentExchangeError
from cryptoml_pipeline.settings import IngestConfig
from cryptoml_pipeline_tests.fixtures.market.wire import SPOT, fake_binance, reply

DAY1, DAY2 = pd.Timestamp("2025-03-01", tz="UTC"), pd.Timestamp("2025-03-02", tz="UTC")
END = DAY2 + pd.Timedelta(days=1)
CONFIG = IngestConfig(symbols=("BTC/USDT",), timeframes=("1h",), markets=("spot",))


def day_frame(day: pd.Timestamp) -> pd.DataFrame:
    """Real BTC/USDT 1h candles of ``day`` from the wire fixture, as a long frame."""
    rows = [
        r
        for r in reply("binance_spot_klines_btcusdt_1h.json")
        if r[0] // 86_400_000 == (day.value // 86_400_000_000_000)
    ]
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime([r[0] for r in rows], unit="ms", utc=True),
            "symbol": "BTC/USDT",
            **{
                c: [float(r[i]) for r in rows]
                for i, c in enumerate(("open", "high", "low", "close", "volume"), start=1)
            },
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> ParquetStore:
    """A store already holding day 1 (the data that must survive every bad input)."""
    store = ParquetStore(tmp_path / "store")
    store.write_candles(day_frame(DAY1), "BTC/USDT", "1h")
    return store


def land_file(store: ParquetStore, frame: pd.DataFrame, tmp_path: Path, name: str):
    path = tmp_path / name
    frame.to_parquet(path)
    return land_candles_frame(
        store,
        pd.read_parquet(path),
        "BTC/USDT",
        "1h",
        DAY2,
        END,
        source=str(path),
        config=CONFIG,
    )


def assert_one_line_error(store: ParquetStore, run, *parts: str) -> None:
    before = store.candles_path("BTC/USDT", "1h").read_bytes()
    with pytest.raises(DataValidationError) as info:
        run()
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    assert store.candles_path("BTC/USDT", "1h").read_bytes() == before


# ---------------------------------------------------------------- corrupted files: repairs
def test_exact_duplicate_rows_are_dropped(store, tmp_path) -> None:
    good = day_frame(DAY2)
    dup = pd.concat([good, good.iloc[[3, 3, 10]]], ignore_index=True)
    result = land_file(store, dup, tmp_path, "dup.parquet")
    assert result.report.exact_duplicates_dropped == 3 and result.rows == 24
    stored = store.read_candles("BTC/USDT", "1h")
    assert len(stored) == 48 and stored["timestamp"].is_unique


def test_unsorted_rows_are_sorted(store, tmp_path) -> None:
    good = day_frame(DAY2)
    shuffled = good.sample(frac=1.0, random_state=3).reset_index(drop=True)
    result = land_file(store, shuffled, tmp_path, "unsorted.parquet")
    assert result.report.rows_reordered > 0
    stored = store.read_candles("BTC/USDT", "1h", DAY2, END)
    pd.testing.assert_frame_equal(stored, good.astype({"timestamp": stored["timestamp"].dtype}))


# ---------------------------------------------------------------- corrupted files: errors
@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda f: f.assign(close=f["close"].where(f.index != 7)), ["no NaN", "close", "07:00"]),
        (lambda f: f.assign(low=f["low"].where(f.index != 4, -1.0)), ["low > 0", "04:00"]),
        (lambda f: f.assign(open=f["open"].where(f.index != 5, 0.0)), ["open > 0", "05:00"]),
        (lambda f: f.assign(volume=f["volume"].where(f.index != 6, -2.0)), ["volume >= 0"]),
        (
            lambda f: f.assign(high=f["high"].where(f.index != 8, f["low"] * 0.5)),
            ["high >= max(open, close)", "08:00"],
        ),
        (
            lambda f: f.assign(
                timestamp=f["timestamp"].where(
                    f.index != 9, f["timestamp"] + pd.Timedelta(minutes=7)
                )
            ),
            ["1h grid", "09:07"],
        ),
    ],
    ids=["nan", "negative-price", "zero-price", "negative-volume", "ohlc", "off-grid"],
)
def test_hard_errors_name_file_and_timestamp(store, tmp_path, corrupt, expected) -> None:
    bad = corrupt(day_frame(DAY2))
    assert_one_line_error(
        store,
        lambda: land_file(store, bad, tmp_path, "bad.parquet"),
        "bad.parquet",
        "2025-03-02",
        *expected,
    )


def test_conflicting_duplicates_show_both_rows(store, tmp_path) -> None:
    good = day_frame(DAY2)
    clash = good.iloc[[12]].assign(close=good["close"].iloc[12] + 5.0)
    bad = pd.concat([good, clash], ignore_index=True)
    c1, c2 = good["close"].iloc[12], good["close"].iloc[12] + 5.0
    assert_one_line_error(
        store,
        lambda: land_file(store, bad, tmp_path, "clash.parquet"),
        "clash.parquet",
        "conflicting duplicate candles for BTC/USDT at 2025-03-02 12:00:00+00:00",
        f"close={c1}",
        f"close={c2}",
    )


def test_naive_timestamps_are_rejected(store, tmp_path) -> None:
    bad = day_frame(DAY2)
    bad["timestamp"] = bad["timestamp"].dt.tz_localize(None)
    assert_one_line_error(
        store, lambda: land_file(store, bad, tmp_path, "naive.parquet"), "naive.parquet", "naive"
    )


def test_strings_in_numeric_columns_are_rejected(store, tmp_path) -> None:
    bad = day_frame(DAY2).astype({"volume": "object"})
    bad.loc[11, "volume"] = "12,5"
    bad["volume"] = bad["volume"].astype(str)
    assert_one_line_error(
        store,
        lambda: land_file(store, bad, tmp_path, "strings.parquet"),
        "strings.parquet",
        "non-numeric value '12,5' in column 'volume'",
        "2025-03-02 11:00",
    )


def test_reading_a_corrupted_store_file_names_it(tmp_path) -> None:
    store = ParquetStore(tmp_path)
    bad = day_frame(DAY2).assign(symbol="BTC/USDT", timeframe="1h")
    bad.loc[2, "close"] = -5.0
    path = store.candles_path("BTC/USDT", "1h")
    path.parent.mkdir(parents=True)
    bad.to_parquet(path)
    with pytest.raises(DataValidationError, match=r"BTC_USDT-1h\.parquet.*close > 0.*02:00"):
        store.read_candles("BTC/USDT", "1h")


# ---------------------------------------------------------------- corrupted exchange replies
def backoff(attempts: int) -> tuple[Backoff, list[float]]:
    slept: list[float] = []
    return Backoff(
        max_attempts=attempts,
        base_delay_s=1.0,
        jitter=0.25,
        sleep=slept.append,
        rng=random.Random(1),
    ), slept


def test_http_429_then_success_retries_with_backoff(store) -> None:
    exchange, server = fake_binance()
    server.failures[SPOT] = [(429, '{"code":-1003,"msg":"Too many requests"}')]
    policy, slept = backoff(5)
    land_ohlcv_day(store, exchange, DAY2, CONFIG, backoff=policy)
    assert len(slept) == 1 and 0.75 <= slept[0] <= 1.25
    assert len(store.read_candles("BTC/USDT", "1h")) == 48


def test_http_500_three_times_then_success_or_clear_failure(store) -> None:
    exchange, server = fake_binance()
    server.failures[SPOT] = [(500, "Internal Server Error")] * 3
    policy, slept = backoff(5)
    land_ohlcv_day(store, exchange, DAY2, CONFIG, backoff=policy)
    assert len(slept) == 3 and slept[0] < slept[1] < slept[2]  # exponential
    assert len(store.read_candles("BTC/USDT", "1h")) == 48
    # with a bound of three attempts the same replies fail clearly and store nothing
    exchange, server = fake_binance()
    server.failures[SPOT] = [(500, "Internal Server Error")] * 3
    before = store.candles_path("BTC/USDT", "1h").read_bytes()
    policy, slept = backoff(3)
    with pytest.raises(ExchangeFetchError) as info:
        land_ohlcv_day(store, exchange, DAY2 + pd.Timedelta(days=1), CONFIG, backoff=policy)
    assert "binance BTC/USDT 1h candles from 2025-03-03" in str(info.value)
    assert "ExchangeNotAvailable after 3 attempts" in str(info.value)
    assert "\n" not in str(info.value) and len(slept) == 2
    assert store.candles_path("BTC/USDT", "1h").read_bytes() == before


def test_truncated_json_is_retried_then_fails_clearly(store) -> None:
    exchange, server = fake_binance()
    truncated = '[[1740873600000,"86000.0","86100.0","85900.0"'
    server.failures[SPOT] = [(200, truncated)] * 2
    policy, slept = backoff(2)
    before = store.candles_path("BTC/USDT", "1h").read_bytes()
    with pytest.raises(ExchangeFetchError, match=r"BTC/USDT 1h candles from 2025-03-02.*BadResp"):
        land_ohlcv_day(store, exchange, DAY2, CONFIG, backoff=policy)
    assert len(slept) == 1
    assert store.candles_path("BTC/USDT", "1h").read_bytes() == before
    # one truncated reply, then a good one: landed
    exchange, server = fake_binance()
    server.failures[SPOT] = [(200, truncated)]
    land_ohlcv_day(store, exchange, DAY2, CONFIG, backoff=backoff(3)[0])
    assert len(store.read_candles("BTC/USDT", "1h")) == 48


def test_non_numeric_value_in_reply_names_symbol_and_time(store) -> None:
    exchange, server = fake_binance()
    rows = [r for r in reply("binance_spot_klines_btcusdt_1h.json") if r[0] >= DAY2.value // 10**6]
    rows[3] = [rows[3][0], "abc", *rows[3][2:]]
    server.routes[(SPOT, "1h")] = rows
    assert_one_line_error(
        store,
        lambda: land_ohlcv_day(store, exchange, DAY2, CONFIG, backoff=backoff(3)[0]),
        "binance BTC/USDT 1h",
        "2025-03-02 03:00",
        "non-numeric",
    )


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, '{"code":-1121,"msg":"Invalid symbol."}', "BadSymbol"),
        (
            401,
            '{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}',
            "AuthenticationError",
        ),
    ],
)
def test_permanent_errors_fail_at_once(store, status, body, kind) -> None:
    exchange, server = fake_binance()
    server.failures[SPOT] = [(status, body)]
    policy, slept = backoff(5)
    with pytest.raises(PermanentExchangeError, match=f"{kind} \\(not retried\\)"):
        fetch_ohlcv_history(exchange, "BTC/USDT", "1h", DAY2, END, backoff=policy)
    assert slept == [] and len(server.calls(SPOT)) == 1
