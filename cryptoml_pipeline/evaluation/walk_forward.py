"""Out-of-sample evaluation: the strategy and its baselines on the same span, costs always on.

Pure domain code (no Dagster): the ``backtest`` asset calls :func:`evaluate_walk_forward`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.evaluation.baselines import buy_and_hold
from cryptoml_pipeline.evaluation.break_even import break_even_taker_fee, fee_sensitivity
from cryptoml_pipeline.evaluation.controls import (
    cost_summary,
    random_same_turnover,
    shuffled_label_verdict,
)
from cryptoml_pipeline.evaluation.forecast import sharpe_by_year
from cryptoml_pipeline.evaluation.forecast_section import (
    beta_section,
    forecast_stats,
    period_bounds,
    periods_section,
    scored_predictions,
)
from cryptoml_pipeline.evaluation.metrics import accuracy_windows, compute_kpis, kpis_vs_targets
from cryptoml_pipeline.evaluation.shuffled_control import (
    quantile_mapped_predictions,
    shuffled_power,
)
from cryptoml_pipeline.evaluation.tables import calibration_table, monthly_returns, trade_list
from cryptoml_pipeline.execution.backtest import BacktestResult, simulate
from cryptoml_pipeline.execution.replay import replay_gross
from cryptoml_pipeline.modeling.folds import Fold
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.strategy.from_predictions import decisions_from_predictions
from cryptoml_pipeline.strategy.integrator import integrated_decisions
from cryptoml_pipeline.strategy.options import simulation_options
from cryptoml_pipeline.strategy.rules import rule_decisions, rule_signals
from cryptoml_pipeline.timing import bars_per_day

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
    exposure: pd.DataFrame | None = None  # timestamp + strategy gross exposure
    costs: dict[str, Any] | None = None  # gross vs net, fee drag, turnover
    controls: dict[str, Any] | None = None  # random same-turnover MC, shuffled-label verdict
    calibration: list[dict[str, Any]] | None = None  # confidence bins vs realised hit rate
    monthly: list[dict[str, Any]] | None = None  # strategy return per calendar month
    forecast: dict[str, Any] | None = None  # IC / rank IC / NW t / hit rate, beta, by year
    periods: list[dict[str, Any]] | None = None  # development / held_back split
    # the same decisions re-priced at taker_fee x each of costs.fee_multiples
    fee_sensitivity: list[dict[str, Any]] | None = None

    def to_bundle(self) -> dict[str, Any]:
        return {
            "exposure": self.exposure,
            "costs": self.costs,
            "controls": self.controls,
            "calibration": self.calibration,
            "monthly": self.monthly,
            "forecast": self.forecast,
            "periods": self.periods,
            "fee_sensitivity": self.fee_sensitivity,
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


def _span(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    inside = (frame["timestamp"] >= start) & (frame["timestamp"] < end)
    return frame.loc[inside].reset_index(drop=True)


def evaluate_walk_forward(
    *,
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    features: pd.DataFrame,
    predictions: pd.DataFrame,
    folds: list[Fold],
    settings: PipelineSettings,
    timeframe: str,
    control_predictions: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
    holdout_start: pd.Timestamp | None = None,
) -> Evaluation:
    """Backtest the out-of-sample predictions, the baselines and the controls over the folds'
    test span (costs always on), and score the forecasts against ``labels.realised_return``.

    ``candles``/``features`` may hold the whole universe: the strategy, its baselines and
    controls trade the predictions' symbols only; the market beta uses the universe."""
    if predictions.empty:
        raise ValueError("no out-of-sample predictions to evaluate")
    universe_candles = candles
    traded = set(predictions["symbol"].astype(str).unique())
    candles = candles[candles["symbol"].astype(str).isin(traded)].reset_index(drop=True)
    features = features[features["symbol"].astype(str).isin(traded)].reset_index(drop=True)
    funding = funding[funding["symbol"].astype(str).isin(traded)].reset_index(drop=True)
    span_start = min(f.test_start for f in folds)
    span_end = max(f.test_end for f in folds)
    oos_candles = _span(candles, span_start, span_end)
    oos_funding = _span(funding, span_start, span_end)
    feat_span = _span(features, span_start, span_end)
    interval = settings.data.funding_interval_hours
    common, columns, returns_by_class, kpi_opts = simulation_options(settings, timeframe)
    ctl = settings.controls
    log.info("backtesting %d OOS predictions over [%s, %s)", len(predictions), span_start, span_end)
    decisions = decisions_from_predictions(
        predictions, features, timeframe=timeframe, returns_by_class=returns_by_class, **columns
    )
    strategy = simulate(oos_candles, oos_funding, decisions, **common)
    # the net run's own fills without fees, slippage or funding: gross and net of the same trades
    gross = replay_gross(oos_candles, strategy, timeframe=timeframe)
    rules = simulate(
        oos_candles,
        oos_funding,
        rule_decisions(feat_span, settings.rules, timeframe=timeframe, **columns),
        **common,
    )
    rule_sig = feat_span[["timestamp", "symbol"]].copy()
    rule_sig["rule_signal"] = rule_signals(feat_span, settings.rules).to_numpy()
    combined = simulate(
        oos_candles,
        oos_funding,
        integrated_decisions(decisions, rule_sig, settings.integrator),
        **common,
    )
    hold = buy_and_hold(
        oos_candles,
        oos_funding,
        costs=settings.costs,
        timeframe=timeframe,
        funding_interval_hours=interval,
    )

    strategy_kpis = compute_kpis(strategy, predictions, **kpi_opts)
    baselines = {
        "buy_and_hold": compute_kpis(hold, **kpi_opts),
        "rule_based": compute_kpis(rules, **kpi_opts),
        "ml_rule_combined": compute_kpis(combined, predictions, **kpi_opts),
    }
    controls: dict[str, Any] = {}
    if ctl.random_paths > 0:
        mc = random_same_turnover(
            oos_candles,
            oos_funding,
            strategy,
            strategy_sharpe=strategy_kpis["sharpe"],
            costs=settings.costs,
            timeframe=timeframe,
            funding_interval_hours=interval,
            slippage=settings.slippage,
            decisions=decisions,
            n_paths=ctl.random_paths,
            seed=ctl.seed,
            periods=period_bounds(span_start, span_end, holdout_start),
        )
        controls["random_same_turnover"] = mc.to_dict()
    shuffled_kpis, power = None, {}
    verdict_opts = {
        "horizon": settings.target.horizon,
        "bars_per_day": max(round(bars_per_day(timeframe)), 1),
        "n_boot": 1000,
        "block_days": 5,
        "seed": ctl.seed,
    }
    shuffled_verdict = shuffled_label_verdict(None, **verdict_opts)
    if control_predictions is not None and not control_predictions.empty:
        # over the control's own span (it may cover only some folds)
        control_start = control_predictions["timestamp"].min()
        control_candles = _span(oos_candles, control_start, span_end)
        control_funding = _span(oos_funding, control_start, span_end)

        def run_control(frame: pd.DataFrame) -> BacktestResult:
            dec = decisions_from_predictions(
                frame, features, timeframe=timeframe, returns_by_class=returns_by_class, **columns
            )
            return simulate(control_candles, control_funding, dec, **common)

        shuffled = run_control(control_predictions)
        mapped = False
        real_trades = len(strategy.trades)
        if len(shuffled.trades) < max(5, 0.25 * real_trades) and real_trades > 0:
            # the rule leaves the control near-flat: give it the real model's forecast
            # distribution (ranks kept) so that the decision rule really trades it
            control_predictions = quantile_mapped_predictions(control_predictions, predictions)
            shuffled, mapped = run_control(control_predictions), True
        shuffled_kpis = compute_kpis(shuffled, control_predictions, **kpi_opts)
        baselines["shuffled_labels"] = shuffled_kpis
        shuffled_verdict = shuffled_label_verdict(
            control_predictions, labels, psr=shuffled_kpis.get("psr"), **verdict_opts
        )
        if labels is not None:
            power = shuffled_power(
                control_predictions,
                predictions,
                labels,
                n_trades=len(shuffled.trades),
                quantile_mapped=mapped,
                model=settings.strategy.model,
                seed=ctl.seed,
                control_ic=(
                    {k: shuffled_verdict[k] for k in ("rank_ic", "rank_ic_ci", "n_days")}
                    if shuffled_verdict.get("rank_ic_ci") is not None
                    else None
                ),
            )
    controls["shuffled_labels"] = shuffled_verdict | power
    ordered = predictions.sort_values(["timestamp", "symbol"], kind="stable")
    acc_recent, acc_prior = accuracy_windows(
        prediction_correct(ordered).to_numpy(dtype=float),
        recent=settings.retrain.recent_window,
        prior=settings.retrain.prior_window,
    )
    exposure = strategy.exposure.rename("strategy").rename_axis("timestamp").reset_index()
    forecast, periods = None, None
    mc_summary = mc if ctl.random_paths > 0 else None
    if labels is not None:
        forecast, periods = _forecast_sections(
            break_even=break_even_taker_fee(
                oos_candles,
                oos_funding,
                decisions,
                strategy,
                costs=settings.costs,
                slippage=settings.slippage,
                timeframe=timeframe,
                funding_interval_hours=interval,
            ),
            turnover=strategy_kpis.get("turnover"),
            random_paths=mc_summary,
            predictions=predictions,
            labels=labels,
            strategy=strategy,
            hold=hold,
            universe_candles=_span(universe_candles, span_start, span_end),
            span=(span_start, span_end),
            holdout_start=holdout_start,
            settings=settings,
            timeframe=timeframe,
        )
    fees = fee_sensitivity(
        oos_candles,
        oos_funding,
        decisions,
        strategy,
        costs=settings.costs,
        slippage=settings.slippage,
        timeframe=timeframe,
        periods=period_bounds(span_start, span_end, holdout_start),
        funding_interval_hours=interval,
    )
    for period in periods or []:
        period["fee_sensitivity"] = fees["periods"].get(period["name"], [])
    return Evaluation(
        equity=_equity_frame(
            {
                "strategy": strategy,
                "strategy_gross": gross,
                "buy_and_hold": hold,
                "rule_based": rules,
                "ml_rule_combined": combined,
            }
        ),
        trades=trade_list(strategy.trades),
        strategy=strategy_kpis,
        baselines=baselines,
        targets=kpis_vs_targets(strategy_kpis, settings.targets),
        folds=fold_summary(predictions, folds, strategy.equity),
        acc_recent=acc_recent,
        acc_prior=acc_prior,
        exposure=exposure,
        costs=cost_summary(strategy, gross),
        controls=controls,
        calibration=calibration_table(predictions),
        monthly=monthly_returns(strategy.equity, strategy.initial_equity),
        forecast=forecast,
        periods=periods,
        fee_sensitivity=fees["overall"],
    )


def _forecast_sections(
    *,
    break_even: dict[str, Any],
    turnover: float | None,
    random_paths: Any,
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    strategy: BacktestResult,
    hold: BacktestResult,
    universe_candles: pd.DataFrame,
    span: tuple[pd.Timestamp, pd.Timestamp],
    holdout_start: pd.Timestamp | None,
    settings: PipelineSettings,
    timeframe: str,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The forecast-first section (overall, per fold, Sharpe by year, beta) and the periods."""
    horizon = settings.target.horizon
    scored = scored_predictions(predictions, labels)
    forecast = forecast_stats(scored, horizon=horizon, timeframe=timeframe)
    forecast["target"] = settings.target.model_dump(mode="json")
    forecast["scored_against"] = "realised_return = open[t+1+h] / open[t+1] - 1 (before costs)"
    forecast["strategy_sharpe_by_year"] = sharpe_by_year(strategy.equity)
    forecast["beta"] = beta_section(strategy.equity, universe_candles)
    forecast["break_even_taker_fee"] = break_even.get("break_even_taker_fee")
    forecast["break_even"] = break_even
    forecast["turnover"] = turnover
    periods = periods_section(
        scored=scored,
        equity={"strategy": strategy.equity, "buy_and_hold": hold.equity},
        start=span[0],
        end=span[1],
        holdout_start=holdout_start,
        horizon=horizon,
        timeframe=timeframe,
        initial_equity={
            "strategy": strategy.initial_equity,
            "buy_and_hold": hold.initial_equity,
        },
        trades=strategy.trades,
        universe_candles=universe_candles,
    )
    for period in periods:
        period["random_same_turnover"] = (
            random_paths.period_summary(period["name"], period["strategy"]["sharpe"])
            if random_paths is not None
            else None
        )
    return forecast, periods


def beats(strategy: dict[str, Any], baseline: dict[str, Any], key: str = "sharpe") -> bool | None:
    """Whether the strategy's ``key`` beats the baseline's (None when either is undefined)."""
    a, b = strategy.get(key), baseline.get(key)
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b):
        return None
    return bool(a > b)
