"""The break-even taker fee: the fee at which the strategy's OWN trades — same bars, sides and
quantities, same slippage and funding — re-priced have a net Sharpe of zero.

The net run's fills are replayed (:func:`trading.replay.replay_fills`) at a trial fee per fill and
the fee is bisected (:func:`trading.forecast.break_even_fee`); no decision is re-taken, so a
higher fee never changes which trades happen (the cost filter stays as it was at the real fee).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from cryptoml_pipeline.evaluation.forecast import break_even_fee
from cryptoml_pipeline.evaluation.metrics import daily_returns, sharpe_ratio
from cryptoml_pipeline.execution.backtest import BacktestResult, slippage_matrix
from cryptoml_pipeline.execution.market_grid import align_decisions, build_grid, funding_schedule
from cryptoml_pipeline.execution.replay import replay_fills
from cryptoml_pipeline.settings import CostConfig, SlippageConfig


def break_even_taker_fee(
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    decisions: pd.DataFrame,
    net: BacktestResult,
    *,
    costs: CostConfig,
    slippage: SlippageConfig | None,
    timeframe: str,
    funding_interval_hours: int = 8,
) -> dict[str, Any]:
    """``{"break_even_taker_fee", "status", "sharpe_at_zero_fee", ...}`` for the net run's
    trades (``net`` must come from :func:`trading.backtest.simulate` on these inputs)."""
    if net.fills is None or len(net.fills) == 0:
        return {"break_even_taker_fee": None, "status": "no trades", "current_fee": costs.taker_fee}
    grid = build_grid(candles, timeframe)
    aligned = align_decisions(decisions, grid)
    slip = slippage_matrix(aligned, grid, costs, slippage, timeframe)
    schedule = funding_schedule(grid, funding, interval_hours=funding_interval_hours)

    def sharpe_at(fee: float) -> float | None:
        res = replay_fills(
            grid,
            net.fills,
            initial_equity=net.initial_equity,
            entry_fee=fee,
            exit_fee=fee,
            slip=slip,
            schedule=schedule,
        )
        if (res.equity <= 0).any():  # ruined: returns on a non-positive equity mean nothing
            return -1e9
        daily = daily_returns(res.equity, initial_equity=net.initial_equity)
        return sharpe_ratio(daily.to_numpy())

    out = break_even_fee(sharpe_at, current_fee=costs.taker_fee)
    out["method"] = "same fills re-priced per fill (slippage and funding kept), bisection"
    return out
