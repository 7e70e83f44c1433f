"""The one driver of the main chain: ``prepare_job`` (or ``retrain_job``) -> one
``train_folds_job`` run per fold of the plan that first run wrote -> ``evaluate_job``.

Fold partitions exist only once the plan exists, so the chain is three kinds of runs. The steps
are decided here, once, for both drivers:

* ``cryptoml run`` executes them in process, one after another (:func:`run_chain`);
* the retrain sensors launch them on the daemon (:mod:`.sensors` calls :func:`after_prepare`
  when a ``retrain_job`` run succeeded and :func:`after_fold` when a fold run did).

A chain is named by its first run's id, carried in a tag of every later run together with the
plan's fold keys (so completeness is judged against that plan, not whatever exists later). A
retrain chain's tag is ``RETRAIN_RUN_TAG`` (its backtest never triggers another retrain); a
``cryptoml run`` chain's is ``RUN_CHAIN_TAG``.
"""

from collections.abc import Callable, Mapping

import dagster as dg

from cryptoml_pipeline.defs.jobs import evaluate_job, prepare_job, retrain_job, train_folds_job
from cryptoml_pipeline.defs.partitions import FOLDS

FOLD_PLAN_KEY = dg.AssetKey("fold_plan")
RETRAIN_RUN_TAG = "cryptoml/retrain_run"
RUN_CHAIN_TAG = "cryptoml/run_chain"
FOLD_KEYS_TAG = "cryptoml/fold_keys"

# job, partition key, tags -> the id of the run, which succeeded (raises otherwise)
Execute = Callable[[str, str | None, dict[str, str]], str]


def chain_tag(first_job: str) -> str:
    return RETRAIN_RUN_TAG if first_job == retrain_job.name else RUN_CHAIN_TAG


def planned_fold_keys(instance: dg.DagsterInstance, run_id: str) -> list[str] | None:
    """The fold keys of the fold_plan materialized by run ``run_id`` (from its metadata)."""
    for record in instance.fetch_materializations(FOLD_PLAN_KEY, limit=20).records:
        if record.run_id == run_id and record.asset_materialization is not None:
            entry = record.asset_materialization.metadata.get("fold_keys")
            value = getattr(entry, "value", entry)
            return list(value) if value is not None else None
    return None


def fold_run_requests(
    chain_id: str, fold_keys: list[str], tag: str = RETRAIN_RUN_TAG
) -> list[dg.RunRequest]:
    """One train_folds_job run per fold of the plan; each carries the chain and the plan's keys."""
    keys = sorted(fold_keys)
    return [
        dg.RunRequest(
            run_key=f"{chain_id}:{key}",
            partition_key=key,
            tags={tag: chain_id, FOLD_KEYS_TAG: ",".join(keys)},
        )
        for key in keys
    ]


def folds_finished(
    instance: dg.DagsterInstance, chain_id: str, fold_keys: list[str], tag: str = RETRAIN_RUN_TAG
) -> bool:
    """True when every fold partition has a successful train_folds_job run of this chain."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(
            job_name=train_folds_job.name,
            tags={tag: chain_id},
            statuses=[dg.DagsterRunStatus.SUCCESS],
        )
    )
    done = {run.tags.get("dagster/partition") for run in runs}
    return bool(fold_keys) and set(fold_keys) <= done


def superseded(instance: dg.DagsterInstance, keys: list[str]) -> bool:
    """The fold partitions no longer match the plan (another plan was written meanwhile)."""
    return sorted(instance.get_dynamic_partitions(FOLDS)) != sorted(keys)


def after_prepare(
    instance: dg.DagsterInstance, run_id: str, tag: str = RETRAIN_RUN_TAG
) -> list[dg.RunRequest] | dg.SkipReason:
    """The fold runs that follow the successful first run ``run_id`` of a chain."""
    keys = planned_fold_keys(instance, run_id)
    if not keys:
        return dg.SkipReason(f"run {run_id} wrote no fold plan")
    if superseded(instance, keys):
        return dg.SkipReason(f"the fold plan of run {run_id} was superseded")
    return fold_run_requests(run_id, keys, tag)


def after_fold(
    instance: dg.DagsterInstance, tags: Mapping[str, str], tag: str = RETRAIN_RUN_TAG
) -> dg.RunRequest | dg.SkipReason:
    """The evaluate run once the fold run with ``tags`` was the chain's last to succeed."""
    chain_id = tags.get(tag)
    if not chain_id:
        return dg.SkipReason("not part of a retrain" if tag == RETRAIN_RUN_TAG else "no chain")
    keys = [k for k in tags.get(FOLD_KEYS_TAG, "").split(",") if k]
    if superseded(instance, keys):
        return dg.SkipReason(f"the fold plan of chain {chain_id} was superseded")
    if not folds_finished(instance, chain_id, keys, tag):
        return dg.SkipReason("other folds of this chain are still running")
    return dg.RunRequest(run_key=f"{chain_id}:evaluate", tags={tag: chain_id})


def run_chain(
    instance: dg.DagsterInstance,
    execute: Execute,
    *,
    first_job: str = prepare_job.name,
    on_fold: Callable[[int, int, str], None] | None = None,
) -> str:
    """Drive the whole chain synchronously with ``execute``; the evaluate run's id.

    The same steps the sensors take: the folds are those of the plan the first run wrote, each
    fold run is tagged with the chain, and evaluate follows when :func:`after_fold` says so."""
    tag = chain_tag(first_job)
    first = execute(first_job, None, {})
    folds = after_prepare(instance, first, tag)
    if isinstance(folds, dg.SkipReason):
        raise RuntimeError(folds.skip_message)
    evaluate: dg.RunRequest | None = None
    for i, request in enumerate(folds, 1):
        assert request.partition_key is not None
        if on_fold is not None:
            on_fold(i, len(folds), request.partition_key)
        execute(train_folds_job.name, request.partition_key, dict(request.tags))
        step = after_fold(instance, request.tags, tag)
        evaluate = step if isinstance(step, dg.RunRequest) else None
    if evaluate is None:
        raise RuntimeError(f"the folds of chain {first} did not all succeed")
    return execute(evaluate_job.name, None, dict(evaluate.tags))
