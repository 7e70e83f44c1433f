"""Every model on the same walk-forward folds: classification metrics per fold, the strategy each
model's signals make through the same engine and simulator (costs always on), and the ensemble's
lift over its best base model on the rows both predicted.

The deflated Sharpe ratio of every model counts every configuration tried: the models compared
times their tuning trials (``n_trials`` in each model card).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.evaluation import simulation_options
from cryptoml_pipeline.modeling.folds import Fold
from cryptoml_pipeline.modeling.zoo import classification_metrics
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.trading.backtest import simulate
from cryptoml_pipeline.trading.engine import decisions_from_predictions
from cryptoml_pipeline.trading.metrics import compute_kpis

log = logging.getLogger(__name__)

STRATEGY_KEYS = (
    "total_return",
    "sharpe",
    "max_drawdown",
    "win_rate",
    "n_trades",
    "avg_daily_return",
    "psr",
    "dsr",
)


def _in(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    ts = frame["timestamp"]
    return frame[(ts >= start) & (ts < end)]


def configurations_tried(cards: dict[str, list[dict[str, Any]]]) -> int:
    """Models compared x their tuning trials (at least 1 each)."""
    total = 0
    for model_cards in cards.values():
        trials = [int(c.get("n_trials") or 1) for c in model_cards if c.get("status") == "trained"]
        total += max(trials) if trials else 1
    return max(total, 1)


def strategy_kpis(
    predictions: pd.DataFrame,
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    features: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    settings: PipelineSettings,
    timeframe: str,
    n_trials: int,
) -> dict[str, Any]:
    common, columns, returns_by_class, kpi_opts = simulation_options(
        settings, timeframe, n_trials=n_trials
    )
    preds = _in(predictions, start, end)
    decisions = decisions_from_predictions(
        preds, features, timeframe=timeframe, returns_by_class=returns_by_class, **columns
    )
    result = simulate(_in(candles, start, end), _in(funding, start, end), decisions, **common)
    kpis = compute_kpis(result, preds, **(kpi_opts | {"bootstrap_samples": 0}))
    return {k: kpis.get(k) for k in STRATEGY_KEYS}


def compare_models(
    predictions: dict[str, pd.DataFrame],
    cards: dict[str, list[dict[str, Any]]],
    *,
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    features: pd.DataFrame,
    folds: list[Fold],
    settings: PipelineSettings,
    timeframe: str,
) -> dict[str, Any]:
    """Per model: metrics per fold, overall metrics, strategy KPIs over the folds it predicted;
    the ensemble's lift; the number of configurations tried."""
    n_trials = configurations_tried(cards)
    per_fold: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    for name, preds in predictions.items():
        if preds.empty:
            reasons = sorted({c.get("reason") for c in cards.get(name, []) if c.get("reason")})
            models[name] = {"available": False, "reasons": reasons}
            continue
        covered = []
        for fold in folds:
            part = _in(preds, fold.test_start, fold.test_end)
            if part.empty:
                continue
            covered.append(fold)
            per_fold.append({"model": name, "fold": fold.key, **classification_metrics(part)})
        start = min(f.test_start for f in covered)
        end = max(f.test_end for f in covered)
        log.info("model comparison: backtesting %s over [%s, %s)", name, start, end)
        models[name] = {
            "available": True,
            "folds": [f.key for f in covered],
            "span": [start.isoformat(), end.isoformat()],
            "metrics": classification_metrics(preds),
            "strategy": strategy_kpis(
                preds, candles, funding, features, start, end, settings, timeframe, n_trials
            ),
        }
    lift = ensemble_lift(
        predictions,
        settings.ensemble.base_models,
        candles=candles,
        funding=funding,
        features=features,
        settings=settings,
        timeframe=timeframe,
        n_trials=n_trials,
    )
    return {
        "configurations_tried": n_trials,
        "models": models,
        "per_fold": per_fold,
        "ensemble_lift": lift,
    }


def ensemble_lift(
    predictions: dict[str, pd.DataFrame],
    base_models: tuple[str, ...],
    *,
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    features: pd.DataFrame,
    settings: PipelineSettings,
    timeframe: str,
    n_trials: int,
) -> dict[str, Any]:
    """Ensemble minus its best base model, on exactly the rows (and span) the ensemble predicted."""
    ens = predictions.get("ensemble")
    if ens is None or ens.empty:
        return {"available": False, "reason": "the ensemble made no predictions"}
    keys = ens[["timestamp", "symbol"]]
    start, end = ens["timestamp"].min(), ens["timestamp"].max() + pd.Timedelta(timeframe)
    rows: dict[str, Any] = {}
    for name in ("ensemble", *base_models):
        preds = predictions.get(name)
        if preds is None or preds.empty:
            continue
        same = preds.merge(keys, on=["timestamp", "symbol"]) if name != "ensemble" else ens
        rows[name] = {
            **classification_metrics(same),
            "strategy": strategy_kpis(
                same, candles, funding, features, start, end, settings, timeframe, n_trials
            ),
        }
    bases = [b for b in base_models if b in rows and rows[b]["accuracy"] is not None]
    if not bases:
        return {"available": False, "reason": "no base model predicted the ensemble's rows"}
    best = max(bases, key=lambda b: rows[b]["accuracy"])
    e = rows["ensemble"]

    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else float(a - b)

    best_sharpe = max(
        (rows[b]["strategy"]["sharpe"] for b in bases if rows[b]["strategy"]["sharpe"] is not None),
        default=None,
    )
    return {
        "available": True,
        "span": [start.isoformat(), end.isoformat()],
        "best_base_by_accuracy": best,
        "accuracy_lift": diff(e["accuracy"], rows[best]["accuracy"]),
        "macro_f1_lift": diff(e["macro_f1"], rows[best]["macro_f1"]),
        "log_loss_change": diff(e["log_loss"], rows[best]["log_loss"]),
        "sharpe_lift_vs_best_base_sharpe": diff(e["strategy"]["sharpe"], best_sharpe),
        "rows": rows,
        "n": len(ens),
    }


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """A compact table for asset metadata."""
    lines = [
        "| model | folds | accuracy | macro-F1 | log-loss | net return | Sharpe | DSR |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def f(v: Any, pct: bool = False) -> str:
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "n/a"
        return f"{v:.2%}" if pct else f"{v:.3f}"

    for name, m in comparison["models"].items():
        if not m["available"]:
            lines.append(f"| {name} | - | unavailable: {'; '.join(m['reasons'])[:120]} |||||| ")
            continue
        met, st = m["metrics"], m["strategy"]
        lines.append(
            f"| {name} | {len(m['folds'])} | {f(met['accuracy'], True)} | {f(met['macro_f1'])} | "
            f"{f(met['log_loss'])} | {f(st['total_return'], True)} | {f(st['sharpe'])} | "
            f"{f(st['dsr'])} |"
        )
    return "\n".join(lines)
