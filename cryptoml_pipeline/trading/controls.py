"""Controls beside every result: a random strategy with the same turnover (Monte-Carlo), the
shuffled-label model's verdict, and the gross-vs-net cost summary.

Random same-turnover strategy: each Monte-Carlo path shifts every symbol's decision series
(signal, confidence, expected return) circularly in time by a random offset (between 10 % and
90 % of the grid), keeping the market columns (volatility, ATR) on their own bars. The path keeps
the strategy's number, clustering and holding of signals (hence its turnover, up to edge effects)
and loses only their timing relative to prices. Seeded; the strategy's percentile and a one-sided
p-value (share of random paths whose Sharpe is >= the strategy's) are reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.settings import CostConfig, RiskConfig, SlippageConfig
from cryptoml_pipeline.trading.backtest import BacktestResult, run_aligned, slippage_matrix
from cryptoml_pipeline.trading.market_grid import align_decisions, build_grid, funding_schedule
from cryptoml_pipeline.trading.metrics import daily_returns, sharpe_ratio
from cryptoml_pipeline.trading.statistics import probabilistic_sharpe

log = logging.getLogger(__name__)

SHIFTED = ("signal", "confidence", "expected_return")
LEAK_PSR = 0.95  # a shuffled-label model whose Sharpe is > 0 with this probability has an edge
LEAK_Z = 3.0  # ... or whose directional accuracy is this many binomial s.e. above 50 %


@dataclass(frozen=True)
class MonteCarloSummary:
    n_paths: int
    sharpe: list[float | None]
    total_return: list[float]
    turnover: list[float]
    strategy_sharpe: float | None
    strategy_percentile: float | None
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        finite = [s for s in self.sharpe if s is not None]
        q = np.percentile(finite, [5, 50, 95]).tolist() if finite else None
        return {
            "n_paths": self.n_paths,
            "sharpe_p5_p50_p95": q,
            "total_return_median": float(np.median(self.total_return))
            if self.total_return
            else None,
            "turnover_median": float(np.median(self.turnover)) if self.turnover else None,
            "strategy_sharpe": self.strategy_sharpe,
            "strategy_percentile": self.strategy_percentile,
            "p_value": self.p_value,
            "method": "circular time shift of each symbol's decisions (same turnover)",
        }


def _sharpe(result: BacktestResult) -> float | None:
    return sharpe_ratio(
        daily_returns(result.equity, initial_equity=result.initial_equity).to_numpy()
    )


def random_same_turnover(
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    decisions: pd.DataFrame,
    *,
    strategy_sharpe: float | None,
    costs: CostConfig,
    risk: RiskConfig,
    min_hold_bars: int,
    timeframe: str,
    funding_interval_hours: int = 8,
    slippage: SlippageConfig | None = None,
    n_paths: int = 200,
    seed: int = 7,
) -> MonteCarloSummary:
    """Monte-Carlo distribution of the random same-turnover strategy (see module docstring)."""
    grid = build_grid(candles, timeframe)
    aligned = align_decisions(decisions, grid)  # validates the decisions
    schedule = funding_schedule(grid, funding, interval_hours=funding_interval_hours)
    rng = np.random.default_rng(seed)
    n_sym, n_bars = grid.open.shape
    sharpes: list[float | None] = []
    returns: list[float] = []
    turnovers: list[float] = []
    lo, hi = max(1, n_bars // 10), max(2, 9 * n_bars // 10)
    for _ in range(n_paths):
        path = dict(aligned)
        for name in SHIFTED:
            shifted = np.empty_like(aligned[name])
            for s in range(n_sym):
                shifted[s] = np.roll(aligned[name][s], int(rng.integers(lo, hi)))
            path[name] = np.where(grid.has_bar, shifted, 0.0 if name == "signal" else np.nan)
        slip = slippage_matrix(path, grid, costs, slippage, timeframe)
        result = run_aligned(
            grid, path, schedule, costs=costs, risk=risk, min_hold_bars=min_hold_bars, slip=slip
        )
        sharpes.append(_sharpe(result))
        returns.append(float(result.equity.iloc[-1] / result.initial_equity - 1.0))
        turnovers.append(float((result.traded_notional or 0.0) / result.initial_equity))
    finite = np.array([s for s in sharpes if s is not None], dtype=np.float64)
    percentile = p_value = None
    if strategy_sharpe is not None and len(finite):
        percentile = float(np.mean(finite < strategy_sharpe))
        p_value = float((1 + np.sum(finite >= strategy_sharpe)) / (1 + len(finite)))
    return MonteCarloSummary(
        n_paths, sharpes, returns, turnovers, strategy_sharpe, percentile, p_value
    )


def shuffled_label_verdict(
    kpis: dict[str, Any] | None, predictions: pd.DataFrame | None
) -> dict[str, Any]:
    """Does the shuffled-label model show an edge? ``leak`` True means: investigate a leak.

    Edge = its daily-return PSR (P[Sharpe > 0]) > 0.95, or its directional accuracy is more than
    3 binomial standard errors above 50 %, or its 5-class accuracy is more than 3 standard errors
    above the test window's majority-class rate (the best a model that learnt only the class prior
    can do). ``available`` False when the control was not run. A control that neither traded nor
    called a direction is judged on the class-accuracy test alone, and says so.
    """
    if kpis is None or predictions is None or predictions.empty:
        return {"available": False, "leak": None, "reason": "shuffled-label control not run"}
    psr = kpis.get("psr")
    directional = kpis.get("directional_accuracy")
    signal = predictions["signal"].to_numpy(np.float64)
    label = predictions["label"].to_numpy(np.float64)
    n = int(np.sum((signal != 0) & np.isfinite(label) & (label != 0)))
    z = None
    if directional is not None and n > 0:
        z = (directional - 0.5) / np.sqrt(0.25 / n)
    known = np.isfinite(label)
    accuracy = majority = z_acc = None
    if known.any() and "pred_class" in predictions.columns:
        classes = label[known] + 2
        accuracy = float(np.mean(predictions["pred_class"].to_numpy(np.float64)[known] == classes))
        majority = float(np.max(np.unique(classes, return_counts=True)[1]) / known.sum())
        se = np.sqrt(max(majority * (1 - majority), 1e-12) / known.sum())
        z_acc = (accuracy - majority) / se
    leak = bool(
        (psr is not None and psr > LEAK_PSR)
        or (z is not None and z > LEAK_Z)
        or (z_acc is not None and z_acc > LEAK_Z)
    )
    reasons = []
    if psr is not None and psr > LEAK_PSR:
        reasons.append(f"P(Sharpe > 0) = {psr:.3f} > {LEAK_PSR}")
    if z is not None and z > LEAK_Z:
        reasons.append(f"directional accuracy {directional:.3f} is {z:.1f} s.e. above 50 %")
    if z_acc is not None and z_acc > LEAK_Z:
        reasons.append(
            f"5-class accuracy {accuracy:.3f} is {z_acc:.1f} s.e. above the majority class "
            f"rate {majority:.3f}"
        )
    if not reasons:
        basis = (
            "class accuracy vs the majority class only: it made no directional calls"
            if n == 0
            else "trading, direction and class accuracy"
        )
        reasons_text = f"no edge (as expected; judged on {basis})"
    else:
        reasons_text = "; ".join(reasons)
    return {
        "available": True,
        "leak": leak,
        "psr": psr,
        "directional_accuracy": directional,
        "directional_z": None if z is None else float(z),
        "n_directional": n,
        "accuracy": accuracy,
        "majority_class_rate": majority,
        "accuracy_z": None if z_acc is None else float(z_acc),
        "reason": reasons_text,
    }


def cost_summary(net: BacktestResult, gross: BacktestResult) -> dict[str, float | None]:
    """Gross (no fees, no slippage) vs net total return, the fee drag and the turnover."""
    initial = net.initial_equity
    net_ret = float(net.equity.iloc[-1] / initial - 1.0)
    gross_ret = float(gross.equity.iloc[-1] / gross.initial_equity - 1.0)
    return {
        "gross_total_return": gross_ret,
        "net_total_return": net_ret,
        "cost_drag": gross_ret - net_ret,
        "fees_paid": float(net.fees_paid) / initial,
        "funding_paid": float(net.funding_paid) / initial,
        "turnover": float((net.traded_notional or 0.0) / initial),
        "gross_sharpe": _sharpe(gross),
        "net_sharpe": _sharpe(net),
    }


def gross_costs(costs: CostConfig) -> CostConfig:
    """The same costs with fees and slippage set to zero (funding stays: it is carry)."""
    return costs.model_copy(update={"taker_fee": 0.0, "maker_fee": 0.0, "slippage_bps": 0.0})


def psr_of(result: BacktestResult) -> float | None:
    return probabilistic_sharpe(
        daily_returns(result.equity, initial_equity=result.initial_equity).to_numpy()
    )
