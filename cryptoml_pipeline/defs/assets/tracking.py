"""Performance tracking of the deployed model (nightly): every prediction stored with its
confidence, outcomes filled once the horizon passed, health (accuracy windows, drift, age)."""

import base64
from typing import Any

import dagster as dg
import pandas as pd

from cryptoml_pipeline.dashboard.plots import (
    confidence_histogram_png,
    predictions_vs_outcomes_png,
    rolling_metrics_png,
)
from cryptoml_pipeline.defs.resources import DatabaseResource
from cryptoml_pipeline.modeling.models import ZOO
from cryptoml_pipeline.monitoring.health import assess, drift_frames
from cryptoml_pipeline.monitoring.tracker import ModelPerformanceTracker, rolling_metrics
from cryptoml_pipeline.registry.candidates import load_verified
from cryptoml_pipeline.registry.model_registry import ModelRegistry
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import to_utc

GROUP = "monitoring"


def _img(png: bytes, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


@dg.asset(group_name=GROUP, deps=["latest_signals"])
def prediction_log(
    context: dg.AssetExecutionContext,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
    database: DatabaseResource,
) -> dict[str, Any]:
    """Store the deployed model's predictions for every bar since the last tracked one (after
    its training window) and fill the outcomes whose horizon has passed by the data's end."""
    settings = run_settings
    engine = database.engine()
    deployed = ModelRegistry(engine).deployed()
    if deployed is None:
        raise dg.Failure("no model is deployed in the registry: run the main job first")
    model = load_verified(ModelRegistry(engine), deployed.version)
    tracker = ModelPerformanceTracker(engine)
    end = to_utc(dataset_info["end"])
    known = tracker.frame(deployed.version)
    since = max(
        model.fold.test_start,  # never score the model on its own training rows
        end - pd.Timedelta(days=settings.retrain.track_backfill_days),
    )
    ts = feature_table["timestamp"]
    mask = (ts >= since).to_numpy(copy=True)
    if len(known):
        mask &= (ts > known["timestamp"].max()).to_numpy()
    timeframe = dataset_info["timeframe"]
    traded = feature_table["symbol"].astype(str).isin(list(dataset_info["symbols"])).to_numpy()
    preds = ZOO[str(model.name)].predict_rows(
        model, feature_table, None, mask & traded, settings, timeframe, tag="track"
    )
    inserted = tracker.record_predictions(
        deployed.version,
        preds,
        horizon=settings.target.reach,
        timeframe=timeframe,
    )
    filled = tracker.fill_outcomes(label_table, now=end.to_pydatetime())
    result = {"version": deployed.version, "recorded": inserted, "outcomes_filled": filled}
    context.add_output_metadata(result)
    return result


@dg.asset(group_name=GROUP)
def model_health(
    context: dg.AssetExecutionContext,
    prediction_log: dict[str, Any],
    feature_table: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
    database: DatabaseResource,
) -> dict[str, Any]:
    """Rolling metrics, spec should_retrain (recent 50 vs prior 150), PSI drift, model age.
    The retrain sensor reads ``should_retrain`` from this asset's metadata."""
    settings = run_settings
    engine = database.engine()
    registry = ModelRegistry(engine)
    entry = registry.require(prediction_log["version"])
    model = load_verified(registry, entry.version)
    reference, recent = drift_frames(
        feature_table,
        model.fold.train_start,
        model.fold.test_start,
        to_utc(dataset_info["end"]),
        settings.retrain.drift_days,
    )
    tracker = ModelPerformanceTracker(engine)
    health, psi = assess(tracker, entry, reference, recent, settings.retrain)
    frame = tracker.frame(entry.version)
    metrics = rolling_metrics(
        frame,
        window=settings.retrain.rolling_window,
        timeframe=dataset_info["timeframe"],
        horizon=settings.target.reach,
    )
    r = settings.retrain
    latest = metrics.iloc[-1].drop("timestamp").to_dict() if len(metrics) else {}
    context.add_output_metadata(
        {
            "version": entry.version,
            "should_retrain": health.should_retrain,
            "summary": health.summary,
            f"acc_recent_{r.recent_window}": health.acc_recent,
            f"acc_prior_{r.prior_window}": health.acc_prior,
            "max_psi": health.max_psi,
            "model_age_days": health.model_age_days,
            "n_resolved": health.n_resolved,
            "rolling": dg.MetadataValue.json(
                {k: (None if pd.isna(v) else float(v)) for k, v in latest.items()}
            ),
            "psi_top": dg.MetadataValue.json(
                {k: float(v) for k, v in psi.dropna().head(10).items()}
            ),
            "predictions_vs_outcomes": _img(predictions_vs_outcomes_png(frame), "predictions"),
            "rolling_metrics": _img(rolling_metrics_png(metrics), "rolling"),
            "confidence": _img(confidence_histogram_png(frame), "confidence"),
        }
    )
    return health.as_dict()
