"""One ledger: the kernel's compiled accounting helpers, and the simulator, the replay, the
Python ledger (book) and the real-time decision all booking through them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import MissingFundingError
from cryptoml_pipeline.evaluation.baselines import buy_and_hold
from cryptoml_pipeline.execution import kernel as K
from cryptoml_pipeline.execution.backtest import Fills, kernel_params
from cryptoml_pipeline.execution.book import Ledger
from cryptoml_pipeline.execution.market_grid import build_grid, funding_schedule
from cryptoml_pipeline.execution.replay import replay_fills
from cryptoml_pipeline.live.decision import decide
from cryptoml_pipeline.settings import CostConfig, profile_settings


def test_kernel_helpers_book_a_round_trip_by_hand() -> None:
    pos, acct = K.new_book(2, 10_000.0)
    records = K.new_records(1)
    px = K.fill_price(100.0, 1, 0.001)  # a buy pays the slippage
    assert px == 100.0 * (1.0 + 0.001)
    K.open_position(pos, acct, 1, 1, 20.0, px, 100.0, 0.001, 3, 10_000.0, 40.0)
    fee_in = 0.001 * 20.0 * px
    assert acct[K.A_CASH] == 10_000.0 - fee_in
    prices = np.array([np.nan, 110.0])
    assert K.mark(acct[K.A_CASH], pos, prices) == acct[K.A_CASH] + 20.0 * (110.0 - px)
    assert K.gross_notional(pos, prices) == 20.0 * 110.0
    assert K.open_risk(pos) == 40.0
    # a long pays a positive funding rate on its notional at the settlement price
    error = np.zeros(3, dtype=np.int64)
    assert K.settle(0, 1, np.array([[math.nan, 0.0001]]), pos, prices, acct, error)
    assert acct[K.A_FUNDING] == 20.0 * 110.0 * 0.0001
    exit_px = K.fill_price(120.0, -1, 0.001)  # a sell receives less
    K.close_position(pos, acct, records, 0, 1, 7, exit_px, 120.0, 0.001, K.TIME, K.AT_OPEN)
    rec = records[:, 0]
    gross = 20.0 * (exit_px - px)
    assert rec[K.T_GROSS] == gross
    assert rec[K.T_FEES] == fee_in + 0.001 * 20.0 * exit_px
    assert rec[K.T_PNL] == gross - rec[K.T_FEES] - rec[K.T_FUNDING]
    assert (rec[K.T_ENTRY_BAR], rec[K.T_EXIT_BAR], rec[K.T_SYM]) == (3, 7, 1)
    assert pos[K.P_DIR, 1] == 0.0  # flat
    assert acct[K.A_CASH] == pytest.approx(10_000.0 + rec[K.T_PNL], rel=1e-15)
    # a held position without a rate stops the settlement and names it
    K.open_position(pos, acct, 0, -1, 1.0, 100.0, 100.0, 0.0, 8, 1.0, 1.0)
    assert not K.settle(0, 1, np.array([[math.nan, 0.0]]), pos, prices, acct, error)
    assert list(error) == [K.MISSING_FUNDING, 0, 0]


def _candles(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC"),
            "symbol": "BTC/USDT",
            "open": open_,
            "high": np.maximum(open_, close) * 1.002,
            "low": np.minimum(open_, close) * 0.998,
            "close": close,
        }
    )


def test_the_python_ledger_books_like_a_replay_of_the_same_trade() -> None:
    candles = _candles()
    times = pd.date_range("2024-01-01", periods=8, freq="8h", tz="UTC")
    funding = pd.DataFrame(
        {"timestamp": times, "symbol": "BTC/USDT", "funding_rate": np.linspace(-2e-4, 3e-4, 8)}
    )
    costs = CostConfig(taker_fee=0.001, slippage_bps=5.0, initial_equity=10_000.0)
    held = buy_and_hold(candles, funding, costs=costs, timeframe="1h")
    grid = build_grid(candles, "1h")
    trade = held.trades.iloc[0]
    nan = np.array([np.nan])
    fills = Fills(
        symbol=np.array([0]),
        direction=np.array([1]),
        entry_bar=np.array([0]),
        exit_bar=np.array([len(candles) - 1]),
        phase=np.array([K.AT_CLOSE]),
        quantity=np.array([trade["quantity"]]),
        entry_raw=nan,
        exit_raw=nan,
        entry_equity=nan,
        exit_reason=np.array([K.END]),
    )
    again = replay_fills(
        grid,
        fills,
        initial_equity=10_000.0,
        entry_fee=0.001,
        exit_fee=0.001,
        slip=np.full(grid.open.shape, 5.0 / 10_000.0),
        schedule=funding_schedule(grid, funding),
    )
    np.testing.assert_array_equal(again.equity.to_numpy(), held.equity.to_numpy())
    assert (again.fees_paid, again.funding_paid) == (held.fees_paid, held.funding_paid)
    for column in ("entry_price", "exit_price", "pnl", "fees", "funding"):
        assert again.trades[column].iloc[0] == trade[column]


def test_the_ledger_refuses_a_held_position_without_a_funding_rate() -> None:
    book = Ledger(("A", "B"), CostConfig())
    time = pd.Timestamp("2024-01-01", tz="UTC")
    book.open(
        1,
        direction=-1,
        raw_price=50.0,
        notional=500.0,
        time=time,
        ordinal=0,
        hold_bars=3,
        stop_distance=0.1,
        risk_amount=50.0,
    )
    position = book.positions[1]
    assert position is not None and book.positions[0] is None
    assert position.stop == position.entry_price * (1.0 + 0.1)  # a short's stop is above
    book.settle_all(time=time, rates=[math.nan, 0.001], prices=[1.0, 50.0])
    assert book.funding_paid == -(position.quantity * 50.0 * 0.001)  # a short receives it
    with pytest.raises(MissingFundingError, match="no funding rate for B"):
        book.settle_all(time=time, rates=[0.0, math.inf], prices=[1.0, 50.0])


def test_the_real_time_decision_sizes_with_the_kernels_sizer() -> None:
    settings = profile_settings("tiny")
    decision = decide(
        signal=2,
        confidence=0.9,
        expected_return=0.05,
        volatility=0.6,
        atr_pct=0.01,
        settings=settings,
        timeframe="1h",
    )
    assert decision.action == "enter"
    _, f = kernel_params(settings.costs, settings.risk, settings.min_hold_bars, None)
    stop = f[K.F_ATR_MULT] * 0.01
    amount, notional = K.size_entry(f[K.F_EQUITY], 2.0, 0.9, 0.6, stop, 0.0, 0.0, f)
    assert (decision.risk_amount, decision.notional, decision.stop_distance) == (
        amount,
        notional,
        stop,
    )
