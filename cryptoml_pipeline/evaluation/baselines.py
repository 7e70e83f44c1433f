"""Baselines run through the same ledger and market rules as :func:`backtest.simulate`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.execution.backtest import BacktestResult, make_result, settlements_by_bar
from cryptoml_pipeline.execution.book import Ledger
from cryptoml_pipeline.execution.market_grid import build_grid, funding_schedule
from cryptoml_pipeline.settings import CostConfig


def buy_and_hold(
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    *,
    costs: CostConfig,
    timeframe: str,
    funding_interval_hours: int = 8,
) -> BacktestResult:
    """Equal-weight long perpetual basket, 1x equity in total.

    Each symbol gets a notional of ``initial_equity / n_symbols``, bought at the open of its first
    bar and sold at the close of its last bar (reason ``end``), with taker fees, slippage and
    funding (the simulator's settlement rule: nothing at the entry instant, charged while held).
    Allocations of symbols whose data start later sit in cash until their first bar.
    """
    grid = build_grid(candles, timeframe)
    schedule = funding_schedule(grid, funding, interval_hours=funding_interval_hours)
    book = Ledger(grid.symbols, costs)
    n_sym, n_bars = grid.has_bar.shape
    allocation = book.initial_equity / n_sym
    first_bar = [int(np.flatnonzero(row)[0]) for row in grid.has_bar]
    times = list(grid.timestamps)
    settle_times = list(schedule.times)
    rates_by_settlement = schedule.rates.T.tolist()
    settle_open, settle_inside = settlements_by_bar(schedule, n_bars)
    opens, closes = grid.open.tolist(), grid.close.tolist()
    has_bar, last_bar = grid.has_bar.tolist(), grid.last_bar.tolist()
    prices = [float("nan")] * n_sym
    equity = np.empty(n_bars)
    exposure = np.empty(n_bars)
    for i in range(n_bars):
        for s in range(n_sym):
            if has_bar[s][i]:
                prices[s] = opens[s][i]
        for k in settle_open[i]:
            book.settle_all(time=settle_times[k], rates=rates_by_settlement[k], prices=prices)
        for s in range(n_sym):
            if i == first_bar[s]:
                book.open(
                    s,
                    direction=1,
                    raw_price=opens[s][i],
                    notional=allocation,
                    time=times[i],
                    ordinal=0,
                    hold_bars=n_bars,
                    stop_distance=1.0,  # stop at price 0: never checked, never hit
                    risk_amount=allocation,
                )
        for k in settle_inside[i]:
            book.settle_all(time=settle_times[k], rates=rates_by_settlement[k], prices=prices)
        for s in range(n_sym):
            if has_bar[s][i]:
                prices[s] = closes[s][i]
                if i == last_bar[s]:
                    book.close(s, raw_price=closes[s][i], time=times[i], reason="end")
        equity[i] = book.equity(prices)
        exposure[i] = book.gross_notional(prices) / equity[i] if equity[i] > 0 else np.nan
    return make_result(book, grid, equity, exposure)
