"""One configuration, walk-forward, end to end on the domain functions the pipeline uses:
targets, purged folds (with optional training history before the window), LightGBM pooled over
the universe, predictions for the traded symbols, the pipeline's decisions and simulator (costs
always on), forecast statistics and the break-even fee. Used by ``benchmarks/config_selection.py``
and by the tests that prove the default configuration learns a planted signal."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cryptoml_pipeline.evaluation import simulation_options
from cryptoml_pipeline.modeling.folds import walk_forward_plan
from cryptoml_pipeline.modeling.gbm import predict_gbm_fold, train_gbm_fold
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.trading.backtest import simulate
from cryptoml_pipeline.trading.break_even import break_even_taker_fee
from cryptoml_pipeline.trading.engine import decisions_from_predictions
from cryptoml_pipeline.trading.forecast_section import forecast_stats, scored_predictions
from cryptoml_pipeline.trading.metrics import compute_kpis


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
    )
    parts = []
    for fold in folds:
        model = train_gbm_fold(features, labels, fold, settings, tf)
        parts.append(predict_gbm_fold(model, features, labels, fold, settings, tf, traded=traded))
    preds = pd.concat(parts, ignore_index=True)
    lo, hi = folds[0].test_start, folds[-1].test_end

    def inside(frame: pd.DataFrame) -> pd.DataFrame:
        ts = frame["timestamp"]
        return frame[(ts >= lo) & (ts < hi)]

    is_traded = candles["symbol"].astype(str).isin(traded)
    span_candles, span_funding = inside(candles[is_traded]), inside(funding)
    common, columns, returns_by_class, kpi_opts = simulation_options(settings, tf)
    decisions = decisions_from_predictions(
        preds,
        features[features["symbol"].astype(str).isin(traded)],
        timeframe=tf,
        returns_by_class=returns_by_class,
        **columns,
    )
    result = simulate(span_candles, span_funding, decisions, **common)
    kpis = compute_kpis(result, preds, **(kpi_opts | {"bootstrap_samples": 0}))
    forecast = forecast_stats(
        scored_predictions(preds, labels),
        horizon=settings.target.horizon,
        timeframe=tf,
        with_folds=False,
    )
    be = break_even_taker_fee(
        span_candles,
        span_funding,
        decisions,
        result,
        costs=settings.costs,
        slippage=settings.slippage,
        timeframe=tf,
        funding_interval_hours=settings.data.funding_interval_hours,
    )
    return {
        "folds": len(folds),
        "span": [lo.isoformat(), hi.isoformat()],
        "rank_ic": forecast["rank_ic"],
        "rank_ic_t": forecast["rank_ic_t"],
        "ic": forecast["ic"],
        "ic_t": forecast["ic_t"],
        "hit_rate": forecast["hit_rate"],
        "net_sharpe": kpis["sharpe"],
        "total_return": kpis["total_return"],
        "n_trades": kpis["n_trades"],
        "turnover": kpis["turnover"],
        "break_even_taker_fee": be.get("break_even_taker_fee"),
    }
