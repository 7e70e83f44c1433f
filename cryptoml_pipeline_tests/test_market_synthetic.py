"""The seeded synthetic market: labelled, deterministic, valid and roughly realistic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market import synthetic_market, validate_candles, validate_funding

SYMBOLS = ["SOL/USDT", "BTC/USDT", "ETH/USDT"]
START, END = pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-03-01", tz="UTC")


@pytest.fixture(scope="module")
def market():
    return synthetic_market(SYMBOLS, "1h", START, END, seed=7)


def test_labelled_synthetic(market) -> None:
    assert market.source == "synthetic"
    assert market.synthetic is True
    assert market.price_source == "synthetic"
    assert set(market.price_sources) == set(SYMBOLS)
    assert (market.start, market.end, market.timeframe) == (START, END, "1h")
    assert market.traded == market.universe == tuple(sorted(SYMBOLS))


def test_deterministic_for_a_seed(market) -> None:
    again = synthetic_market(SYMBOLS, "1h", START, END, seed=7)
    pd.testing.assert_frame_equal(market.candles, again.candles)
    pd.testing.assert_frame_equal(market.funding, again.funding)
    other = synthetic_market(SYMBOLS, "1h", START, END, seed=8)
    assert not np.allclose(market.candles["close"], other.candles["close"])


def test_valid_long_frames(market) -> None:
    c, f = market.candles, market.funding
    n = int((END - START) / pd.Timedelta(hours=1))
    assert len(c) == 3 * n
    assert c.index.equals(pd.RangeIndex(3 * n))
    assert c["symbol"].tolist() == [s for s in sorted(SYMBOLS) for _ in range(n)]
    pd.testing.assert_frame_equal(validate_candles(c, source="t"), c)
    pd.testing.assert_frame_equal(validate_funding(f, source="t"), f)
    assert (c["volume"] > 0).all()
    assert c["timestamp"].min() == START and c["timestamp"].max() == END - pd.Timedelta(hours=1)
    # candles are contiguous: each open is the previous close
    for _, g in c.groupby("symbol"):
        assert np.allclose(g["open"].to_numpy()[1:], g["close"].to_numpy()[:-1])
    # valid OHLC
    assert (c["low"] > 0).all()
    assert (c["high"] >= c[["open", "close"]].max(axis=1)).all()
    assert (c["low"] <= c[["open", "close"]].min(axis=1)).all()


def test_realistic_scale(market) -> None:
    c = market.candles
    closes = c.pivot(index="timestamp", columns="symbol", values="close")
    vol = np.log(closes).diff().std()
    assert ((vol > 0.004) & (vol < 0.015)).all(), vol
    assert vol["SOL/USDT"] > vol["BTC/USDT"]
    corr = np.log(closes).diff().corr().to_numpy()[np.triu_indices(3, 1)]
    assert ((corr > 0.4) & (corr < 0.95)).all(), corr


def test_funding_every_8h_small_and_mean_reverting(market) -> None:
    f = market.funding
    assert set(f["timestamp"].dt.hour) == {0, 8, 16}
    per_symbol = f.groupby("symbol")["timestamp"]
    assert (per_symbol.min() == START - pd.Timedelta(hours=8)).all()  # [start - 8h, end)
    assert (per_symbol.diff().dropna() == pd.Timedelta(hours=8)).all()
    assert f["funding_rate"].abs().max() < 0.002
    assert 0 < f["funding_rate"].mean() < 3e-4


def test_other_timeframe_and_errors() -> None:
    daily = synthetic_market(["BTC/USDT"], "1d", START, END)
    assert len(daily.candles) == 59
    assert synthetic_market(["DOGE/USDT"], "4h", START, END).candles["close"].gt(0).all()
    with pytest.raises(InputError, match="no symbols selected"):
        synthetic_market([], "1h", START, END)
    with pytest.raises(InputError, match="empty synthetic window"):
        synthetic_market(["BTC/USDT"], "1h", END, START)


def test_universe_members_have_candles_only_traded_have_funding(market) -> None:
    wide = synthetic_market(
        ["BTC/USDT", "ETH/USDT"], "1h", START, END, universe=["LINK/USDT", "AVAX/USDT", "ETH/USDT"]
    )
    members = ("AVAX/USDT", "BTC/USDT", "ETH/USDT", "LINK/USDT")
    assert wide.traded == ("BTC/USDT", "ETH/USDT")
    assert wide.universe == members  # traded symbols always included, sorted
    assert wide.universe_symbols == members and wide.traded_symbols == wide.traded
    assert tuple(wide.candles["symbol"].unique()) == members
    assert tuple(sorted(wide.funding["symbol"].unique())) == wide.traded
    assert set(wide.price_sources) == set(wide.traded)
    n = int((END - START) / pd.Timedelta(hours=1))
    assert wide.candles.groupby("symbol").size().eq(n).all()
    closes = wide.candles.pivot(index="timestamp", columns="symbol", values="close")
    corr = np.log(closes).diff().corr().to_numpy()[np.triu_indices(4, 1)]
    assert ((corr > 0.4) & (corr < 0.95)).all(), corr  # members share the market factor
    # each symbol's series ignores which other members are generated
    for sym in ("BTC/USDT", "ETH/USDT"):
        pd.testing.assert_frame_equal(
            wide.candles[wide.candles["symbol"] == sym].reset_index(drop=True),
            market.candles[market.candles["symbol"] == sym].reset_index(drop=True),
        )
        pd.testing.assert_frame_equal(
            wide.funding[wide.funding["symbol"] == sym].reset_index(drop=True),
            market.funding[market.funding["symbol"] == sym].reset_index(drop=True),
        )
    with pytest.raises(InputError, match="duplicate symbols in universe"):
        synthetic_market(["BTC/USDT"], "1h", START, END, universe=["SOL/USDT", "SOL/USDT"])


def test_history_is_warm_up_before_start() -> None:
    history = pd.Timedelta(days=3)
    m = synthetic_market(["BTC/USDT"], "1h", START, END, history=history)
    assert (m.start, m.end) == (START, END)
    assert m.candles["timestamp"].min() == START - history
    assert m.funding["timestamp"].min() == START - history - pd.Timedelta(hours=8)
    assert len(m.candles) == int((END - START + history) / pd.Timedelta(hours=1))
    with pytest.raises(InputError, match="history"):
        synthetic_market(["BTC/USDT"], "1h", START, END, history=-history)


def _aggregate(fine: pd.DataFrame, bar: str) -> pd.DataFrame:
    from cryptoml_pipeline.timing import timeframe_to_timedelta

    key = fine["timestamp"].dt.floor(timeframe_to_timedelta(bar))
    return (
        fine.groupby([fine["symbol"], key.rename("timestamp")], sort=True)
        .agg(
            open=("open", "first"),
            high=("high", "max"),
            low=("low", "min"),
            close=("close", "last"),
            volume=("volume", "sum"),
        )
        .reset_index()
    )


def test_finer_timeframes_aggregate_exactly_to_the_hourly_bars(market) -> None:
    from cryptoml_pipeline.market.synthetic import (
        synthetic_timeframe_candles,
        unsupported_timeframes,
    )

    hourly = market.candles
    out = synthetic_timeframe_candles(hourly, "1h", ["5m", "15m", "1h", "4h"], seed=7)
    n = len(hourly)
    assert [len(out[tf]) for tf in ("5m", "15m", "1h")] == [12 * n, 4 * n, n]
    pd.testing.assert_frame_equal(out["1h"], hourly)  # the base bars themselves, unchanged
    for tf, coarse in (("5m", "1h"), ("15m", "1h"), ("5m", "15m"), ("1h", "4h")):
        fine = out[tf]
        pd.testing.assert_frame_equal(validate_candles(fine, source="t"), fine)
        assert (fine["high"] >= fine[["open", "close"]].max(axis=1)).all()
        assert (fine["low"] <= fine[["open", "close"]].min(axis=1)).all()
        assert (fine["volume"] > 0).all()
        agg = _aggregate(fine, coarse)
        target = out[coarse].reset_index(drop=True)
        if coarse == "4h":
            agg = agg.merge(target[["symbol", "timestamp"]], on=["symbol", "timestamp"])
        assert agg[["symbol", "timestamp"]].equals(target[["symbol", "timestamp"]]), (tf, coarse)
        for col in ("open", "high", "low", "close"):  # exactly, bit for bit
            assert (agg[col].to_numpy() == target[col].to_numpy()).all(), (tf, coarse, col)
        np.testing.assert_allclose(agg["volume"], target["volume"], rtol=1e-12)
    # contiguous fine paths: each open is the previous close
    for _, g in out["5m"].groupby("symbol"):
        assert (g["open"].to_numpy()[1:] == g["close"].to_numpy()[:-1]).all()
    # realistic: 5m log-return volatility ~ hourly / sqrt(12), not degenerate
    r5 = np.log(out["5m"]["close"] / out["5m"]["open"]).std()
    r1 = np.log(hourly["close"] / hourly["open"]).std()
    assert 0.4 < r5 * np.sqrt(12) / r1 < 1.2
    # deterministic, and a bar's sub-bars do not depend on the window or the other timeframes
    cut = START + pd.Timedelta(days=20)
    late = synthetic_timeframe_candles(hourly[hourly["timestamp"] >= cut], "1h", ["5m"], seed=7)
    pd.testing.assert_frame_equal(
        late["5m"], out["5m"][out["5m"]["timestamp"] >= cut].reset_index(drop=True)
    )
    other = synthetic_timeframe_candles(hourly, "1h", ["5m"], seed=8)["5m"]
    assert not np.allclose(other["close"], out["5m"]["close"])
    assert set(unsupported_timeframes("1h", ["5m", "7m", "2h", "90m", "bad"])) == {
        "7m",
        "90m",
        "bad",
    }
    with pytest.raises(InputError, match="7m"):
        synthetic_timeframe_candles(hourly, "1h", ["7m"])


def test_the_lstm_cnn_precondition_holds_on_the_synthetic_market() -> None:
    """The market resource gives the LSTM-CNN every configured timeframe on the synthetic market:
    the very hourly candles the run loads and finer bars cut out of them, with valid windows."""
    from cryptoml_pipeline.defs.resources import MarketDataResource
    from cryptoml_pipeline.modeling.multiscale import (
        build_multiscale_dataset,
        fit_scale_scalers,
        scale_bar_features,
    )
    from cryptoml_pipeline.settings import profile_settings

    settings = profile_settings("demo", symbols=("BTC/USDT", "ETH/USDT"), lookback_days=20)
    cfg = settings.lstm_cnn
    market = MarketDataResource(kind="synthetic")
    traded, _ = market.symbols(settings)
    have, skipped = market.symbols_with_timeframes(
        list(traded), list(cfg.timeframes), settings=settings
    )
    assert have == list(traded) and skipped == {}
    start, end = market.window(settings)
    lo, hi = start + pd.Timedelta(days=2), end - pd.Timedelta(days=2)
    scales = market.candles_by_timeframe(have, list(cfg.timeframes), lo, hi, settings=settings)
    assert set(scales) == set(cfg.timeframes)
    for tf, frame in scales.items():  # only the bars of the requested window
        assert frame["timestamp"].min() == lo and frame["timestamp"].max() < hi, tf
    hourly = market.load(settings).candles
    window = hourly[
        hourly["symbol"].isin(have) & (hourly["timestamp"] >= lo) & (hourly["timestamp"] < hi)
    ].reset_index(drop=True)
    pd.testing.assert_frame_equal(scales["1h"], window)
    agg = _aggregate(scales["5m"], "1h")
    for col in ("open", "high", "low", "close"):
        assert (agg[col].to_numpy() == window[col].to_numpy()).all(), col
    # every decision hour after the longest warm-up has a causal window on every scale
    timeframes = {tf: tf for tf in cfg.timeframes}
    features = {tf: scale_bar_features(scales[tf], tf) for tf in cfg.timeframes}
    scalers = fit_scale_scalers(features, timeframes, hi)
    decisions = window[["timestamp", "symbol"]]
    ds = build_multiscale_dataset(
        decisions,
        np.ones(len(decisions), dtype=bool),
        None,
        "1h",
        features,
        timeframes,
        scalers,
        cfg.sequence_length,
    )
    assert len(ds) == len(decisions) - len(have) * cfg.sequence_length
    # without the run's settings the synthetic market cannot say (reason, never an error)
    none, why = market.symbols_with_timeframes(list(traded), list(cfg.timeframes))
    assert none == [] and set(why) == set(traded)
