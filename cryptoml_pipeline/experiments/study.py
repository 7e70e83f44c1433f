"""One configuration, walk-forward, end to end on the domain functions the pipeline uses:
targets, purged folds (with optional training history before the window), LightGBM pooled over
the universe, predictions for the traded symbols, the pipeline's decisions and simulator (costs
always on), forecast statistics and the break-even fee. Used by ``benchmarks/config_selection.py``
and by the tests that prove the default configuration learns a planted signal."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cryptoml_pipeline.evaluation.model_comparison import strategy_kpis
from cryptoml_pipeline.modeling.folds import walk_forward_plan
from cryptoml_pipeline.modeling.gbm import predict_gbm_fold, train_gbm_fold
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.settings import PipelineSettings


def study_configuration(
    settings: PipelineSettings,
    *,
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    features: pd.DataFrame,
    traded: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> dict[str, Any]:
    """Walk-forward statistics of one configuration (``candles``/``features``: the universe)."""
    tf = settings.data.timeframe
    labels = make_labels(candles, settings.target, settings.labels, timeframe=tf)
    folds = walk_forward_plan(
        start,
        end,
        settings.walk_forward,
        timeframe=tf,
        training_history_days=settings.data.training_history_days,
        train_from=candles["timestamp"].min() if len(candles) else None,
    )
    parts = []
    for fold in folds:
        model = train_gbm_fold(features, labels, fold, settings, tf)
        parts.append(predict_gbm_fold(model, features, labels, fold, settings, tf, traded=traded))
    preds = pd.concat(parts, ignore_index=True)
    lo, hi = folds[0].test_start, folds[-1].test_end
    traded_rows = lambda frame: frame[frame["symbol"].astype(str).isin(traded)]  # noqa: E731
    # the model comparison's own per-model evaluation: decisions, simulator, KPIs, forecast
    # statistics and break-even fee on the traded symbols
    stats = strategy_kpis(
        preds,
        traded_rows(candles),
        funding,
        traded_rows(features),
        lo,
        hi,
        settings,
        tf,
        settings.controls.n_trials,
        labels,
    )
    forecast = stats["forecast"]
    return {
        "folds": len(folds),
        "span": [lo.isoformat(), hi.isoformat()],
        "rank_ic": forecast["rank_ic"],
        "rank_ic_t": forecast["rank_ic_t"],
        "ic": forecast["ic"],
        "ic_t": forecast["ic_t"],
        "hit_rate": forecast["hit_rate"],
        "net_sharpe": stats["sharpe"],
        "total_return": stats["total_return"],
        "n_trades": stats["n_trades"],
        "turnover": stats["turnover"],
        "break_even_taker_fee": stats["break_even_taker_fee"],
    }
