"""Simulator upgrades on hand-made bars: take-profit vs stop inside one bar, maker orders,
the volatility slippage term, liquidation, hysteresis and the round-trip cost filter.

Set-up as test_trading_backtest: equity 10_000, fee 0.1 %, slippage 10 bps, signal 2,
confidence 1, volatility 0.1, atr 5 % -> risk 200, stop 10 %, notional 2000.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.execution.backtest import simulate
from cryptoml_pipeline.settings import CostConfig, SlippageConfig
from cryptoml_pipeline_tests.test_trading_backtest import (
    COSTS,
    NO_FUNDING,
    RISK,
    SLIP,
    candles,
    decisions,
    ts,
)


def run(bars, decs, *, risk=RISK, costs=COSTS, hold=5, slippage=None):
    return simulate(
        bars,
        NO_FUNDING,
        decs,
        costs=costs,
        risk=risk,
        min_hold_bars=hold,
        timeframe="1h",
        slippage=slippage,
    )


TP_RISK = RISK.model_copy(update={"take_profit_atr_multiple": 2.0})  # tp 10 % away


def test_take_profit_fills_at_its_price_with_the_maker_fee() -> None:
    bars = candles("BTC/USDT", opens=[100, 100, 105, 105], closes=[100, 105, 105, 105])
    bars.loc[2, "high"] = 125.0
    trade = run(bars, decisions([("BTC/USDT", 1, 2)]), risk=TP_RISK).trades.iloc[0]
    tp = 100 * (1 + SLIP) * 1.1
    assert (trade["exit_reason"], trade["exit_time"]) == ("take_profit", ts(3))
    assert trade["exit_price"] == pytest.approx(tp)  # no slippage on a resting limit
    qty = trade["quantity"]
    assert trade["fees"] == pytest.approx(0.001 * 2000 + COSTS.maker_fee * qty * tp)


def test_a_bar_touching_stop_and_take_profit_counts_the_stop() -> None:
    bars = candles("BTC/USDT", opens=[100, 100, 100, 100])
    bars.loc[2, ["high", "low"]] = [125.0, 80.0]
    trade = run(bars, decisions([("BTC/USDT", 1, 2)]), risk=TP_RISK).trades.iloc[0]
    assert trade["exit_reason"] == "stop"
    assert trade["pnl"] < 0


def test_maker_entry_needs_the_bar_to_trade_through_and_pays_the_maker_fee() -> None:
    maker = COSTS.model_copy(update={"order_type": "maker"})
    bars = candles("BTC/USDT", opens=[100, 100, 100, 100, 100])
    trade = run(bars, decisions([("BTC/USDT", 1, 2)]), costs=maker, hold=2).trades.iloc[0]
    assert trade["entry_price"] == 100.0  # at the open, no slippage
    assert trade["fees"] == pytest.approx(2 * COSTS.maker_fee * 2000.0)
    untouched = bars.copy()
    untouched.loc[1, "low"] = 100.0  # the entry bar never trades below the buy limit
    assert run(untouched, decisions([("BTC/USDT", 1, 2)]), costs=maker).trades.empty


def test_volatility_slippage_term_uses_the_known_per_bar_volatility() -> None:
    bars = candles("BTC/USDT", opens=[100, 100, 100, 100, 100])
    slip_cfg = SlippageConfig(volatility_coefficient=0.5)
    trade = run(bars, decisions([("BTC/USDT", 1, 2)]), hold=2, slippage=slip_cfg).trades.iloc[0]
    per_bar = 0.1 / np.sqrt(24 * 365)
    assert trade["entry_price"] == pytest.approx(100 * (1 + SLIP + 0.5 * per_bar), rel=1e-12)


def test_cross_margin_liquidation_at_the_worst_price() -> None:
    risk = RISK.model_copy(update={"max_leverage": 50.0, "maintenance_margin": 0.05})
    costs = CostConfig(taker_fee=0.0, slippage_bps=0.0, initial_equity=10_000.0)
    # atr 0.1 % -> stop 0.2 %, 200 risk -> 100_000 notional (10x, under the 50x cap)
    bars = candles("BTC/USDT", opens=[100, 100, 100, 100])
    bars.loc[2, "low"] = 99.5  # the stop at 99.8 is hit first: no liquidation
    result = run(bars, decisions([("BTC/USDT", 1, 2)], atr=0.001), risk=risk, costs=costs)
    assert result.trades.iloc[0]["exit_reason"] == "stop"
    # a wide stop (2 x 25 % = 50 %) that a deep wick (low 55) does not reach, 1_000 units (10x):
    # equity at the wick = 10_000 - 1_000 x 45 < 5 % maintenance -> liquidated at 55
    wide = risk.model_copy(
        update={"base_risk": 5.0, "max_risk_per_trade": 5.0, "portfolio_heat": 5.0}
    )
    bars2 = candles("BTC/USDT", opens=[100, 100, 100, 100])
    bars2.loc[2, "low"] = 55.0
    out = run(bars2, decisions([("BTC/USDT", 1, 2)], atr=0.25), risk=wide, costs=costs)
    trade = out.trades.iloc[0]
    assert (trade["exit_reason"], trade["exit_time"], trade["exit_price"]) == (
        "liquidation",
        ts(3),
        55.0,
    )
    assert out.equity.iloc[-1] == pytest.approx(10_000 + trade["quantity"] * (55.0 - 100.0))


def _decs(signals: list[int], conf: list[float], exp: list[float] | None = None) -> pd.DataFrame:
    frame = decisions([("BTC/USDT", 1 + k, s) for k, s in enumerate(signals)])
    frame["confidence"] = conf
    if exp is not None:
        frame["expected_return"] = exp
    return frame


def test_hysteresis_keeps_a_position_the_entry_threshold_would_drop() -> None:
    bars = candles("BTC/USDT", opens=[100] * 6)  # 01:00..06:00, before any settlement
    decs = _decs([2, 2, 2, 2, 2, 2], [0.6, 0.6, 0.4, 0.4, 0.4, 0.4])
    plain = RISK.model_copy(update={"confidence_threshold": 0.5})
    sticky = plain.model_copy(update={"hold_confidence_threshold": 0.3})
    assert run(bars, decs, risk=plain, hold=2).trades.iloc[0]["exit_reason"] == "time"
    assert run(bars, decs, risk=sticky, hold=2).trades.iloc[0]["exit_reason"] == "end"


def test_no_trade_when_the_expected_move_is_below_the_round_trip_cost() -> None:
    bars = candles("BTC/USDT", opens=[100] * 5)
    cost = 2 * (0.001 + SLIP)  # 0.4 %
    risk = RISK.model_copy(update={"edge_cost_multiple": 1.0})
    assert run(bars, _decs([2], [1.0], [cost * 0.9]), risk=risk).trades.empty
    assert len(run(bars, _decs([2], [1.0], [cost * 1.1]), risk=risk).trades) == 1
    assert run(bars, _decs([2], [1.0], [-0.05]), risk=risk).trades.empty  # wrong sign
    off = RISK.model_copy(update={"edge_cost_multiple": None})
    assert len(run(bars, _decs([2], [1.0], [0.0]), risk=off).trades) == 1
