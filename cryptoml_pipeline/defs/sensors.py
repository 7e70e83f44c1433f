"""Retrain sensor (first cut): reads the backtest's accuracy metadata (the performance tracker until
the Management issue adds one) and requests one retrain run per degradation."""

import dagster as dg

from cryptoml_pipeline.defs.jobs import retrain_job
from cryptoml_pipeline.management.retrain_policy import should_retrain
from cryptoml_pipeline.settings import RetrainConfig

BACKTEST_KEY = dg.AssetKey("backtest")


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
    degradation launches exactly one run."""
    policy = RetrainConfig()
    records = context.instance.fetch_materializations(BACKTEST_KEY, limit=1).records
    if not records:
        return dg.SkipReason("no backtest materialization yet")
    storage_id = records[0].storage_id
    if context.cursor and int(context.cursor) >= storage_id:
        return dg.SkipReason(f"backtest materialization {storage_id} already evaluated")
    context.update_cursor(str(storage_id))
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
