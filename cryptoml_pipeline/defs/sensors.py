"""Retraining automation (first cut).

``degradation_sensor`` reads the backtest's accuracy metadata (the performance tracker until the
Management issue adds one) and requests one ``retrain_job`` run per degradation. Two run-status
sensors then chain the rest on Dagster's own run launcher: every fold partition of the new plan
(``train_folds_job``), then ``evaluate_job`` (backtest -> candidate -> deploy gate -> report)."""

import json

import dagster as dg

from cryptoml_pipeline.defs.jobs import evaluate_job, retrain_job, train_folds_job
from cryptoml_pipeline.defs.partitions import FOLDS
from cryptoml_pipeline.management.retrain_policy import should_retrain
from cryptoml_pipeline.settings import RetrainConfig

BACKTEST_KEY = dg.AssetKey("backtest")
FOLD_PLAN_KEY = dg.AssetKey("fold_plan")
RETRAIN_RUN_TAG = "cryptoml/retrain_run"
FOLD_KEYS_TAG = "cryptoml/fold_keys"


def _metadata_float(metadata: dict, key: str) -> float | None:
    entry = metadata.get(key)
    value = getattr(entry, "value", entry)
    return None if value is None else float(value)


@dg.sensor(
    job=retrain_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED
)
def degradation_sensor(context: dg.SensorEvaluationContext):
    """RunRequest(retrain_job) when recent accuracy < (1 - degradation) x prior accuracy.

    The cursor is the storage id of the last backtest materialization looked at, so one
    degradation launches exactly one run; a backtest written by a retrain chain never triggers
    another retrain (that would loop on unchanged data)."""
    policy = RetrainConfig()
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
    recent = _metadata_float(metadata, f"acc_recent_{policy.recent_window}")
    prior = _metadata_float(metadata, f"acc_prior_{policy.prior_window}")
    if not should_retrain(recent, prior, policy.degradation):
        return dg.SkipReason(f"no degradation: recent={recent} prior={prior}")
    return dg.RunRequest(
        run_key=f"degradation-{storage_id}",
        tags={"trigger": "degradation", "acc_recent": str(recent), "acc_prior": str(prior)},
    )


# --- the retrain chain: retrain_job -> one train_folds_job per fold -> evaluate_job -------------


def fold_run_requests(retrain_run_id: str, fold_keys: list[str]) -> list[dg.RunRequest]:
    """One train_folds_job run per fold of the plan the retrain run wrote; each run carries the
    plan's keys so completeness is judged against that plan, not whatever exists later."""
    keys = sorted(fold_keys)
    return [
        dg.RunRequest(
            run_key=f"{retrain_run_id}:{key}",
            partition_key=key,
            tags={RETRAIN_RUN_TAG: retrain_run_id, FOLD_KEYS_TAG: ",".join(keys)},
        )
        for key in keys
    ]


def planned_fold_keys(instance: dg.DagsterInstance, run_id: str) -> list[str] | None:
    """The fold keys of the fold_plan materialized by run ``run_id`` (from its metadata)."""
    for record in instance.fetch_materializations(FOLD_PLAN_KEY, limit=20).records:
        if record.run_id == run_id and record.asset_materialization is not None:
            entry = record.asset_materialization.metadata.get("fold_keys")
            value = getattr(entry, "value", entry)
            return list(value) if value is not None else None
    return None


def folds_finished(instance: dg.DagsterInstance, retrain_run_id: str, fold_keys: list[str]) -> bool:
    """True when every fold partition has a successful train_folds_job run of this retrain."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=train_folds_job.name,
            tags={RETRAIN_RUN_TAG: retrain_run_id},
            statuses=[dg.DagsterRunStatus.SUCCESS],
        )
    )
    done = {run.tags.get("dagster/partition") for run in runs}
    return bool(fold_keys) and set(fold_keys) <= done


def _superseded(instance: dg.DagsterInstance, keys: list[str]) -> bool:
    """The fold partitions no longer match the plan (another plan was written meanwhile)."""
    return sorted(instance.get_dynamic_partitions(FOLDS)) != sorted(keys)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[retrain_job],
    request_job=train_folds_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a retrain_job run: train every fold of the plan it wrote",
)
def retrain_folds_sensor(context: dg.RunStatusSensorContext):
    run_id = context.dagster_run.run_id
    keys = planned_fold_keys(context.instance, run_id)
    if not keys:
        return dg.SkipReason(f"retrain run {run_id} wrote no fold plan")
    if _superseded(context.instance, keys):
        return dg.SkipReason(f"the fold plan of retrain run {run_id} was superseded")
    return fold_run_requests(run_id, keys)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[train_folds_job],
    request_job=evaluate_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When every fold of a retrain has succeeded: backtest, gate and deploy, report",
)
def retrain_evaluate_sensor(context: dg.RunStatusSensorContext):
    tags = context.dagster_run.tags
    retrain_run_id = tags.get(RETRAIN_RUN_TAG)
    if not retrain_run_id:
        return dg.SkipReason("not part of a retrain")
    keys = [k for k in tags.get(FOLD_KEYS_TAG, "").split(",") if k]
    if _superseded(context.instance, keys):
        return dg.SkipReason(f"the fold plan of retrain {retrain_run_id} was superseded")
    if not folds_finished(context.instance, retrain_run_id, keys):
        return dg.SkipReason("other folds of this retrain are still running")
    return dg.RunRequest(
        run_key=f"{retrain_run_id}:evaluate", tags={RETRAIN_RUN_TAG: retrain_run_id}
    )


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
