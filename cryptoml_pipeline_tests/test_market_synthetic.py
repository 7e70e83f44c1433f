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
