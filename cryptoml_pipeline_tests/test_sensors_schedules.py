import datetime as dt

import dagster as dg

from cryptoml_pipeline.defs.assets.evaluation import retrain_metadata
from cryptoml_pipeline.defs.schedules import nightly_job_schedule
from cryptoml_pipeline.defs.sensors import degradation_sensor
from cryptoml_pipeline.settings import RetrainConfig


def _report_backtest(
    instance: dg.DagsterInstance, recent: float, prior: float, retrain: RetrainConfig | None = None
) -> None:
    """A backtest materialization with the metadata the backtest asset writes."""
    metadata = retrain_metadata(recent, prior, retrain or RetrainConfig())
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="backtest", metadata=metadata)
    )


def test_sensor_skips_without_backtest() -> None:
    with dg.instance_for_test() as instance:
        result = degradation_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SkipReason)


def test_sensor_skips_when_accuracy_holds() -> None:
    with dg.instance_for_test() as instance:
        _report_backtest(instance, recent=0.38, prior=0.40)
        ctx = dg.build_sensor_context(instance=instance)
        result = degradation_sensor(ctx)
        assert isinstance(result, dg.SkipReason)
        assert ctx.cursor is not None  # evaluated once


def test_sensor_requests_one_retrain_per_degradation() -> None:
    with dg.instance_for_test() as instance:
        _report_backtest(instance, recent=0.30, prior=0.40)
        ctx = dg.build_sensor_context(instance=instance)
        first = degradation_sensor(ctx)
        assert isinstance(first, dg.RunRequest)
        assert first.run_key.startswith("degradation-")
        # same degradation, same cursor -> no second run
        again = degradation_sensor(dg.build_sensor_context(instance=instance, cursor=ctx.cursor))
        assert isinstance(again, dg.SkipReason)
        # a new degraded backtest -> a new run with another key
        _report_backtest(instance, recent=0.20, prior=0.40)
        ctx2 = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
        second = degradation_sensor(ctx2)
        assert isinstance(second, dg.RunRequest) and second.run_key != first.run_key


def test_sensor_retrains_a_run_with_non_default_retrain_windows() -> None:
    """The verdict is judged with the run's own retrain settings (here 20 vs 60 rows, 20 %) and
    read from fixed keys: no ``acc_recent_50`` / ``acc_prior_150`` exists in this metadata."""
    custom = RetrainConfig(recent_window=20, prior_window=60, degradation=0.2)
    with dg.instance_for_test() as instance:
        _report_backtest(instance, recent=0.30, prior=0.40, retrain=custom)  # 0.30 < 0.8 x 0.40
        meta = instance.fetch_materializations(dg.AssetKey("backtest"), limit=1).records[0]
        keys = set(meta.asset_materialization.metadata)
        assert {"acc_recent_20", "acc_prior_60", "degraded"} <= keys
        assert not {"acc_recent_50", "acc_prior_150"} & keys
        request = degradation_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(request, dg.RunRequest)
        assert request.tags["acc_recent"] == "0.3" and request.tags["acc_prior"] == "0.4"
        # the same accuracies are no degradation under a 30 % threshold: judged by the run
        lenient = custom.model_copy(update={"degradation": 0.3})
        _report_backtest(instance, recent=0.30, prior=0.40, retrain=lenient)  # 0.30 >= 0.28
        ctx = dg.build_sensor_context(instance=instance, cursor=str(meta.storage_id))
        assert isinstance(degradation_sensor(ctx), dg.SkipReason)


def test_sensor_skips_a_backtest_without_a_verdict() -> None:
    """A materialization without the ``degraded`` key (another writer) is skipped, not guessed
    from default windows."""
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key="backtest", metadata={"acc_recent_50": 0.1, "acc_prior_150": 0.4}
            )
        )
        result = degradation_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SkipReason) and "verdict" in result.skip_message


def test_sensor_targets_retrain_job() -> None:
    assert degradation_sensor.job_name == "retrain_job"


def test_nightly_schedule_runs_nightly_job_at_0015_utc() -> None:
    assert nightly_job_schedule.cron_schedule == "15 0 * * *"
    assert nightly_job_schedule.execution_timezone == "UTC"
    assert nightly_job_schedule.job_name == "nightly_job"
    ctx = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(2025, 10, 2, 0, 15, tzinfo=dt.UTC)
    )
    data = nightly_job_schedule.evaluate_tick(ctx)
    assert data.run_requests and len(data.run_requests) == 1


def test_ingest_schedule_requests_yesterdays_landing_partition() -> None:
    from cryptoml_pipeline.definitions import build_definitions
    from cryptoml_pipeline.defs.resources import MarketDataResource, PipelineResource

    defs = build_definitions(PipelineResource(profile="tiny"), MarketDataResource(kind="synthetic"))
    schedule = defs.resolve_schedule_def("ingest_job_schedule")  # registered in definitions.py
    assert schedule.job_name == "ingest_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("5 0 * * *", "UTC")
    for tick, day in [
        (dt.datetime(2025, 10, 2, 0, 5, tzinfo=dt.UTC), "2025-10-01"),
        (dt.datetime(2025, 3, 1, 0, 5, tzinfo=dt.UTC), "2025-02-28"),  # across a month end
    ]:
        ctx = dg.build_schedule_context(scheduled_execution_time=tick)
        requests = schedule.evaluate_tick(ctx).run_requests
        assert [r.partition_key for r in requests] == [day]
        assert requests[0].job_name == "ingest_job" and requests[0].run_key == day


# --- the retrain chain ----------------------------------------------------------------------
def _finished_run(instance, job: str, run_id: str, tags: dict | None = None) -> dg.DagsterRun:
    run = dg.DagsterRun(
        job_name=job, run_id=run_id, status=dg.DagsterRunStatus.SUCCESS, tags=tags or {}
    )
    instance.add_run(run)
    return run


def _status_context(instance, sensor_name: str, run: dg.DagsterRun):
    event = dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name=run.job_name)
    return dg.build_run_status_sensor_context(
        sensor_name=sensor_name, dagster_event=event, dagster_instance=instance, dagster_run=run
    )


def _materialize_as(instance, key: str, metadata: dict, tags: dict | None = None) -> str:
    """Materialize a stand-in asset named ``key`` with ``metadata`` in a real run; its run id."""

    @dg.asset(name=key)
    def _stand_in(context: dg.AssetExecutionContext) -> None:
        context.add_output_metadata(metadata)

    result = dg.materialize([_stand_in], instance=instance, tags=tags or {})
    assert result.success
    return result.run_id


def test_retrain_run_fans_out_one_run_per_fold_of_its_own_plan() -> None:
    from cryptoml_pipeline.defs.partitions import FOLDS
    from cryptoml_pipeline.defs.sensors import FOLD_KEYS_TAG, RETRAIN_RUN_TAG, retrain_folds_sensor

    with dg.instance_for_test() as instance:
        keys = ["2025-04-01", "2025-07-01"]
        run_id = _materialize_as(instance, "fold_plan", {"fold_keys": dg.MetadataValue.json(keys)})
        instance.add_dynamic_partitions(FOLDS, keys)
        run = instance.get_run_by_id(run_id)
        requests = retrain_folds_sensor(_status_context(instance, "retrain_folds_sensor", run))
        assert [r.partition_key for r in requests] == keys
        assert {r.tags[RETRAIN_RUN_TAG] for r in requests} == {run_id}
        assert {r.tags[FOLD_KEYS_TAG] for r in requests} == {",".join(keys)}
        # another plan replaced the partitions before the tick: do not train the wrong folds
        instance.delete_dynamic_partition(FOLDS, "2025-04-01")
        skipped = retrain_folds_sensor(_status_context(instance, "retrain_folds_sensor", run))
        assert isinstance(skipped, dg.SkipReason) and "superseded" in skipped.skip_message


def test_evaluate_runs_once_all_folds_of_the_retrain_succeeded() -> None:
    from cryptoml_pipeline.defs.partitions import FOLDS
    from cryptoml_pipeline.defs.sensors import (
        FOLD_KEYS_TAG,
        RETRAIN_RUN_TAG,
        retrain_evaluate_sensor,
    )

    keys = ["2025-04-01", "2025-07-01"]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(FOLDS, keys)

        def fold_run(run_id: str, key: str, retrain: str | None = "retrain-1") -> dg.DagsterRun:
            tags = {"dagster/partition": key}
            if retrain:
                tags |= {RETRAIN_RUN_TAG: retrain, FOLD_KEYS_TAG: ",".join(keys)}
            return _finished_run(instance, "train_folds_job", run_id, tags)

        def evaluate(run):
            return retrain_evaluate_sensor(_status_context(instance, "s", run))

        assert isinstance(evaluate(fold_run("manual", "2025-04-01", retrain=None)), dg.SkipReason)
        assert isinstance(evaluate(fold_run("f1", "2025-04-01")), dg.SkipReason)
        last = fold_run("f2", "2025-07-01")
        request = evaluate(last)
        assert isinstance(request, dg.RunRequest)
        assert request.run_key == "retrain-1:evaluate"  # idempotent per retrain
        instance.add_dynamic_partitions(FOLDS, ["2025-10-01"])  # a newer plan exists now
        assert "superseded" in evaluate(last).skip_message


def test_a_retrains_own_backtest_never_triggers_another_retrain() -> None:
    from cryptoml_pipeline.defs.sensors import RETRAIN_RUN_TAG

    degraded = retrain_metadata(0.2, 0.4, RetrainConfig())
    with dg.instance_for_test() as instance:
        _materialize_as(instance, "backtest", degraded, tags={RETRAIN_RUN_TAG: "retrain-1"})
        result = degradation_sensor(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SkipReason) and "retrain" in result.skip_message
        _materialize_as(instance, "backtest", degraded)  # a regular evaluation, still degraded
        ctx = dg.build_sensor_context(instance=instance)
        assert isinstance(degradation_sensor(ctx), dg.RunRequest)


# --- model_health_sensor (the performance tracker -> retrain) -------------------------------
def _report_health(instance, version: str, retrain: bool) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="model_health",
            metadata={"version": version, "should_retrain": retrain, "summary": "s"},
        )
    )


def test_health_sensor_skips_without_health_and_when_healthy() -> None:
    from cryptoml_pipeline.defs.sensors import model_health_sensor

    with dg.instance_for_test() as instance:
        assert isinstance(
            model_health_sensor(dg.build_sensor_context(instance=instance)), dg.SkipReason
        )
        _report_health(instance, "v1", retrain=False)
        ctx = dg.build_sensor_context(instance=instance)
        assert isinstance(model_health_sensor(ctx), dg.SkipReason)
        assert ctx.cursor is not None and "storage_id" in ctx.cursor


def test_health_sensor_launches_one_retrain_per_degraded_model() -> None:
    from cryptoml_pipeline.defs.sensors import model_health_sensor

    with dg.instance_for_test() as instance:
        _report_health(instance, "v1", retrain=True)
        ctx = dg.build_sensor_context(instance=instance)
        first = model_health_sensor(ctx)
        assert isinstance(first, dg.RunRequest) and first.tags["model_version"] == "v1"
        assert model_health_sensor.job_name == "retrain_job"
        # the same materialization again, then the same degradation reported the next night
        cursor = ctx.cursor
        assert isinstance(
            model_health_sensor(dg.build_sensor_context(instance=instance, cursor=cursor)),
            dg.SkipReason,
        )
        _report_health(instance, "v1", retrain=True)
        ctx2 = dg.build_sensor_context(instance=instance, cursor=cursor)
        again = model_health_sensor(ctx2)
        assert isinstance(again, dg.SkipReason) and "already launched" in again.skip_message
        # a newly deployed model that degrades gets its own retrain
        _report_health(instance, "v2", retrain=True)
        second = model_health_sensor(dg.build_sensor_context(instance=instance, cursor=ctx2.cursor))
        assert isinstance(second, dg.RunRequest) and second.run_key != first.run_key


def test_nightly_job_tracks_the_deployed_model() -> None:
    from cryptoml_pipeline.definitions import defs

    job = defs.resolve_job_def("nightly_job")
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert {"latest_signals", "prediction_log", "model_health", "feature_table"} <= keys
