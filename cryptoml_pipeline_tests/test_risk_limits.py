"""The guards at the point of execution (issue 20): the daily loss limit and the notional caps,
applied by the kernel's entry step (backtest, paper trader) and the live decision alike.

Hand set-up: no fees, no slippage, equity 10_000; a decision with signal 2, confidence 1,
volatility 0.1 and atr_pct 5 % -> risk 200, stop 10 %, notional 2000.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.execution import kernel as K
from cryptoml_pipeline.execution.backtest import (
    GUARD_COUNTS,
    kernel_params,
    loss_limit_day,
    simulate,
)
from cryptoml_pipeline.live.decision import decide
from cryptoml_pipeline.settings import CostConfig, RiskConfig, profile_settings

COSTS = CostConfig(taker_fee=0.0, maker_fee=0.0, slippage_bps=0.0, initial_equity=10_000.0)
RISK = RiskConfig(
    base_risk=0.02,
    max_risk_per_trade=0.02,
    portfolio_heat=0.5,
    max_leverage=3.0,
    atr_stop_multiple=2.0,
    volatility_reference=0.2,
    confidence_threshold=0.0,
    edge_cost_multiple=None,
)
START = pd.Timestamp("2024-01-01 20:00", tz="UTC")  # four bars before midnight


def at(hour: int) -> pd.Timestamp:
    return START + pd.Timedelta(hours=hour)


def candles(symbol: str, opens, closes) -> pd.DataFrame:
    opens, closes = np.asarray(opens, dtype=float), np.asarray(closes, dtype=float)
    return pd.DataFrame(
        {
            "timestamp": [at(k) for k in range(len(opens))],
            "symbol": symbol,
            "open": opens,
            "high": np.maximum(opens, closes) + 0.5,
            "low": np.minimum(opens, closes) - 0.5,
            "close": closes,
            "volume": 1.0,
        }
    )


def decisions(rows: list[tuple[str, int]], *, atr: float = 0.05) -> pd.DataFrame:
    """rows: (symbol, bar of the decision row); every decision is signal 2 (long)."""
    return pd.DataFrame(
        {
            "timestamp": [at(h) for _, h in rows],
            "symbol": [s for s, _ in rows],
            "signal": 2,
            "confidence": 1.0,
            "volatility": 0.1,
            "atr_pct": atr,
        }
    )


def zero_funding(bars: pd.DataFrame) -> pd.DataFrame:
    """A zero rate at every 8-hour settlement the bars span, for every symbol."""
    times = pd.date_range(bars["timestamp"].min().floor("8h"), bars["timestamp"].max(), freq="8h")
    return pd.DataFrame(
        [(t, s, 0.0) for s in bars["symbol"].unique() for t in times],
        columns=["timestamp", "symbol", "funding_rate"],
    )


def run(bars, decs, risk=RISK, *, costs=COSTS, **kw):
    return simulate(
        bars,
        zero_funding(bars),
        decs,
        costs=costs,
        risk=risk,
        min_hold_bars=1,
        timeframe="1h",
        **kw,
    )


def guarded(**update) -> RiskConfig:
    return RISK.model_copy(update=update)


# ---------------------------------------------------------------- the daily loss limit
def _loss_day():
    """AAA (bars 20:00 .. 03:00) enters long at 100 at 21:00 and closes that bar at 94: equity
    9880, 1.2 % below the day's 10_000. It is held on at the 22:00 and 23:00 reviews and exits
    (time) at 00:00. BBB (flat at 50) has a long decision filling at every open from 22:00."""
    aaa = candles("AAA", [100, 100] + [94] * 6, [100, 94] + [94] * 6)
    bbb = candles("BBB", [50] * 8, [50] * 8)
    rows = [("AAA", 0), ("AAA", 1), ("AAA", 2)] + [("BBB", h) for h in range(1, 7)]
    return pd.concat([aaa, bbb], ignore_index=True), decisions(rows)


def test_loss_limit_blocks_entries_for_the_rest_of_the_day_and_not_the_next() -> None:
    bars, decs = _loss_day()
    off = run(bars, decs)
    bbb = off.trades[off.trades["symbol"] == "BBB"]
    assert bbb["entry_time"].tolist() == [at(2)]  # without the limit BBB enters at 22:00
    result = run(bars, decs, guarded(daily_loss_limit=0.01))  # trips at 9900
    trades = result.trades.set_index("symbol")
    # the position open at the trip is still managed: held on at 22:00 and 23:00, exits 00:00
    assert trades.loc["AAA", "entry_time"] == at(1)
    assert (trades.loc["AAA", "exit_time"], trades.loc["AAA", "exit_reason"]) == (at(4), "time")
    # no entry at 22:00 or 23:00; at the next day's first open BBB enters, sized on 9880
    assert trades.loc["BBB", "entry_time"] == at(4) == pd.Timestamp("2024-01-02", tz="UTC")
    assert trades.loc["BBB", "risk_amount"] == pytest.approx(9880.0 * 0.02, rel=1e-12)
    assert trades.loc["BBB", "notional"] == pytest.approx(9880.0 * 0.2, rel=1e-12)
    assert result.guard_counts == {
        "daily_loss_limit_days": 1,
        "daily_loss_limit_bars": 2,  # 22:00 and 23:00 opened blocked
        "daily_loss_limit_entries": 2,  # BBB's decisions filling there
        "max_notional_per_symbol_entries": 0,
        "max_notional_total_entries": 0,
    }


def test_loss_limit_trips_at_the_fraction_and_not_above_it() -> None:
    bars, decs = _loss_day()
    # 9880 is 1.2 % down: a 1.25 % limit (threshold 9875) never trips
    loose = run(bars, decs, guarded(daily_loss_limit=0.0125))
    assert loose.guard_counts["daily_loss_limit_days"] == 0
    pd.testing.assert_frame_equal(loose.trades, run(bars, decs).trades, check_exact=True)
    tight = run(bars, decs, guarded(daily_loss_limit=0.0115))
    assert tight.guard_counts["daily_loss_limit_days"] == 1


def test_loss_limit_state_carries_into_a_run_started_inside_the_day() -> None:
    """The paper trader's window: a run from the bar after a flat close (its equity as the
    initial equity), given the day's state read off the full run's marks, books the rest of the
    day as the full run does; without that state it would enter at once."""
    bars, decs = _loss_day()
    decs = decs[(decs["symbol"] == "BBB") | (decs["timestamp"] == at(0))]  # AAA exits at 22:00
    risk = guarded(daily_loss_limit=0.01)
    full = run(bars, decs, risk)
    assert full.exposure[at(2)] == 0.0  # flat at the 22:00 close, 9880 in cash
    day = loss_limit_day(full.equity, 10_000.0, 0.01, at(2))
    assert (day.day, day.start_equity, day.tripped) == (
        pd.Timestamp("2024-01-01", tz="UTC"),
        10_000.0,
        True,
    )
    later = bars[bars["timestamp"] >= at(3)]
    costs = COSTS.model_copy(update={"initial_equity": float(full.equity[at(2)])})
    window = run(later, decs, risk, costs=costs, loss_limit_start=day)
    rest = full.trades[full.trades["entry_time"] >= at(3)].reset_index(drop=True)
    assert rest["entry_time"].tolist() == [at(4)]
    pd.testing.assert_frame_equal(window.trades, rest, check_exact=True)
    assert np.array_equal(window.equity.to_numpy(), full.equity[at(3) :].to_numpy())
    assert window.guard_counts["daily_loss_limit_entries"] == 1  # BBB at 23:00
    assert run(later, decs, risk, costs=costs).trades["entry_time"].tolist() == [at(3)]


# ---------------------------------------------------------------- the notional caps
def test_per_symbol_cap_scales_risk_and_notional_together() -> None:
    bars = candles("AAA", [100] * 4, [100] * 4)
    result = run(bars, decisions([("AAA", 0)]), guarded(max_notional_per_symbol=0.15))
    trade = result.trades.iloc[0]
    assert trade["notional"] == pytest.approx(1500.0, rel=1e-12)  # 0.15 x 10_000 (wanted 2000)
    assert trade["risk_amount"] == pytest.approx(150.0, rel=1e-12)  # same factor, 0.75
    assert result.guard_counts["max_notional_per_symbol_entries"] == 1
    assert result.guard_counts["max_notional_total_entries"] == 0


def test_total_cap_scales_the_entry_that_crosses_it_and_skips_when_nothing_is_left() -> None:
    bars = pd.concat(
        [candles("AAA", [100] * 4, [100] * 4), candles("BBB", [50] * 4, [50] * 4)],
        ignore_index=True,
    )
    decs = decisions([("AAA", 0), ("BBB", 0)])
    result = run(bars, decs, guarded(max_notional_total=0.3))  # 3000 gross in all
    trades = result.trades.set_index("symbol")
    assert trades.loc["AAA", "notional"] == pytest.approx(2000.0, rel=1e-12)  # first, whole
    assert trades.loc["BBB", "notional"] == pytest.approx(1000.0, rel=1e-12)  # what is left
    assert trades.loc["BBB", "risk_amount"] == pytest.approx(100.0, rel=1e-12)
    assert result.guard_counts["max_notional_total_entries"] == 1
    full = run(bars, decs, guarded(max_notional_total=0.2))  # AAA takes all 2000
    assert full.trades["symbol"].tolist() == ["AAA"]
    assert full.guard_counts["max_notional_total_entries"] == 1
    assert full.exposure.max() == pytest.approx(0.2, rel=1e-12)


def test_the_sizer_applies_the_caps_and_names_the_binding_one() -> None:
    def sized(risk, open_risk=0.0, gross=0.0):
        f = kernel_params(COSTS, risk, 1, None)[1]
        return K.sized_entry(10_000.0, 2.0, 1.0, 0.1, 0.1, open_risk, gross, f)

    assert sized(RISK) == (200.0, 2000.0, K.CAP_NONE)
    amount, notional, cap = sized(guarded(max_notional_per_symbol=0.1))
    assert (amount, notional, cap) == (pytest.approx(100.0), pytest.approx(1000.0), K.CAP_SYMBOL)
    amount, notional, cap = sized(guarded(max_notional_total=0.5), gross=4000.0)
    assert (amount, notional, cap) == (pytest.approx(100.0), pytest.approx(1000.0), K.CAP_TOTAL)
    # the leverage cap binds harder (3 x 10_000 - 29_500 = 500 < 35_000 - 29_500): no cap named
    amount, notional, cap = sized(guarded(max_notional_total=3.5), gross=29_500.0)
    assert (notional, cap) == (pytest.approx(500.0), K.CAP_NONE)
    # caps looser than the entry change nothing, bit for bit
    assert sized(guarded(max_notional_per_symbol=0.2, max_notional_total=0.2)) == sized(RISK)


def test_the_live_decision_applies_the_same_caps_and_loss_limit() -> None:
    base = profile_settings("tiny")
    risk = base.risk.model_copy(
        update={
            "max_notional_per_symbol": 0.05,
            "max_notional_total": 0.5,
            "daily_loss_limit": 0.02,
        }
    )
    settings = base.model_copy(update={"risk": risk})
    args = {
        "signal": 2,
        "confidence": 0.9,
        "expected_return": 0.05,
        "volatility": 0.6,
        "atr_pct": 0.01,
        "settings": settings,
        "timeframe": "1h",
        "equity": 10_000.0,
    }
    enter = decide(**args)
    assert enter.action == "enter"
    assert enter.notional == pytest.approx(500.0, rel=1e-12)  # per-symbol cap 5 % of 10_000
    _, f = kernel_params(settings.costs, risk, settings.min_hold_bars, None)
    stop = f[K.F_ATR_MULT] * 0.01
    assert (enter.risk_amount, enter.notional) == K.size_entry(
        10_000.0, 2.0, 0.9, 0.6, stop, 0.0, 0.0, f
    )
    # the total cap sees what the account holds: 4800 of 5000 gross allowed -> 200 left
    assert decide(**args, gross_notional=4800.0).notional == pytest.approx(200.0, rel=1e-12)
    # the day started at 10_200; the lowest close so far (9996 = 2 % down) tripped the limit
    halted = decide(**args, day_open_equity=10_200.0, day_low_equity=9996.0)
    assert (halted.action, halted.notional) == ("hold", None)
    assert "daily loss limit" in halted.reason
    flip = decide(**(args | {"signal": -2, "expected_return": -0.05}), position=1)
    assert (flip.action, flip.flip_to) == ("exit", "short")
    no_flip = decide(
        **(args | {"signal": -2, "expected_return": -0.05}),
        position=1,
        day_open_equity=10_200.0,
        day_low_equity=9996.0,
    )
    assert (no_flip.action, no_flip.flip_to) == ("exit", None)  # exits, does not re-enter
    assert decide(**args, day_open_equity=10_200.0, day_low_equity=9997.0).action == "enter"


# ---------------------------------------------------------------- off = today's results
def _synthetic_market(n_hours: int = 24 * 12, seed: int = 11):
    rng = np.random.default_rng(seed)
    frames, rows = [], []
    for k, symbol in enumerate(("AAA", "BBB", "CCC")):
        close = (100.0 + 50 * k) * np.exp(np.cumsum(rng.normal(0, 0.01, n_hours)))
        open_ = np.concatenate([[close[0]], close[:-1]])
        span = np.abs(rng.normal(0, 0.004, n_hours)) * close
        frame = candles(symbol, open_, close)
        frame["high"] = np.maximum(open_, close) + span
        frame["low"] = np.minimum(open_, close) - span
        frames.append(frame)
        signal = rng.choice([-2, -1, 0, 1, 2], n_hours)
        rows.append(
            pd.DataFrame(
                {
                    "timestamp": frame["timestamp"],
                    "symbol": symbol,
                    "signal": signal,
                    "confidence": rng.uniform(0.2, 1.0, n_hours),
                    "volatility": rng.uniform(0.05, 0.8, n_hours),
                    "atr_pct": rng.uniform(0.003, 0.02, n_hours),
                }
            )
        )
    return pd.concat(frames, ignore_index=True), pd.concat(rows, ignore_index=True)


def _assert_identical(a, b) -> None:
    assert np.array_equal(a.equity.to_numpy(), b.equity.to_numpy())
    assert np.array_equal(a.exposure.to_numpy(), b.exposure.to_numpy(), equal_nan=True)
    pd.testing.assert_frame_equal(a.trades, b.trades, check_exact=True)
    assert (a.fees_paid, a.traded_notional, a.bars_in_market, a.slippage_paid) == (
        b.fees_paid,
        b.traded_notional,
        b.bars_in_market,
        b.slippage_paid,
    )


@pytest.mark.parametrize("hold", [1, 4])
def test_loose_guards_trade_exactly_as_no_guards(hold: int) -> None:
    bars, decs = _synthetic_market()
    costs = CostConfig(taker_fee=0.0005, slippage_bps=2.0, initial_equity=10_000.0)
    risk = RISK.model_copy(update={"portfolio_heat": 0.06})

    def go(r):
        return simulate(
            bars, zero_funding(bars), decs, costs=costs, risk=r, min_hold_bars=hold, timeframe="1h"
        )

    off = go(risk)
    assert len(off.trades) > 100
    assert off.guard_counts == dict.fromkeys(GUARD_COUNTS, 0)
    loose = risk.model_copy(
        update={
            "daily_loss_limit": 0.9,
            "max_notional_per_symbol": 100.0,
            "max_notional_total": 100.0,
        }
    )
    _assert_identical(go(loose), off)
    # the same guards set tight do change the run (the comparison above can fail)
    tight = go(
        risk.model_copy(
            update={
                "daily_loss_limit": 0.005,
                "max_notional_per_symbol": 0.5,
                "max_notional_total": 1.0,
            }
        )
    )
    assert all(tight.guard_counts[name] > 0 for name in GUARD_COUNTS)
    assert len(tight.trades) < len(off.trades)
    fills = tight.fills
    assert (fills.quantity * fills.entry_raw <= 0.5 * fills.entry_equity * (1 + 1e-3)).all()
