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
