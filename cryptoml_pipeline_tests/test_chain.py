"""One driver for prepare -> folds -> evaluate: ``cryptoml run`` (in process) and the retrain
sensors (on the daemon) take the same steps from :mod:`cryptoml_pipeline.defs.chain`."""

import dagster as dg
import pytest

from cryptoml_pipeline.defs.chain import (
    FOLD_KEYS_TAG,
    RETRAIN_RUN_TAG,
    RUN_CHAIN_TAG,
    run_chain,
)
from cryptoml_pipeline.defs.partitions import FOLDS
from cryptoml_pipeline.defs.sensors import retrain_evaluate_sensor, retrain_folds_sensor

KEYS = ["2025-04-01", "2025-07-01"]


class FakeExecutor:
    """Stands in for ``execute_in_process``: the first job writes a fold plan (metadata and
    partitions, as the fold_plan asset does); every run is recorded as a successful run."""

    def __init__(self, instance: dg.DagsterInstance, keys: list[str] = KEYS) -> None:
        self.instance, self.keys = instance, keys
        self.calls: list[tuple[str, str | None, dict[str, str]]] = []
        self.runs: dict[str, dg.DagsterRun] = {}

    def __call__(self, job: str, partition_key: str | None, tags: dict[str, str]) -> str:
        self.calls.append((job, partition_key, tags))
        if job in ("prepare_job", "retrain_job"):
            keys = self.keys

            @dg.asset(name="fold_plan")
            def _plan(context: dg.AssetExecutionContext) -> None:
                context.add_output_metadata({"fold_keys": dg.MetadataValue.json(keys)})

            result = dg.materialize([_plan], instance=self.instance, tags=tags)
            self.instance.add_dynamic_partitions(FOLDS, keys)
            run = self.instance.get_run_by_id(result.run_id)
        else:
            run = dg.DagsterRun(
                job_name=job,
                run_id=f"run-{len(self.calls)}",
                status=dg.DagsterRunStatus.SUCCESS,
                tags=tags | ({"dagster/partition": partition_key} if partition_key else {}),
            )
            self.instance.add_run(run)
        self.runs[run.run_id] = run
        return run.run_id


def _status_context(instance, run: dg.DagsterRun):
    event = dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name=run.job_name)
    return dg.build_run_status_sensor_context(
        sensor_name="s", dagster_event=event, dagster_instance=instance, dagster_run=run
    )


def test_cli_chain_trains_every_fold_of_its_own_plan_then_evaluates() -> None:
    with dg.instance_for_test() as instance:
        execute = FakeExecutor(instance)
        progress: list[tuple[int, int, str]] = []
        run_chain(instance, execute, on_fold=lambda i, n, k: progress.append((i, n, k)))
        jobs = [(job, key) for job, key, _ in execute.calls]
        assert jobs == [
            ("prepare_job", None),
            ("train_folds_job", KEYS[0]),
            ("train_folds_job", KEYS[1]),
            ("evaluate_job", None),
        ]
        assert progress == [(1, 2, KEYS[0]), (2, 2, KEYS[1])]
        first = next(iter(execute.runs))
        for _, _, tags in execute.calls[1:3]:
            assert tags == {RUN_CHAIN_TAG: first, FOLD_KEYS_TAG: ",".join(KEYS)}
        # a `cryptoml run` chain is not a retrain: its backtest may still trigger one
        assert execute.calls[3][2] == {RUN_CHAIN_TAG: first}
        # ... and the daemon's retrain sensors leave its fold runs alone
        fold_run = execute.runs[list(execute.runs)[2]]
        assert isinstance(
            retrain_evaluate_sensor(_status_context(instance, fold_run)), dg.SkipReason
        )


def test_retrain_chain_in_process_takes_the_steps_the_sensors_request() -> None:
    with dg.instance_for_test() as instance:
        execute = FakeExecutor(instance)
        run_chain(instance, execute, first_job="retrain_job")
        retrain_run = next(iter(execute.runs.values()))
        requests = retrain_folds_sensor(_status_context(instance, retrain_run))
        folds = execute.calls[1:3]
        assert [(r.partition_key, dict(r.tags)) for r in requests] == [
            (key, tags) for _, key, tags in folds
        ]
        last_fold = execute.runs[list(execute.runs)[2]]
        evaluate = retrain_evaluate_sensor(_status_context(instance, last_fold))
        assert isinstance(evaluate, dg.RunRequest)
        assert execute.calls[3] == ("evaluate_job", None, dict(evaluate.tags))
        assert evaluate.tags == {RETRAIN_RUN_TAG: retrain_run.run_id}


def test_a_first_run_without_a_plan_fails_loudly() -> None:
    with (
        dg.instance_for_test() as instance,
        pytest.raises(RuntimeError, match="wrote no fold plan"),
    ):
        run_chain(instance, FakeExecutor(instance, keys=[]))
