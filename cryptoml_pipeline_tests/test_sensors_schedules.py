import datetime as dt

import dagster as dg

from cryptoml_pipeline.defs.schedules import nightly_job_schedule
from cryptoml_pipeline.defs.sensors import degradation_sensor


def _report_backtest(instance: dg.DagsterInstance, recent: float, prior: float) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="backtest", metadata={"acc_recent_50": recent, "acc_prior_150": prior}
        )
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


def test_retrain_run_fans_out_one_run_per_fold() -> None:
    from cryptoml_pipeline.defs.partitions import FOLDS
    from cryptoml_pipeline.defs.sensors import RETRAIN_RUN_TAG, retrain_folds_sensor

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(FOLDS, ["2025-04-01", "2025-07-01"])
        run = _finished_run(instance, "retrain_job", "retrain-1")
        requests = retrain_folds_sensor(_status_context(instance, "retrain_folds_sensor", run))
        assert [r.partition_key for r in requests] == ["2025-04-01", "2025-07-01"]
        assert {r.tags[RETRAIN_RUN_TAG] for r in requests} == {"retrain-1"}
        assert len({r.run_key for r in requests}) == 2


def test_evaluate_runs_once_all_folds_of_the_retrain_succeeded() -> None:
    from cryptoml_pipeline.defs.partitions import FOLDS
    from cryptoml_pipeline.defs.sensors import RETRAIN_RUN_TAG, retrain_evaluate_sensor

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(FOLDS, ["2025-04-01", "2025-07-01"])

        def fold_run(run_id: str, key: str, retrain: str | None = "retrain-1") -> dg.DagsterRun:
            tags = {"dagster/partition": key} | ({RETRAIN_RUN_TAG: retrain} if retrain else {})
            return _finished_run(instance, "train_folds_job", run_id, tags)

        manual = fold_run("manual", "2025-04-01", retrain=None)
        assert isinstance(
            retrain_evaluate_sensor(_status_context(instance, "s", manual)), dg.SkipReason
        )
        first = fold_run("f1", "2025-04-01")
        assert isinstance(
            retrain_evaluate_sensor(_status_context(instance, "s", first)), dg.SkipReason
        )
        last = fold_run("f2", "2025-07-01")
        request = retrain_evaluate_sensor(_status_context(instance, "s", last))
        assert isinstance(request, dg.RunRequest)
        assert request.run_key == "retrain-1:evaluate"  # idempotent per retrain
