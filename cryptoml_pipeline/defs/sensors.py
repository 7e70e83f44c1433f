"""Retraining automation.

``degradation_sensor`` reads the backtest's degradation verdict (metadata ``degraded``, judged by
the ``backtest`` asset with the run's own ``retrain`` settings, so a run with other accuracy
windows retrains too) and requests one ``retrain_job`` run per degradation;
``model_health_sensor`` does the same from the nightly tracker's ``model_health``. Two run-status
sensors then chain the rest on Dagster's own run launcher: every fold partition of the new plan
(``train_folds_job``), then ``evaluate_job`` (backtest -> candidate -> deploy gate -> report) —
the steps :mod:`.chain` decides for ``cryptoml run`` too."""

import json

import dagster as dg

from cryptoml_pipeline.defs.assets.evaluation import ACC_PRIOR_KEY, ACC_RECENT_KEY, DEGRADED_KEY
from cryptoml_pipeline.defs.chain import (
    FOLD_KEYS_TAG,
    FOLD_PLAN_KEY,
    RETRAIN_RUN_TAG,
    after_fold,
    after_prepare,
    fold_run_requests,
    folds_finished,
    planned_fold_keys,
)
from cryptoml_pipeline.defs.jobs import evaluate_job, retrain_job, train_folds_job

BACKTEST_KEY = dg.AssetKey("backtest")
__all__ = [
    "FOLD_KEYS_TAG",
    "FOLD_PLAN_KEY",
    "RETRAIN_RUN_TAG",
    "degradation_sensor",
    "fold_run_requests",
    "folds_finished",
    "model_health_sensor",
    "planned_fold_keys",
    "retrain_evaluate_sensor",
    "retrain_folds_sensor",
]


def _metadata_float(metadata: dict, key: str) -> float | None:
    entry = metadata.get(key)
    value = getattr(entry, "value", entry)
    return None if value is None else float(value)


@dg.sensor(
    job=retrain_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED
)
def degradation_sensor(context: dg.SensorEvaluationContext):
    """RunRequest(retrain_job) when the latest backtest says ``degraded``: its recent accuracy
    < (1 - degradation) x prior accuracy, windows and threshold from that run's settings.

    The cursor is the storage id of the last backtest materialization looked at, so one
    degradation launches exactly one run; a backtest written by a retrain chain never triggers
    another retrain (that would loop on unchanged data)."""
    records = context.instance.fetch_materializations(BACKTEST_KEY, limit=1).records
    if not records:
        return dg.SkipReason("no backtest materialization yet")
    storage_id = records[0].storage_id
    if context.cursor and int(context.cursor) >= storage_id:
        return dg.SkipReason(f"backtest materialization {storage_id} already evaluated")
    context.update_cursor(str(storage_id))
    producer = context.instance.get_run_by_id(records[0].run_id) if records[0].run_id else None
    if producer is not None and RETRAIN_RUN_TAG in producer.tags:
        # the evaluation of a retrain: judging it again would retrain on the same data forever
        return dg.SkipReason(f"backtest {storage_id} comes from a retrain; not re-triggering")
    mat = records[0].asset_materialization
    metadata = dict(mat.metadata) if mat is not None else {}
    recent = _metadata_float(metadata, ACC_RECENT_KEY)
    prior = _metadata_float(metadata, ACC_PRIOR_KEY)
    if DEGRADED_KEY not in metadata:
        return dg.SkipReason(f"backtest {storage_id} has no '{DEGRADED_KEY}' verdict")
    if not bool(getattr(metadata[DEGRADED_KEY], "value", metadata[DEGRADED_KEY])):
        return dg.SkipReason(f"no degradation: recent={recent} prior={prior}")
    return dg.RunRequest(
        run_key=f"degradation-{storage_id}",
        tags={"trigger": "degradation", "acc_recent": str(recent), "acc_prior": str(prior)},
    )


# --- the retrain chain: retrain_job -> one train_folds_job per fold -> evaluate_job (.chain) ---


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[retrain_job],
    request_job=train_folds_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a retrain_job run: train every fold of the plan it wrote",
)
def retrain_folds_sensor(context: dg.RunStatusSensorContext):
    return after_prepare(context.instance, context.dagster_run.run_id, RETRAIN_RUN_TAG)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[train_folds_job],
    request_job=evaluate_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When every fold of a retrain has succeeded: backtest, gate and deploy, report",
)
def retrain_evaluate_sensor(context: dg.RunStatusSensorContext):
    return after_fold(context.instance, context.dagster_run.tags, RETRAIN_RUN_TAG)


# --- the performance tracker -> retrain -----------------------------------------------------
MODEL_HEALTH_KEY = dg.AssetKey("model_health")


def _health_cursor(raw: str | None) -> dict:
    return json.loads(raw) if raw else {"storage_id": 0, "retrained_versions": []}


@dg.sensor(
    job=retrain_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED
)
def model_health_sensor(context: dg.SensorEvaluationContext):
    """RunRequest(retrain_job) when the tracker's model_health says ``should_retrain`` (spec
    accuracy degradation, PSI drift or model age).

    Cursor: the last model_health materialization looked at plus the deployed versions a retrain
    was already launched for, so one degradation of one deployed model launches exactly one
    retrain however many nightly runs keep reporting it."""
    cursor = _health_cursor(context.cursor)
    records = context.instance.fetch_materializations(MODEL_HEALTH_KEY, limit=1).records
    if not records:
        return dg.SkipReason("no model_health materialization yet")
    storage_id = records[0].storage_id
    if storage_id <= cursor["storage_id"]:
        return dg.SkipReason(f"model_health {storage_id} already evaluated")
    cursor["storage_id"] = storage_id
    mat = records[0].asset_materialization
    metadata = dict(mat.metadata) if mat is not None else {}
    version = str(getattr(metadata.get("version"), "value", metadata.get("version")))
    retrain = bool(getattr(metadata.get("should_retrain"), "value", False))
    summary = str(getattr(metadata.get("summary"), "value", ""))
    if not retrain:
        context.update_cursor(json.dumps(cursor))
        return dg.SkipReason(f"model {version} healthy: {summary}")
    if version in cursor["retrained_versions"]:
        context.update_cursor(json.dumps(cursor))
        return dg.SkipReason(f"a retrain was already launched for model {version}")
    cursor["retrained_versions"] = [*cursor["retrained_versions"], version][-50:]
    context.update_cursor(json.dumps(cursor))
    return dg.RunRequest(
        run_key=f"health-{version}-{storage_id}",
        tags={"trigger": "model_health", "model_version": version, "reason": summary[:200]},
    )
