"""The simulator's market rules on hand-made bars: timing, costs, stops, holding, funding, limits.

Common set-up: equity 10_000, taker fee 0.1 %, slippage 10 bps, a decision with signal 2,
confidence 1, volatility 0.1 (multiplier 1) and atr_pct 5 % -> risk 200, stop 10 %, notional 2000.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError, MissingFundingError
from cryptoml_pipeline.execution.backtest import simulate
from cryptoml_pipeline.settings import CostConfig, RiskConfig

COSTS = CostConfig(taker_fee=0.001, slippage_bps=10.0, initial_equity=10_000.0)
RISK = RiskConfig(
    base_risk=0.02,
    max_risk_per_trade=0.02,
    portfolio_heat=0.06,
    max_leverage=3.0,
    atr_stop_multiple=2.0,
    volatility_reference=0.2,
    confidence_threshold=0.0,
)
SLIP = 0.001
FEE = 0.001


def ts(hour: int) -> pd.Timestamp:
    return pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=hour)


def candles(symbol: str, opens, closes=None, lows=None, highs=None, start: int = 1) -> pd.DataFrame:
    opens = np.asarray(opens, dtype=float)
    closes = opens.copy() if closes is None else np.asarray(closes, dtype=float)
    lows = np.minimum(opens, closes) - 1.0 if lows is None else np.asarray(lows, dtype=float)
    highs = np.maximum(opens, closes) + 1.0 if highs is None else np.asarray(highs, dtype=float)
    return pd.DataFrame(
        {
            "timestamp": [ts(start + k) for k in range(len(opens))],
            "symbol": symbol,
            "open": opens,
            "high": highs,
            "low": lows,
            "close": closes,
            "volume": 1.0,
        }
    )


def decisions(rows: list[tuple[str, int, int]], *, conf: float = 1.0, atr: float = 0.05):
    """rows: (symbol, hour of the decision row, signal)."""
    return pd.DataFrame(
        {
            "timestamp": [ts(h) for _, h, _ in rows],
            "symbol": [s for s, _, _ in rows],
            "signal": [sig for _, _, sig in rows],
            "confidence": conf,
            "volatility": 0.1,
            "atr_pct": atr,
        }
    )


def funding(symbol: str, rates: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": [ts(h) for h in rates],
            "symbol": symbol,
            "funding_rate": list(rates.values()),
        }
    )


NO_FUNDING = pd.DataFrame(
    {
        "timestamp": pd.Series([], dtype="datetime64[ns, UTC]"),
        "symbol": pd.Series([], dtype=str),
        "funding_rate": pd.Series([], dtype=float),
    }
)


def run(bars, decs, fund=NO_FUNDING, *, hold: int = 2, risk: RiskConfig = RISK):
    return simulate(bars, fund, decs, costs=COSTS, risk=risk, min_hold_bars=hold, timeframe="1h")


# ---------------------------------------------------------------- timing
def test_signal_on_row_t_fills_at_next_open_not_at_close_of_t() -> None:
    bars = candles(
        "BTC/USDT", opens=[100, 101, 102, 103, 104], closes=[100.5, 101.5, 102, 103, 104]
    )
    result = run(bars, decisions([("BTC/USDT", 1, 2)]))
    trade = result.trades.iloc[0]
    assert trade["entry_time"] == ts(2)
    assert trade["entry_price"] == pytest.approx(101 * (1 + SLIP))  # open of 02:00, not close 100.5
    # changing the close of the decision bar does not change the fill
    moved = bars.copy()
    moved.loc[0, ["close", "high"]] = [150.0, 151.0]
    assert (
        run(moved, decisions([("BTC/USDT", 1, 2)])).trades.iloc[0]["entry_price"]
        == (trade["entry_price"])
    )
    # nothing is filled before the next bar: equity is untouched at the close of bar t
    assert result.equity.loc[ts(1)] == 10_000.0


def test_decision_on_the_last_row_has_no_bar_to_fill() -> None:
    bars = candles("BTC/USDT", opens=[100, 101, 102])
    result = run(bars, decisions([("BTC/USDT", 3, 2)]))
    assert result.trades.empty
    assert (result.equity == 10_000.0).all()


# ---------------------------------------------------------------- costs
def test_round_trip_fee_and_slippage_arithmetic() -> None:
    bars = candles("BTC/USDT", opens=[100, 100, 105, 110, 110], closes=[100, 104, 109, 110, 111])
    result = run(bars, decisions([("BTC/USDT", 1, 2)]), hold=2)
    entry = 100 * (1 + SLIP)  # 100.1
    qty = 2000.0 / entry
    fee_in = FEE * qty * entry  # 2.0
    exit_ = 110 * (1 - SLIP)  # 109.89 at the open of 04:00 = entry bar 02:00 + 2 bars
    fee_out = FEE * qty * exit_
    gross = qty * (exit_ - entry)
    expected = (10_000.0 - fee_in) + (gross - fee_out)
    assert expected == pytest.approx(10_191.40879, abs=1e-5)  # by hand
    assert result.equity.iloc[-1] == pytest.approx(expected, rel=1e-13)
    trade = result.trades.iloc[0]
    assert (trade["exit_time"], trade["exit_reason"]) == (ts(4), "time")
    assert trade["exit_price"] == pytest.approx(exit_)
    assert trade["fees"] == pytest.approx(fee_in + fee_out)
    assert trade["pnl"] == pytest.approx(expected - 10_000.0)
    assert result.fees_paid == pytest.approx(fee_in + fee_out)
    # mark to market at the close of the entry bar: cash - fee + qty * (close - entry)
    assert result.equity.loc[ts(2)] == pytest.approx(10_000.0 - fee_in + qty * (104 - entry))


# ---------------------------------------------------------------- stops
def _stop_long() -> float:
    return 100 * (1 + SLIP) * (1 - 0.1)  # entry fill x (1 - stop distance) = 90.09


def test_stop_fills_at_stop_price() -> None:
    bars = candles("BTC/USDT", opens=[100, 100, 99, 95], closes=[100, 99, 95, 95])
    bars.loc[2, "low"] = 85.0
    trade = run(bars, decisions([("BTC/USDT", 1, 2)]), hold=5).trades.iloc[0]
    assert (trade["exit_reason"], trade["exit_time"]) == ("stop", ts(3))
    assert trade["exit_price"] == pytest.approx(_stop_long() * (1 - SLIP))


def test_stop_gapped_through_at_the_open_fills_at_the_open() -> None:
    bars = candles("BTC/USDT", opens=[100, 100, 80, 80], closes=[100, 99, 81, 80])
    trade = run(bars, decisions([("BTC/USDT", 1, 2)]), hold=5).trades.iloc[0]
    assert (trade["exit_reason"], trade["exit_time"]) == ("stop", ts(3))
    assert trade["exit_price"] == pytest.approx(80 * (1 - SLIP))


def test_bar_touching_the_stop_fills_it_and_one_cent_above_does_not() -> None:
    bars = candles("BTC/USDT", opens=[100, 100, 99, 99], closes=[100, 99, 99, 99])
    bars.loc[2, "low"] = _stop_long()
    assert run(bars, decisions([("BTC/USDT", 1, 2)]), hold=5).trades.iloc[0]["exit_reason"] == (
        "stop"
    )
    bars.loc[2, "low"] = _stop_long() + 0.01
    assert run(bars, decisions([("BTC/USDT", 1, 2)]), hold=5).trades.iloc[0]["exit_reason"] == (
        "end"
    )


def test_short_stop_and_stop_on_the_entry_bar() -> None:
    bars = candles("BTC/USDT", opens=[100, 100, 101], closes=[100, 101, 101])
    bars.loc[1, "high"] = 115.0  # the entry bar itself runs through the short stop
    trade = run(bars, decisions([("BTC/USDT", 1, -2)]), hold=5).trades.iloc[0]
    stop = 100 * (1 - SLIP) * (1 + 0.1)
    assert (trade["side"], trade["exit_reason"], trade["exit_time"]) == ("short", "stop", ts(2))
    assert trade["exit_price"] == pytest.approx(stop * (1 + SLIP))
    entry = 100 * (1 - SLIP)
    qty = 2000.0 / entry
    exit_ = stop * (1 + SLIP)
    fees = FEE * qty * entry + FEE * qty * exit_
    # the stop loses the 200 risk amount plus the exit slippage, plus both fees
    assert trade["pnl"] == pytest.approx(-qty * (exit_ - entry) - fees, rel=1e-12)
    assert -qty * (stop - entry) == pytest.approx(-200.0)


def test_stop_inside_the_entry_slippage_fills_at_the_open_never_better() -> None:
    # stop distance 2 x 0.04 % = 0.08 % < 10 bps slippage: the long's stop sits above the open
    bars = candles("BTC/USDT", opens=[100, 100, 100], closes=[100, 100.5, 100])
    trade = run(bars, decisions([("BTC/USDT", 1, 2)], atr=0.0004), hold=5).trades.iloc[0]
    assert (trade["exit_reason"], trade["exit_time"]) == ("stop", ts(2))
    assert trade["exit_price"] == pytest.approx(100 * (1 - SLIP))


def test_candles_off_the_timeframe_grid_are_rejected() -> None:
    bars = candles("BTC/USDT", opens=[100, 100, 100])
    with pytest.raises(InputError, match="not 4h bars"):
        simulate(
            bars,
            NO_FUNDING,
            decisions([]),
            costs=COSTS,
            risk=RISK,
            min_hold_bars=1,
            timeframe="4h",
        )


# ---------------------------------------------------------------- holding
def test_same_direction_signal_extends_the_hold_without_fees() -> None:
    bars = candles("BTC/USDT", opens=[100] * 8)
    # entry at 02:00; a short signal filling at 03:00 is ignored (mid-hold); a long filling at
    # the review open 04:00 extends the hold to 06:00
    decs = decisions([("BTC/USDT", 1, 2), ("BTC/USDT", 2, -2), ("BTC/USDT", 3, 1)])
    result = run(bars, decs, hold=2)
    assert len(result.trades) == 1
    trade = result.trades.iloc[0]
    assert (trade["entry_time"], trade["exit_time"], trade["exit_reason"]) == (ts(2), ts(6), "time")
    assert trade["fees"] == pytest.approx(FEE * 2000.0 + FEE * trade["quantity"] * 100 * (1 - SLIP))
    assert trade["notional"] == pytest.approx(2000.0)


def test_opposite_signal_at_review_flips_at_the_same_open() -> None:
    bars = candles("BTC/USDT", opens=[100, 100, 100, 120, 120, 120, 120])
    result = run(bars, decisions([("BTC/USDT", 1, 2), ("BTC/USDT", 3, -2)]), hold=2)
    long, short = result.trades.iloc[0], result.trades.iloc[1]
    assert (long["side"], long["exit_time"], long["exit_reason"]) == ("long", ts(4), "flip")
    assert long["exit_price"] == pytest.approx(120 * (1 - SLIP))
    assert (short["side"], short["entry_time"]) == ("short", ts(4))
    assert short["entry_price"] == pytest.approx(120 * (1 - SLIP))
    assert (short["exit_time"], short["exit_reason"]) == (ts(6), "time")
    assert result.trades["pnl"].sum() == pytest.approx(result.equity.iloc[-1] - 10_000.0)


def test_low_confidence_is_not_entered() -> None:
    bars = candles("BTC/USDT", opens=[100] * 4)
    risk = RISK.model_copy(update={"confidence_threshold": 0.6})
    assert run(bars, decisions([("BTC/USDT", 1, 2)], conf=0.5), risk=risk).trades.empty


# ---------------------------------------------------------------- limits
def test_heat_limit_scales_the_second_simultaneous_trade() -> None:
    bars = pd.concat([candles("AAA", [100] * 5), candles("BBB", [50] * 5)], ignore_index=True)
    risk = RISK.model_copy(update={"portfolio_heat": 0.03})  # 300 of open risk in total
    result = run(bars, decisions([("AAA", 1, 2), ("BBB", 1, 2)]), risk=risk)
    trades = result.trades.set_index("symbol")
    assert trades.loc["AAA", "risk_amount"] == pytest.approx(200.0)
    assert trades.loc["AAA", "notional"] == pytest.approx(2000.0)
    assert trades.loc["BBB", "risk_amount"] == pytest.approx(100.0)
    assert trades.loc["BBB", "notional"] == pytest.approx(1000.0)


def test_leverage_cap_limits_gross_notional() -> None:
    bars = candles("BTC/USDT", [100] * 5)
    result = run(bars, decisions([("BTC/USDT", 1, 2)], atr=0.002))  # notional 50_000 wanted
    assert result.trades.iloc[0]["notional"] == pytest.approx(30_000.0)
    assert result.exposure.max() <= 3.0 + 1e-9


# ---------------------------------------------------------------- funding
def _funding_bars() -> pd.DataFrame:
    # 05:00 .. 12:00; the 08:00 bar opens at 104 (no stop is touched, long or short)
    return candles("BTC/USDT", [100, 100, 101, 104, 105, 105, 105, 105], start=5)


def test_funding_paid_by_a_long_and_received_by_a_short() -> None:
    bars = _funding_bars()
    for signal, sign in ((2, 1.0), (-2, -1.0)):
        decs = decisions([("BTC/USDT", 5, signal)])  # entry 06:00, held over 08:00, exit 11:00
        paid = run(bars, decs, funding("BTC/USDT", {8: 0.0001}), hold=5)
        free = run(bars, decs, funding("BTC/USDT", {8: 0.0}), hold=5)
        qty = paid.trades.iloc[0]["quantity"]
        expected = sign * qty * 104 * 0.0001  # quantity x open of the 08:00 bar x rate
        assert paid.trades.iloc[0]["funding"] == pytest.approx(expected, rel=1e-12)
        assert paid.funding_paid == pytest.approx(expected, rel=1e-12)
        assert free.equity.iloc[-1] - paid.equity.iloc[-1] == pytest.approx(expected, rel=1e-9)
        assert paid.equity.loc[ts(7)] == free.equity.loc[ts(7)]  # nothing before the settlement


def test_entered_at_the_settlement_open_pays_nothing_exited_there_pays() -> None:
    bars = _funding_bars()
    fund = funding("BTC/USDT", {8: 0.01})
    entered = run(bars, decisions([("BTC/USDT", 7, 2)]), fund, hold=2)  # fills at 08:00
    assert entered.trades.iloc[0]["entry_time"] == ts(8)
    assert entered.trades.iloc[0]["funding"] == 0.0
    exited = run(bars, decisions([("BTC/USDT", 5, 2)]), fund, hold=2)  # 06:00 -> exit at 08:00
    trade = exited.trades.iloc[0]
    assert trade["exit_time"] == ts(8)
    assert trade["funding"] == pytest.approx(trade["quantity"] * 104 * 0.01)


def test_missing_funding_while_held_raises() -> None:
    bars = _funding_bars()
    other_symbol_only = funding("ETH/USDT", {8: 0.0001})
    with pytest.raises(MissingFundingError, match=r"BTC/USDT.*2024-01-01T08:00"):
        run(bars, decisions([("BTC/USDT", 5, 2)]), other_symbol_only, hold=5)


def test_no_funding_needed_or_charged_when_flat() -> None:
    bars = _funding_bars()
    flat = run(bars, decisions([("BTC/USDT", 5, 0)]), NO_FUNDING, hold=2)
    assert flat.funding_paid == 0.0
    assert (flat.equity == 10_000.0).all()
    # a trade that closes before 08:00 (05:00 decision, hold 1 -> 06:00 .. 07:00) pays nothing
    short_trade = run(bars, decisions([("BTC/USDT", 5, 2)]), NO_FUNDING, hold=1)
    assert short_trade.trades.iloc[0]["exit_time"] == ts(7)
    assert short_trade.funding_paid == 0.0


def test_settlement_inside_a_data_gap_is_charged_at_the_first_bar_after_it() -> None:
    # bars 05:00, 06:00, then a gap (07:00-09:00 missing), 10:00 .. 13:00; the 08:00 settlement
    # falls in the gap and belongs to the 10:00 bar (open 110), not to the 06:00 bar
    gap = pd.concat(
        [candles("BTC/USDT", [100, 100], start=5), candles("BTC/USDT", [110] * 4, start=10)],
        ignore_index=True,
    )
    decs = decisions([("BTC/USDT", 5, 2)])  # fills at 06:00, held through the gap
    paid = run(gap, decs, funding("BTC/USDT", {8: 0.001}), hold=3)
    trade = paid.trades.iloc[0]
    assert trade["funding"] == pytest.approx(trade["quantity"] * 110 * 0.001, rel=1e-12)
    before = run(gap, decs, funding("BTC/USDT", {8: 0.0}), hold=3)
    assert paid.equity.loc[ts(6)] == before.equity.loc[ts(6)]  # nothing charged before the gap


def test_every_settlement_in_the_data_is_charged_whatever_its_interval() -> None:
    bars = _funding_bars()
    # 08:00 then 12:00 (a 4h step): both are settlements, however the hint interval is set
    four_hourly = funding("BTC/USDT", {8: 0.0001, 12: 0.0002})
    decs = decisions([("BTC/USDT", 5, 2)])  # entry 06:00, exit at the 12:00 open (pays 12:00)
    for hint in (8, 4):
        result = simulate(
            bars,
            four_hourly,
            decs,
            costs=COSTS,
            risk=RISK,
            min_hold_bars=6,
            timeframe="1h",
            funding_interval_hours=hint,
        )
        trade = result.trades.iloc[0]
        assert trade["exit_time"] == ts(12)
        expected = trade["quantity"] * (104 * 0.0001 + 105 * 0.0002)  # opens at 08:00, 12:00
        assert trade["funding"] == pytest.approx(expected, rel=1e-12)
