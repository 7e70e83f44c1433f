"""Backtest KPIs (spec "Key Performance Indicators"), measured honestly, never tuned to.

Daily returns come from the equity curve resampled to UTC calendar days (last mark of each day;
a day without any bar keeps the previous day's equity), the first day measured against the initial
equity. Sharpe = mean / std (ddof=1) * sqrt(365); Sortino = mean / downside deviation * sqrt(365)
with downside deviation = sqrt(mean(min(r, 0)^2)) over all days. Both are None with fewer than two
days or a zero denominator. Max drawdown is a positive fraction measured on the bar-level curve
with the initial equity as the first peak.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.evaluation.statistics import (
    bootstrap_intervals,
    deflated_sharpe_from_trials,
)
from cryptoml_pipeline.execution.backtest import BacktestResult
from cryptoml_pipeline.settings import TargetsConfig

STABILITY_DAYS = 30

DAYS_PER_YEAR = 365

KPI_KEYS: tuple[str, ...] = (
    "total_return",
    "avg_daily_return",
    "sharpe",
    "sortino",
    "max_drawdown",
    "win_rate",
    "n_trades",
    "accuracy",
    "directional_accuracy",
    "fees_paid",
    "funding_paid",
    "avg_exposure",
    "precision",
    "recall",
    "avg_return_per_trade",
    "calmar",
    "turnover",
    "turnover_annual",
    "time_in_market",
    "model_stability",
    "psr",
    "dsr",
    "dsr_trials",
    "dsr_trial_sharpe_var",
    "dsr_variance_source",
    "sharpe_ci",
    "avg_daily_return_ci",
)

TARGET_KPIS: tuple[str, ...] = (
    "accuracy",
    "sharpe",
    "max_drawdown",
    "win_rate",
    "avg_daily_return",
    "model_stability",
)


def daily_returns(equity: pd.Series, *, initial_equity: float | None = None) -> pd.Series:
    """Daily simple returns of ``equity`` on UTC calendar days, indexed by the day (00:00 UTC).

    The first day is measured against ``initial_equity`` (default: the curve's first value).
    """
    eq = equity.dropna()
    if eq.empty:
        return pd.Series(dtype=np.float64, name="daily_return")
    if not isinstance(eq.index, pd.DatetimeIndex) or eq.index.tz is None:
        raise InputError("equity must be indexed by tz-aware timestamps")
    eq = eq.tz_convert("UTC").sort_index()
    daily = eq.resample("1D").last().ffill()
    base = float(eq.iloc[0]) if initial_equity is None else float(initial_equity)
    previous = np.concatenate([[base], daily.to_numpy(np.float64)[:-1]])
    return pd.Series(
        daily.to_numpy(np.float64) / previous - 1.0, index=daily.index, name="daily_return"
    )


def sharpe_ratio(returns: np.ndarray) -> float | None:
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return None
    std = float(np.std(r, ddof=1))
    if not std > 0:
        return None
    return float(np.mean(r) / std * math.sqrt(DAYS_PER_YEAR))


def sortino_ratio(returns: np.ndarray) -> float | None:
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return None
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    if not downside > 0:
        return None
    return float(np.mean(r) / downside * math.sqrt(DAYS_PER_YEAR))


def max_drawdown(equity: pd.Series, initial_equity: float) -> float:
    """Largest peak-to-trough fall as a positive fraction of the peak (0.0 when none)."""
    path = np.concatenate([[initial_equity], equity.dropna().to_numpy(np.float64)])
    peak = np.maximum.accumulate(path)
    return float(np.max(1.0 - path / peak))


def _prediction_kpis(predictions: pd.DataFrame | None) -> tuple[float | None, float | None]:
    if predictions is None or predictions.empty:
        return None, None
    if "label" not in predictions.columns:
        raise InputError("predictions need a 'label' column for accuracy")
    label = predictions["label"].to_numpy(np.float64)
    signal = predictions["signal"].to_numpy(np.float64)
    pred_class = (
        predictions["pred_class"].to_numpy(np.float64)
        if "pred_class" in predictions.columns
        else signal + 2.0
    )
    finite = np.isfinite(label)
    accuracy = float(np.mean(pred_class[finite] == label[finite] + 2.0)) if finite.any() else None
    if "forward_return" in predictions.columns:
        target = np.sign(predictions["forward_return"].to_numpy(np.float64))
    else:
        target = np.sign(label)
    rows = (signal != 0) & finite & (label != 0) & np.isfinite(target)
    directional = float(np.mean(np.sign(signal[rows]) == target[rows])) if rows.any() else None
    return accuracy, directional


def precision_recall(predictions: pd.DataFrame | None) -> tuple[float | None, float | None]:
    """Macro precision and recall of the 5-class prediction over the classes it predicts/sees."""
    if predictions is None or predictions.empty or "label" not in predictions.columns:
        return None, None
    label = predictions["label"].to_numpy(np.float64)
    known = np.isfinite(label)
    if not known.any():
        return None, None
    truth = label[known].astype(np.int64) + 2
    if "pred_class" in predictions.columns:
        pred = predictions["pred_class"].to_numpy(np.int64)[known]
    else:
        pred = predictions["signal"].to_numpy(np.int64)[known] + 2
    precisions = [float(np.mean(truth[pred == k] == k)) for k in range(5) if (pred == k).any()]
    recalls = [float(np.mean(pred[truth == k] == k)) for k in range(5) if (truth == k).any()]
    return (
        float(np.mean(precisions)) if precisions else None,
        float(np.mean(recalls)) if recalls else None,
    )


def model_stability(predictions: pd.DataFrame | None, days: int = STABILITY_DAYS) -> float | None:
    """Relative accuracy degradation of the last ``days`` vs the ``days`` before them:
    ``(acc_prev - acc_last) / acc_prev`` (positive = worse; spec target < 10 %). None when the
    predictions do not span two full windows or have no labels.
    """
    if predictions is None or predictions.empty or "timestamp" not in predictions.columns:
        return None
    if "label" not in predictions.columns:
        return None
    ts = pd.to_datetime(predictions["timestamp"], utc=True)
    label = predictions["label"].to_numpy(np.float64)
    pred = (
        predictions["pred_class"].to_numpy(np.float64)
        if "pred_class" in predictions.columns
        else predictions["signal"].to_numpy(np.float64) + 2.0
    )
    end = ts.max()
    window = pd.Timedelta(days=days)
    if ts.min() > end - 2 * window:
        return None
    known = np.isfinite(label)
    last = ((ts > end - window) & known).to_numpy()
    prev = ((ts > end - 2 * window) & (ts <= end - window) & known).to_numpy()
    if not last.any() or not prev.any():
        return None
    acc_last = float(np.mean(pred[last] == label[last] + 2.0))
    acc_prev = float(np.mean(pred[prev] == label[prev] + 2.0))
    return (acc_prev - acc_last) / acc_prev if acc_prev > 0 else None


def calmar_ratio(daily: np.ndarray, drawdown: float) -> float | None:
    """Annualised compound return / max drawdown (None without days or drawdown)."""
    if len(daily) == 0 or not drawdown > 0:
        return None
    growth = float(np.prod(1.0 + np.asarray(daily, dtype=np.float64)))
    if growth <= 0:
        return -1.0 / drawdown
    return (growth ** (DAYS_PER_YEAR / len(daily)) - 1.0) / drawdown


def compute_kpis(
    result: BacktestResult,
    predictions: pd.DataFrame | None = None,
    *,
    n_trials: int = 1,
    bootstrap_samples: int = 1000,
    bootstrap_block_days: int = 5,
    seed: int = 0,
    trial_sharpes: Sequence[float] | None = None,
) -> dict[str, Any]:
    """KPIs of one backtest (keys :data:`KPI_KEYS`); prediction KPIs None without predictions.

    ``trial_sharpes``: the ANNUALISED Sharpes (as this function's ``sharpe``) of the
    configurations tried, this one included; they set the deflated Sharpe's trial variance
    (``dsr_trial_sharpe_var`` is reported per day^2, the units of the daily Sharpe). ``n_trials``
    counts all configurations tried (also those whose Sharpe is unknown).
    """
    initial = float(result.initial_equity)
    equity = result.equity.dropna()
    final = float(equity.iloc[-1]) if len(equity) else initial
    daily = daily_returns(equity, initial_equity=initial).to_numpy(np.float64)
    trades = result.trades
    accuracy, directional = _prediction_kpis(predictions)
    precision, recall = precision_recall(predictions)
    drawdown = max_drawdown(equity, initial)
    n_days = max(len(daily), 1)
    traded = result.traded_notional
    if traded is None and len(trades) and {"quantity", "entry_price"} <= set(trades.columns):
        traded = float((trades["quantity"] * (trades["entry_price"] + trades["exit_price"])).sum())
    turnover = (traded or 0.0) / initial
    n_bars = len(result.equity)
    cis = bootstrap_intervals(
        daily, samples=bootstrap_samples, block=bootstrap_block_days, seed=seed
    )
    per_trade = None
    if len(trades) and "notional" in trades.columns:
        per_trade = float(np.mean(trades["pnl"].to_numpy() / trades["notional"].to_numpy()))
    return {
        "total_return": final / initial - 1.0,
        "avg_daily_return": float(np.mean(daily)) if len(daily) else None,
        "sharpe": sharpe_ratio(daily),
        "sortino": sortino_ratio(daily),
        "max_drawdown": drawdown,
        "win_rate": float(np.mean(trades["pnl"].to_numpy() > 0)) if len(trades) else None,
        "n_trades": len(trades),
        "accuracy": accuracy,
        "directional_accuracy": directional,
        "fees_paid": float(result.fees_paid) / initial,
        "funding_paid": float(result.funding_paid) / initial,
        "avg_exposure": _mean_exposure(result),
        "precision": precision,
        "recall": recall,
        "avg_return_per_trade": per_trade,
        "calmar": calmar_ratio(daily, drawdown),
        "turnover": turnover,
        "turnover_annual": turnover * DAYS_PER_YEAR / n_days,
        "time_in_market": (
            result.bars_in_market / n_bars if result.bars_in_market is not None and n_bars else None
        ),
        "model_stability": model_stability(predictions),
        **deflated_sharpe_from_trials(
            daily,
            None
            if trial_sharpes is None
            else [s / math.sqrt(DAYS_PER_YEAR) for s in trial_sharpes if s is not None],
            n_trials,
        ),
        "sharpe_ci": cis["sharpe"],
        "avg_daily_return_ci": cis["avg_daily_return"],
    }


def _mean_exposure(result: BacktestResult) -> float | None:
    """Mean gross notional / equity over the bars (None when the backtest did not record it)."""
    if result.exposure is None or len(result.exposure) == 0:
        return None
    values = np.asarray(result.exposure, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def accuracy_windows(
    correct: np.ndarray, recent: int = 50, prior: int = 150
) -> tuple[float | None, float | None]:
    """Spec ``should_retrain`` windows: (mean of the last ``recent`` outcomes, mean of the ``prior``
    outcomes just before them). Non-finite entries (unlabelled rows) are dropped first; a window
    without enough outcomes gives None.
    """
    values = np.asarray(correct, dtype=np.float64)
    values = values[np.isfinite(values)]
    n = len(values)
    recent_mean = float(np.mean(values[n - recent :])) if recent > 0 and n >= recent else None
    prior_ok = prior > 0 and n >= recent + prior
    prior_mean = float(np.mean(values[n - recent - prior : n - recent])) if prior_ok else None
    return recent_mean, prior_mean


def kpis_vs_targets(
    kpis: dict[str, float | int | None], targets: TargetsConfig
) -> dict[str, dict[str, float | bool | None]]:
    """For each targeted KPI: ``{min, max, value, met}`` (``met`` None when the value is None)."""
    out: dict[str, dict[str, float | bool | None]] = {}
    for name in TARGET_KPIS:
        target = getattr(targets, name)
        value = kpis.get(name)
        met: bool | None = None
        if value is not None:
            met = (target.min is None or value >= target.min) and (
                target.max is None or value <= target.max
            )
        out[name] = {"min": target.min, "max": target.max, "value": value, "met": met}
    return out
