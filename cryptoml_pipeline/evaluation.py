"""Out-of-sample evaluation: the strategy and its baselines on the same span, costs always on.

Pure domain code (no Dagster): the ``backtest`` asset calls :func:`evaluate_walk_forward`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.modeling.folds import Fold
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.trading.backtest import BacktestResult, simulate
from cryptoml_pipeline.trading.baselines import buy_and_hold
from cryptoml_pipeline.trading.engine import decisions_from_predictions
from cryptoml_pipeline.trading.metrics import accuracy_windows, compute_kpis, kpis_vs_targets
from cryptoml_pipeline.trading.rules import rule_decisions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    equity: pd.DataFrame  # timestamp + one equity column per strategy
    trades: pd.DataFrame  # the ML strategy's round trips
    strategy: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    targets: dict[str, dict[str, Any]]
    folds: list[dict[str, Any]]
    acc_recent: float | None
    acc_prior: float | None

    def to_bundle(self) -> dict[str, Any]:
        return {
            "equity": self.equity,
            "trades": self.trades,
            "strategy": self.strategy,
            "baselines": self.baselines,
            "targets": self.targets,
            "folds": self.folds,
            "acc_recent": self.acc_recent,
            "acc_prior": self.acc_prior,
        }


def prediction_correct(predictions: pd.DataFrame) -> pd.Series:
    """Per prediction with a known label: did the 5-class prediction hit (class = label + 2)?"""
    known = predictions["label"].notna()
    return predictions.loc[known, "pred_class"].astype(int) == (
        predictions.loc[known, "label"].astype(int) + 2
    )


def _window_return(equity: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> float | None:
    """Equity return over ``[start, end)``: from the last mark before ``start`` (or the first
    inside) to the last mark inside."""
    before = equity[equity.index < start]
    inside = equity[(equity.index >= start) & (equity.index < end)]
    if inside.empty:
        return None
    first = before.iloc[-1] if not before.empty else inside.iloc[0]
    return float(inside.iloc[-1] / first - 1.0)


def fold_summary(
    predictions: pd.DataFrame, folds: list[Fold], strategy_equity: pd.Series
) -> list[dict[str, Any]]:
    """Per fold: windows, number of predictions, 5-class accuracy, strategy return."""
    rows = []
    for fold in folds:
        part = predictions[predictions["fold"] == fold.key]
        correct = prediction_correct(part)
        rows.append(
            {
                "fold": fold.key,
                "train_start": fold.train_start.isoformat(),
                "train_end": fold.test_start.isoformat(),
                "test_start": fold.test_start.isoformat(),
                "test_end": fold.test_end.isoformat(),
                "n_predictions": len(part),
                "accuracy": float(correct.mean()) if len(correct) else None,
                "strategy_return": _window_return(strategy_equity, fold.test_start, fold.test_end),
            }
        )
    return rows


def _equity_frame(results: dict[str, BacktestResult]) -> pd.DataFrame:
    frame = pd.concat({name: r.equity for name, r in results.items()}, axis=1).sort_index()
    frame = frame.ffill()  # forward only: a curve holds its last mark until its next bar
    frame.index.name = "timestamp"
    return frame.reset_index()


def evaluate_walk_forward(
    *,
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    features: pd.DataFrame,
    predictions: pd.DataFrame,
    folds: list[Fold],
    settings: PipelineSettings,
    timeframe: str,
) -> Evaluation:
    """Backtest the out-of-sample predictions and the baselines over the folds' test span."""
    if predictions.empty:
        raise ValueError("no out-of-sample predictions to evaluate")
    span_start = min(f.test_start for f in folds)
    span_end = max(f.test_end for f in folds)
    in_span = (candles["timestamp"] >= span_start) & (candles["timestamp"] < span_end)
    oos_candles = candles.loc[in_span].reset_index(drop=True)
    oos_funding = funding[
        (funding["timestamp"] >= span_start) & (funding["timestamp"] < span_end)
    ].reset_index(drop=True)
    feat_span = features[
        (features["timestamp"] >= span_start) & (features["timestamp"] < span_end)
    ].reset_index(drop=True)
    interval = settings.data.funding_interval_hours
    common = {
        "costs": settings.costs,
        "risk": settings.risk,
        "min_hold_bars": settings.min_hold_bars,
        "timeframe": timeframe,
        "funding_interval_hours": interval,
    }
    columns = {
        "vol_col": f"rv_{settings.risk.volatility_window}",
        "atr_col": f"atr_pct_{settings.risk.atr_period}",
    }
    log.info("backtesting %d OOS predictions over [%s, %s)", len(predictions), span_start, span_end)
    decisions = decisions_from_predictions(predictions, features, timeframe=timeframe, **columns)
    strategy = simulate(oos_candles, oos_funding, decisions, **common)
    rules = simulate(
        oos_candles,
        oos_funding,
        rule_decisions(feat_span, settings.rules, timeframe=timeframe, **columns),
        **common,
    )
    hold = buy_and_hold(
        oos_candles,
        oos_funding,
        costs=settings.costs,
        timeframe=timeframe,
        funding_interval_hours=interval,
    )

    strategy_kpis = compute_kpis(strategy, predictions)
    baselines = {"buy_and_hold": compute_kpis(hold), "rule_based": compute_kpis(rules)}
    ordered = predictions.sort_values(["timestamp", "symbol"], kind="stable")
    acc_recent, acc_prior = accuracy_windows(
        prediction_correct(ordered).to_numpy(dtype=float),
        recent=settings.retrain.recent_window,
        prior=settings.retrain.prior_window,
    )
    return Evaluation(
        equity=_equity_frame({"strategy": strategy, "buy_and_hold": hold, "rule_based": rules}),
        trades=strategy.trades,
        strategy=strategy_kpis,
        baselines=baselines,
        targets=kpis_vs_targets(strategy_kpis, settings.targets),
        folds=fold_summary(predictions, folds, strategy.equity),
        acc_recent=acc_recent,
        acc_prior=acc_prior,
    )


def beats(strategy: dict[str, Any], baseline: dict[str, Any], key: str = "sharpe") -> bool | None:
    """Whether the strategy's ``key`` beats the baseline's (None when either is undefined)."""
    a, b = strategy.get(key), baseline.get(key)
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b):
        return None
    return bool(a > b)
