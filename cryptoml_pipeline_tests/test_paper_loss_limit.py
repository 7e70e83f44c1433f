"""The daily loss limit in the paper account: the day's state (start equity, tripped) outlives
the flat close where the account's re-simulation window restarts, so a paper account fed bar by
bar -- and one restarted as a new process in the middle of a tripped day -- books exactly the
trades, fills, equity and guard counts of ONE backtest over the same bars.

The market and decisions are test_paper_replay's (taker, take-profit, cost filter, funding) with
a 0.3 % limit: it trips on two days, and on the first the account goes flat and re-enters before
the trip and goes flat again after it, with decisions that would enter on that same day (a window
restarted without the day's state takes them)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.execution.backtest import BacktestResult, loss_limit_day, simulate
from cryptoml_pipeline.live.decision import decide
from cryptoml_pipeline.live.paper import PaperTrader, equity_marks, orders_frame
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.strategy.options import simulation_options
from cryptoml_pipeline_tests import test_paper_replay as t

LIMIT = 0.003
STEP = pd.Timedelta(t.TF)


def limited_settings() -> PipelineSettings:
    settings = t.scenario_settings("taker")
    risk = settings.risk.model_copy(update={"daily_loss_limit": LIMIT})
    return settings.model_copy(update={"risk": risk})


def _backtest(settings: PipelineSettings, data: tuple, last: pd.Timestamp, **kw) -> BacktestResult:
    candles, funding, _, _, decisions, _, _ = data
    common = simulation_options(settings, t.TF)[0] | kw
    end = last + STEP
    return simulate(
        t._span(candles, t.START, end), t._span(funding, t.START, end), decisions, **common
    )


@pytest.fixture(scope="module")
def case() -> dict:
    """The inputs up to the last bar where the backtest is flat (so that one backtest over them
    has no end-of-data close), the backtest, and the first trip day's bars."""
    settings = limited_settings()
    data = t._inputs(settings)
    longer = _backtest(settings, data, t.START + (t.N_BARS + t.EXTRA - 1) * STEP)
    flats = _flat_closes(longer)
    last = flats[flats <= data[5][-1].bar][-1]  # flat there in a longer run: no end-of-data
    backtest = _backtest(settings, data, last)
    assert (backtest.trades["exit_reason"] != "end").all()
    initial = settings.costs.initial_equity
    state = {b: loss_limit_day(backtest.equity, initial, LIMIT, b) for b in backtest.equity.index}
    trips = [b for b, s in state.items() if s.tripped and not state.get(b - STEP, s).tripped]
    trips += [b for b, s in state.items() if s.tripped and b == b.floor("D")]
    trip = next(b for b in sorted(trips) if _flat_and_reentry(backtest, b))
    day = [b for b in backtest.equity.index if b.floor("D") == trip.floor("D")]
    return {
        "settings": settings,
        "data": data,
        "inputs": [i for i in data[5] if i.bar <= last],
        "backtest": backtest,
        "state": state,
        "trip": trip,
        "day": day,
    }


def _flat_closes(result: BacktestResult) -> pd.DatetimeIndex:
    return result.exposure.index[(result.exposure == 0).to_numpy()]


def _flat_and_reentry(result: BacktestResult, trip: pd.Timestamp) -> bool:
    """On ``trip``'s day: a flat close, then an entry, up to the trip; a flat close after it
    with the day still running."""
    first, last = trip.floor("D"), trip.floor("D") + pd.Timedelta(days=1) - STEP
    flats = _flat_closes(result)
    entry = pd.to_datetime(result.trades["entry_time"], utc=True)
    before = [f for f in flats if first <= f < trip]
    again = any(((entry > f) & (entry <= trip)).any() for f in before)
    return again and any(trip <= f < last for f in flats)


def test_the_scenario_trips_and_restarts_windows_mid_day(case) -> None:
    """The data do what the comparison needs: on the trip day the account goes flat and re-enters
    before the trip, goes flat after it with the day still running, and a run restarted at such a
    close without the day's state enters where the account must not."""
    bt, trip, day = case["backtest"], case["trip"], case["day"]
    assert bt.guard_counts["daily_loss_limit_days"] >= 2
    assert bt.guard_counts["daily_loss_limit_entries"] > 0
    assert len(day) == 24 and _flat_and_reentry(bt, trip)
    entry = pd.to_datetime(bt.trades["entry_time"], utc=True)
    after = [f for f in _flat_closes(bt) if trip <= f < day[-1]]
    # a window restarted at such a close WITHOUT the day's state (the old behaviour) trades
    restart = after[0]
    settings, data = case["settings"], case["data"]
    candles, funding, _, _, decisions, _, _ = data
    costs = settings.costs.model_copy(update={"initial_equity": float(bt.equity[restart])})
    common = simulation_options(settings, t.TF)[0] | {"costs": costs}
    span = (restart + STEP, day[-1] + STEP)
    fresh = simulate(t._span(candles, *span), t._span(funding, *span), decisions, **common)
    assert len(fresh.trades) > 0, "nothing the day's state has to block after the restart"
    assert not (entry > restart).any() or entry[entry > restart].min() > day[-1]


def _replay(
    case: dict,
    engine,
    run: str,
    restarts: set[pd.Timestamp],
    check: Callable[[PaperTrader], None] | None = None,
) -> PaperTrader:
    """Bar by bar; a new PaperTrader (a restarted process) before each bar in ``restarts``;
    ``check`` after each bar."""
    trader = t._trader(engine, case["settings"], run)
    for item in case["inputs"]:
        if item.bar in restarts:
            trader = t._trader(engine, case["settings"], run)
            assert trader.last_bar == item.bar - STEP
        trader.process(item)
        if check is not None:
            check(trader)
    return trader


def _assert_identical(case: dict, trader: PaperTrader, engine, run: str) -> None:
    bt = case["backtest"]
    marks = equity_marks(engine, run)
    assert marks.index.equals(bt.equity.index)
    assert np.array_equal(marks.to_numpy(), bt.equity.to_numpy()), "equity marks differ"
    recorded = t._canonical(orders_frame(engine, run))
    expected = t._expected_fills(bt.trades, case["settings"])
    pd.testing.assert_frame_equal(recorded, expected, check_exact=True)
    assert trader.guard_counts() == bt.guard_counts
    out = trader.close_out()  # the account's bars from its first: the same backtest
    pd.testing.assert_frame_equal(out.trades, bt.trades, check_exact=True)
    assert trader.flat and trader.last_bar == bt.equity.index[-1]


def test_paper_account_books_the_daily_loss_limit_as_the_backtest(tmp_path, case) -> None:
    """Bar by bar in one process; ``/signal``'s decision reads the account's day on the way."""
    engine = t._engine(tmp_path)
    t0 = time.perf_counter()
    trader = _replay(case, engine, "limited", set(), check=lambda tr: _check_signal(case, tr))
    took = time.perf_counter() - t0
    _assert_identical(case, trader, engine, "limited")
    print(f"{len(case['inputs'])} bars in {took:.2f} s; {case['backtest'].guard_counts}")  # noqa: T201


def test_a_restart_mid_day_after_a_trip_carries_the_day(tmp_path, case) -> None:
    """A new process before every bar of the trip day from the trip on: inside the window the
    trip happened in (re-simulated from its flat close's day state, read off the recorded marks)
    and at the flat closes after it (empty windows that start tripped)."""
    engine = t._engine(tmp_path)
    restarts = {b + STEP for b in case["day"] if b >= case["trip"]}
    trader = _replay(case, engine, "restarted", restarts)
    _assert_identical(case, trader, engine, "restarted")


def _check_signal(case: dict, trader: PaperTrader) -> None:
    """``/signal``: the live service gives :func:`decide` the account's day
    (``PaperTrader.loss_limit_inputs``): an entry filling at the next open is blocked for the
    rest of a tripped day, not at the next day's first open."""
    settings, trip, day, bar = case["settings"], case["trip"], case["day"], trader.last_bar
    assert bar is not None
    if bar not in (trip - STEP, trip, day[-2], day[-1]):
        return
    args = {"signal": 2, "confidence": 0.9, "expected_return": 0.05, "volatility": 0.5}
    args |= {"atr_pct": 0.01, "settings": settings, "timeframe": t.TF}
    start, low = trader.loss_limit_inputs(bar + STEP)
    got = decide(**args, equity=trader.equity(), day_open_equity=start, day_low_equity=low)
    assert ("daily loss limit" in got.reason) == (trip <= bar < day[-1]), (bar, got)
    assert (start is None) == (bar == day[-1])
    if start is not None:
        assert start == case["state"][bar].start_equity
