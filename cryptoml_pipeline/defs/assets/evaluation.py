"""Out-of-sample predictions, the cost-aware backtest with baselines, and the report."""

from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from cryptoml_pipeline.defs.assets.importance import FEATURE_IMPORTANCE_KEY, feature_plan_metadata
from cryptoml_pipeline.defs.assets.modeling import plan_folds
from cryptoml_pipeline.defs.io_manager import ALLOW_MISSING_PARTITIONS
from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.evaluation.model_comparison import headline_deflation
from cryptoml_pipeline.evaluation.walk_forward import Evaluation, evaluate_walk_forward
from cryptoml_pipeline.modeling.models import ZOO
from cryptoml_pipeline.modeling.predictions import validate_predictions
from cryptoml_pipeline.monitoring.retrain_policy import should_retrain
from cryptoml_pipeline.registry.artifact_store import importance_tables
from cryptoml_pipeline.reporting.features_section import features_section
from cryptoml_pipeline.reporting.report import build_report, write_report
from cryptoml_pipeline.reporting.ui_metadata import (
    UiTables,
    backtest_tables,
    model_markdown,
    report_tables,
)
from cryptoml_pipeline.settings import PipelineSettings, RetrainConfig
from cryptoml_pipeline.timing import to_utc

GROUP = "evaluation"
# backtest metadata the degradation sensor reads: fixed keys, whatever the run's retrain windows
DEGRADED_KEY, ACC_RECENT_KEY, ACC_PRIOR_KEY = "degraded", "acc_recent", "acc_prior"
RETRAIN_POLICY_KEY = "retrain_policy"


def outside_test_windows(predictions: pd.DataFrame, plan: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows whose timestamp is not inside their own fold's test window (must be empty)."""
    bounds = pd.DataFrame(
        [(f.key, f.test_start, f.test_end) for f in plan_folds(plan)],
        columns=["fold", "test_start", "test_end"],
    )
    merged = predictions.merge(bounds, on="fold", how="left")
    bad = ~(
        (merged["timestamp"] >= merged["test_start"]) & (merged["timestamp"] < merged["test_end"])
    )
    return merged.loc[bad, ["timestamp", "symbol", "fold"]]


@dg.asset(group_name=GROUP)
def oos_predictions(
    context: dg.AssetExecutionContext,
    fold_predictions: dict[str, pd.DataFrame],
    gbm_predictions: dict[str, pd.DataFrame],
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    run_settings: PipelineSettings,
) -> pd.DataFrame:
    """The strategy model's (``strategy.model``) test-window predictions of every fold, in time
    order (out-of-sample only), in the one prediction schema."""
    model = run_settings.strategy.model
    name = ZOO[model].asset_name  # the strategy model's prediction asset
    source = {"gbm_predictions": gbm_predictions, "fold_predictions": fold_predictions}[name]
    order = [f["key"] for f in fold_plan]
    missing = [k for k in order if k not in source or source[k].empty]
    if missing:
        raise dg.Failure(f"{name} missing for folds {missing}; materialize {name}")
    preds = validate_predictions(
        pd.concat([source[k] for k in order], ignore_index=True), what=name
    )
    symbols = sorted(preds["symbol"].unique())
    if symbols != sorted(dataset_info["symbols"]):
        raise dg.Failure(
            f"fold predictions are for {symbols}, this run is for {sorted(dataset_info['symbols'])}"
            ": re-materialize the fold partitions"
        )
    bad = outside_test_windows(preds, fold_plan)
    if not bad.empty:
        row = bad.iloc[0]
        raise dg.Failure(
            f"{len(bad)} predictions lie outside their fold's test window, e.g. {row['symbol']} "
            f"{row['timestamp']} in fold {row['fold']}"
        )
    preds = preds.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)
    context.add_output_metadata({"rows": len(preds), "folds": len(order), "model": model})
    return preds


@dg.asset_check(
    asset=oos_predictions,
    blocking=True,
    description="Each prediction is OOS",
    additional_ins={"fold_plan": dg.AssetIn("fold_plan")},
)
def predictions_inside_test_windows(
    oos_predictions: pd.DataFrame, fold_plan: list[dict[str, Any]]
) -> dg.AssetCheckResult:
    bad = outside_test_windows(oos_predictions, fold_plan)
    return dg.AssetCheckResult(passed=bad.empty, metadata={"rows_outside": len(bad)})


def table_metadata(rows: list[dict[str, Any]]) -> dg.TableMetadataValue:
    """Scalar row dicts (``reporting.ui_metadata``) as a Dagster table; column types from the
    values (numbers, booleans, else strings)."""
    columns = list(dict.fromkeys(c for row in rows for c in row))

    def kind(col: str) -> str:
        values = [r.get(col) for r in rows if r.get(col) is not None]
        if values and all(isinstance(v, bool) for v in values):
            return "bool"
        if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return "float"
        return "string"

    schema = dg.TableSchema(columns=[dg.TableColumn(c, kind(c)) for c in columns])
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: row.get(c) for c in columns}) for row in rows], schema=schema
    )


def ui_metadata(tables: UiTables) -> dict[str, dg.MetadataValue]:
    """Equity curve, KPI table and per-fold table (markdown and table) for the Dagster UI."""
    return {
        "equity_curve": dg.MetadataValue.md(tables.equity_markdown),
        "kpi_table": dg.MetadataValue.md(tables.kpi_markdown),
        "fold_table": dg.MetadataValue.md(tables.fold_markdown),
        "folds": table_metadata(tables.fold_rows),
    }


def retrain_metadata(
    acc_recent: float | None, acc_prior: float | None, retrain: RetrainConfig
) -> dict[str, Any]:
    """The backtest's accuracy windows and degradation verdict under the run's ``retrain``
    settings. ``degradation_sensor`` reads the fixed keys (``degraded``, ``acc_recent``,
    ``acc_prior``), never keys built from default windows; ``acc_recent_<n>`` /
    ``acc_prior_<n>`` name the windows for the UI."""
    return {
        f"acc_recent_{retrain.recent_window}": acc_recent,
        f"acc_prior_{retrain.prior_window}": acc_prior,
        DEGRADED_KEY: should_retrain(acc_recent, acc_prior, retrain.degradation),
        ACC_RECENT_KEY: acc_recent,
        ACC_PRIOR_KEY: acc_prior,
        RETRAIN_POLICY_KEY: dg.MetadataValue.json(
            {
                "recent_window": retrain.recent_window,
                "prior_window": retrain.prior_window,
                "degradation": retrain.degradation,
            }
        ),
    }


def _evaluation_from_bundle(bundle: dict[str, Any]) -> Evaluation:
    return Evaluation(**{k: bundle[k] for k in Evaluation.__dataclass_fields__})


@dg.asset(group_name=GROUP)
def backtest(
    context: dg.AssetExecutionContext,
    oos_predictions: pd.DataFrame,
    ohlcv: pd.DataFrame,
    funding: pd.DataFrame,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    run_settings: PipelineSettings,
    pipeline: PipelineResource,
    shuffled_label_predictions: dict[str, pd.DataFrame],
) -> dict[str, Any]:
    """Strategy vs buy-and-hold vs rule strategy vs controls on the out-of-sample span; costs
    always on. The metadata's ``degraded`` (recent vs prior accuracy under the run's
    ``retrain`` settings) is what ``degradation_sensor`` reads."""
    settings = run_settings
    order = [f["key"] for f in fold_plan]
    control_parts = [
        shuffled_label_predictions[k]
        for k in order
        if k in shuffled_label_predictions and len(shuffled_label_predictions[k])
    ]
    control = pd.concat(control_parts, ignore_index=True) if control_parts else None
    if control is not None and control.empty:
        control = None
    ev = evaluate_walk_forward(
        control_predictions=control,
        labels=label_table,
        holdout_start=to_utc(pipeline.holdout_start) if pipeline.holdout_start else None,
        candles=ohlcv,
        funding=funding,
        features=feature_table,
        predictions=oos_predictions,
        folds=plan_folds(fold_plan),
        settings=settings,
        timeframe=dataset_info["timeframe"],
    )
    context.add_output_metadata(
        {
            **retrain_metadata(ev.acc_recent, ev.acc_prior, settings.retrain),
            "sharpe": ev.strategy["sharpe"],
            "total_return": ev.strategy["total_return"],
            "max_drawdown": ev.strategy["max_drawdown"],
            "n_trades": ev.strategy["n_trades"],
            "buy_and_hold_sharpe": ev.baselines["buy_and_hold"]["sharpe"],
            "rule_based_sharpe": ev.baselines["rule_based"]["sharpe"],
            "gross_total_return": (ev.costs or {}).get("gross_total_return"),
            "cost_drag": (ev.costs or {}).get("cost_drag"),
            "shuffled_label_leak": str((ev.controls or {}).get("shuffled_labels", {}).get("leak")),
            **ui_metadata(backtest_tables(ev.to_bundle())),
        }
    )
    return ev.to_bundle()


@dg.asset(
    group_name=GROUP,
    # every fold's importance through the IO manager; a partition it cannot load arrives as its
    # exception, so that it degrades to a stated reason in the report instead of failing the load
    ins={
        "feature_importance": dg.AssetIn(
            FEATURE_IMPORTANCE_KEY, metadata={ALLOW_MISSING_PARTITIONS: True}
        )
    },
)
def backtest_report(
    context: dg.AssetExecutionContext,
    backtest: dict[str, Any],
    feature_importance: dict[str, Any],
    deployed_model: dict[str, Any],
    dataset_info: dict,
    fold_plan: list[dict[str, Any]],
    run_settings: PipelineSettings,
    pipeline: PipelineResource,
    model_comparison: dict[str, Any],
) -> dict[str, Any]:
    """``OUTPUT/reports/report.json`` + ``report.html``: KPIs vs baselines vs the spec's targets,
    the per-fold permutation importance aggregated over folds, the feature plan and the model
    comparison (every model of the zoo on the same folds)."""
    settings = run_settings
    ev = _evaluation_from_bundle(backtest)
    # one deflated Sharpe: the trial set of the model comparison (selection + models compared)
    deflated = headline_deflation(
        ev.equity, settings.costs.initial_equity, model_comparison["trials"]
    )
    ev.strategy.update(deflated)
    fold_keys = [f["key"] for f in fold_plan]
    importance, missing = importance_tables(feature_importance, fold_keys)
    plan, plan_source = feature_plan_metadata(
        context.instance, settings, list(dataset_info["symbols"])
    )
    features = features_section(
        fold_keys=fold_keys,
        importance=importance,
        missing=missing,
        plan=plan,
        plan_source=plan_source,
    )
    report = build_report(
        evaluation=ev,
        data_info=dataset_info,
        deployment=deployed_model,
        settings=settings,
        features=features,
        models=model_comparison,
    )
    paths = write_report(report, ev.equity, Path(pipeline.output_dir) / "reports")
    context.add_output_metadata(
        {
            "report_json": dg.MetadataValue.path(str(paths["json"].resolve())),
            "report_html": dg.MetadataValue.path(str(paths["html"].resolve())),
            **ui_metadata(report_tables(report, ev.equity)),
            "model_table": dg.MetadataValue.md(model_markdown(model_comparison)),
            "warnings": dg.MetadataValue.json(report["warnings"]),
            "importance_folds": f"{len(importance)} of {len(fold_keys)}",
            "importance_note": features["importance"]["reason"] or "all folds",
        }
    )
    return report
