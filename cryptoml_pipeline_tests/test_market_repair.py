"""Repair rules and multi-timeframe resampling on slices of the real data in ../shared/data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.market import ParquetStore
from cryptoml_pipeline.market.repair import RepairReport, hard_rule_violations, repair_candles
from cryptoml_pipeline.market.resample import resample_candles
from cryptoml_pipeline_tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "market").is_dir(), reason="no shared data")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.fixture(scope="module")
def real() -> ParquetStore:
    return ParquetStore(SHARED_DATA)


@pytest.fixture(scope="module")
def hourly(real: ParquetStore) -> pd.DataFrame:
    """BTC + ETH spot 1h around the 2018-02-08/09 maintenance halt (a real 34-bar gap)."""
    return pd.concat(
        [
            real.read_candles(s, "1h", utc("2018-02-01"), utc("2018-02-20"))
            for s in ("BTC/USDT", "ETH/USDT")
        ],
        ignore_index=True,
    )


def test_clean_real_data_passes_unchanged(real: ParquetStore) -> None:
    df = real.read_candles("SOL/USDT", "5m", utc("2025-03-01"), utc("2025-03-08"))
    out, rep = repair_candles(df, "5m", source="sol")
    pd.testing.assert_frame_equal(out[list(df.columns)], df)
    assert (rep.rows_in, rep.rows_out, rep.missing_bars, rep.filled_bars) == (
        len(df),
        len(df),
        0,
        0,
    )
    assert not out["is_filled"].any()
    assert all(v == 0 for v in hard_rule_violations(out, "5m").values())


def test_gaps_are_reported_never_filled_by_default(hourly: pd.DataFrame) -> None:
    out, rep = repair_candles(hourly, "1h", source="x")
    steps = hourly.groupby("symbol")["timestamp"].diff().dropna() / pd.Timedelta(hours=1)
    assert rep.missing_bars == int((steps - 1).clip(lower=0).sum()) > 0
    assert rep.gap_events == int((steps > 1).sum())
    assert rep.longest_gap_bars == int(steps.max() - 1)
    assert rep.filled_bars == 0 and len(out) == len(hourly)


def test_short_gaps_forward_filled_and_marked(hourly: pd.DataFrame) -> None:
    btc = hourly[hourly["symbol"] == "BTC/USDT"].reset_index(drop=True)
    cut = btc.drop(index=[100, 101, 200]).reset_index(drop=True)  # a 2-bar and a 1-bar gap
    _, plain = repair_candles(cut, "1h", source="x")
    out, rep = repair_candles(cut, "1h", source="x", max_fill_bars=2)
    assert rep.filled_bars == 3 + plain.filled_bars
    filled = out[out["is_filled"]]
    dropped_stamps = set(btc.loc[[100, 101, 200], "timestamp"])
    assert dropped_stamps <= set(filled["timestamp"])
    # a filled bar repeats the previous real close with zero volume; long gaps stay open
    for ts in dropped_stamps:
        row = out[out["timestamp"] == ts].iloc[0]
        prev_close = cut[cut["timestamp"] < ts]["close"].iloc[-1]
        assert (row.open, row.high, row.low, row.close, row.volume) == (prev_close,) * 4 + (0.0,)
    assert rep.longest_gap_bars == plain.longest_gap_bars > 2
    assert not out["is_zero_volume"][out["is_filled"]].any()


def test_zero_volume_and_reversing_spike_flagged(hourly: pd.DataFrame) -> None:
    df = hourly[hourly["symbol"] == "BTC/USDT"].reset_index(drop=True).copy()
    df.loc[60, "volume"] = 0.0
    k = 150  # a one-bar +40 % print that the next bar reverses
    for col in ("open", "high", "low", "close"):
        df.loc[k, col] = df.loc[k - 1, "close"] * 1.4
    df.loc[k, "open"] = df.loc[k - 1, "close"]
    df.loc[k, "low"] = df.loc[k - 1, "close"]
    df.loc[k + 1, "open"] = df.loc[k, "close"]
    df.loc[k + 1, "high"] = df.loc[k, "close"]
    out, rep = repair_candles(df, "1h", source="x", outlier_k=8.0, outlier_window=100)
    assert out.loc[out["timestamp"] == df.loc[k, "timestamp"], "is_spike"].item()
    assert not out.loc[out["timestamp"] == df.loc[k + 1, "timestamp"], "is_spike"].item()
    assert out.loc[out["timestamp"] == df.loc[60, "timestamp"], "is_zero_volume"].item()
    assert rep.spike_bars == int(out["is_spike"].sum()) >= 1
    assert rep.zero_volume_bars == int((df["volume"] == 0).sum())
    # a level shift that persists is not a spike
    shifted = df.copy()
    shifted.loc[k:, ["open", "high", "low", "close"]] *= 1.4
    shifted.loc[k, "open"] = df.loc[k - 1, "close"]
    shifted.loc[k, "low"] = df.loc[k - 1, "close"]
    out2, _ = repair_candles(shifted, "1h", source="x", outlier_window=100)
    assert not out2.loc[out2["timestamp"] == df.loc[k, "timestamp"], "is_spike"].item()


def test_report_combine_sums_and_keeps_longest() -> None:
    a = RepairReport(rows_in=3, missing_bars=2, gap_events=1, longest_gap_bars=2)
    b = RepairReport(rows_in=4, missing_bars=5, gap_events=2, longest_gap_bars=4)
    c = RepairReport.combine([a, b])
    assert (c.rows_in, c.missing_bars, c.gap_events, c.longest_gap_bars) == (7, 7, 3, 4)


@pytest.mark.parametrize(("base", "target", "file_tf"), [("5m", "15m", "15m"), ("1h", "1d", "1d")])
def test_resample_matches_the_exchange_own_bars(real, base, target, file_tf) -> None:
    """Left-closed, left-labelled buckets reproduce Binance's own higher-timeframe candles."""
    start, end = utc("2025-02-01"), utc("2025-03-01")
    frames = [real.read_candles(s, base, start, end) for s in ("BTC/USDT", "ETH/USDT")]
    out, rep = resample_candles(pd.concat(frames, ignore_index=True), base, target)
    expected = pd.concat(
        [real.read_candles(s, file_tf, start, end) for s in ("BTC/USDT", "ETH/USDT")],
        ignore_index=True,
    ).sort_values(["symbol", "timestamp"], ignore_index=True)
    assert rep.partial_bars == 0 and not out["is_partial"].any()
    assert out["timestamp"].tolist() == expected["timestamp"].tolist()
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(out[col].to_numpy(), expected[col].to_numpy())
    np.testing.assert_allclose(out["volume"], expected["volume"], rtol=1e-9)


def test_resample_drops_or_marks_incomplete_buckets(real) -> None:
    df = real.read_candles("BTC/USDT", "1h", utc("2025-03-01"), utc("2025-03-02 02:00"))
    df = df[df["timestamp"] != utc("2025-03-01 09:00")]  # one missing hour in the 08:00 bucket
    out, rep = resample_candles(df, "1h", "4h")
    assert utc("2025-03-01 08:00") not in set(out["timestamp"])
    assert utc("2025-03-02 00:00") not in set(out["timestamp"])  # only 2 of 4 hours so far
    assert rep.partial_bars == 2 and len(out) == 5
    kept, rep2 = resample_candles(df, "1h", "4h", keep_partial=True)
    partial = kept[kept["is_partial"]]["timestamp"].tolist()
    assert partial == [utc("2025-03-01 08:00"), utc("2025-03-02 00:00")]
    assert rep2.bars_out == 7 and rep2.complete_bars == 5
    # a bucket built partly from forward-filled bars is partial too
    filled, _ = repair_candles(df, "1h", source="x", max_fill_bars=1)
    out3, _ = resample_candles(filled, "1h", "4h")
    assert utc("2025-03-01 08:00") not in set(out3["timestamp"])
    with pytest.raises(InputError, match="cannot resample 1h to 90m"):
        resample_candles(df, "1h", "90m")


def test_resample_is_causal_left_labelled(real) -> None:
    df = real.read_candles("ETH/USDT", "1h", utc("2025-03-01"), utc("2025-03-01 08:00"))
    out, _ = resample_candles(df, "1h", "4h")
    first = out.iloc[0]
    bucket = df[df["timestamp"] < utc("2025-03-01 04:00")]
    assert first["timestamp"] == utc("2025-03-01 00:00")
    assert first["open"] == bucket["open"].iloc[0] and first["close"] == bucket["close"].iloc[-1]
    assert first["high"] == bucket["high"].max() and first["low"] == bucket["low"].min()


def test_hard_rule_counter_sees_each_violation(hourly) -> None:
    df = hourly[hourly["symbol"] == "ETH/USDT"].reset_index(drop=True).head(50).copy()
    df.loc[3, "close"] = np.nan
    df.loc[5, "open"] = -1.0
    df.loc[7, "high"] = df.loc[7, "low"] / 2
    df.loc[9, "timestamp"] += pd.Timedelta(minutes=30)
    v = hard_rule_violations(pd.concat([df, df.iloc[[20]]], ignore_index=True), "1h")
    assert v["nan_values"] == 1 and v["non_positive_prices"] == 1
    assert v["ohlc_inconsistent"] >= 1 and v["off_grid"] == 1
    assert v["duplicate_timestamps"] == 1 and v["unsorted"] == 1
    with pytest.raises(DataValidationError):
        repair_candles(df, "1h", source="x")


def test_missing_timeframe_is_derived_from_a_stored_base(real, tmp_path) -> None:
    """A store with only 1h candles serves 1d bars equal to Binance's own 1d file: ETH spot (a
    universe member) is resampled from its 1h file next to the traded BTC perpetual (also only
    1h), whose 1d bars the window is resolved from."""
    from cryptoml_pipeline.market import derived, load_market_data, resolve_window

    store = ParquetStore(tmp_path)
    window = utc("2025-06-01 05:00"), utc("2025-07-01 03:00")
    store.write_candles(real.read_candles("ETH/USDT", "1h", *window), "ETH/USDT", "1h")
    store.write_candles(real.read_candles("BTC/USDT:USDT", "1h", *window), "BTC/USDT:USDT", "1h")
    store.write_funding(
        real.read_funding("BTC/USDT:USDT", utc("2025-05-31"), utc("2025-07-02")), "BTC/USDT:USDT"
    )
    assert derived.source_timeframe(store, "ETH/USDT", "1d") == "1h"
    for symbol in ("ETH/USDT", "BTC/USDT:USDT"):
        assert derived.candle_coverage(store, symbol, "1d") == (
            utc("2025-06-02"),
            utc("2025-06-30"),
        )  # only complete days
    start, end = resolve_window(store, ["BTC/USDT"], "1d", None, None, 730)
    assert (start, end) == (utc("2025-06-02"), utc("2025-07-01"))
    data = load_market_data(store, ["BTC/USDT"], "1d", start, end, universe=["ETH/USDT"])
    assert data.universe == ("BTC/USDT", "ETH/USDT") and data.traded == ("BTC/USDT",)
    eth = data.candles[data.candles["symbol"] == "ETH/USDT"].reset_index(drop=True)
    expected = real.read_candles("ETH/USDT", "1d", start, end)
    pd.testing.assert_frame_equal(eth, expected)
    btc = data.candles[data.candles["symbol"] == "BTC/USDT"]
    hourly_btc = real.read_candles("BTC/USDT:USDT", "1h", start, end)
    assert len(btc) == 29 and btc["volume"].sum() == pytest.approx(hourly_btc["volume"].sum())
    assert derived.source_timeframe(store, "ETH/USDT", "90m") is None
