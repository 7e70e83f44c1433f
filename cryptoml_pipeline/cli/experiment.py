"""``cryptoml experiment --grid FILE``: a configuration sweep as Dagster partitions.

1. The grid is validated against the settings before any work (one line, exit 2, on a bad key
   or value).
2. ``prepare_job`` computes the shared upstream once (market data, feature table).
3. Every (configuration, split) partition of ``experiment_predictions`` that is not finished yet
   runs in process, one after another (a rerun after a kill resumes: finished partitions are
   skipped); with a daemon the same partitions can be launched as a backfill from the UI, through
   the run queue and its concurrency limits.
4. ``experiment_leaderboard`` scores every configuration and writes
   ``OUTPUT/experiments/<grid>/leaderboard.json`` / ``.html`` and ``selected.yaml``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from math import comb
from pathlib import Path

from cryptoml_pipeline.cli.args import (
    add_data_dir,
    add_output_dir,
    add_profile,
    add_symbols,
    add_timeframe,
    add_universe,
    ensure_dagster_home,
    first_error,
    one_line,
    prepare_run,
    run_config,
)
from cryptoml_pipeline.errors import InputError

SHARED_SECTIONS = ("data",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser(
        "experiment", help="sweep a grid of configurations (walk-forward + CPCV, PBO, DSR)"
    )
    exp.add_argument("--grid", required=True, help="grid YAML, e.g. examples/grids/quick.yaml")
    add_data_dir(exp)
    add_symbols(
        exp,
        help="traded symbols, each as its USDT-M perpetual, comma-separated "
        "(default: every perpetual with funding in the data)",
    )
    add_universe(exp)
    add_timeframe(exp)
    exp.add_argument(
        "--start", help="UTC date/time, inclusive (default: all the traded symbols' data)"
    )
    exp.add_argument(
        "--config",
        help="YAML of setting overrides for the sweep's base settings (its shared feature "
        "table), e.g. examples/grids/pooled_table.yaml",
    )
    exp.add_argument("--end", help="UTC date/time, exclusive (default: last common bar + 1 bar)")
    add_profile(exp)
    add_output_dir(exp)
    exp.add_argument("--synthetic", action="store_true", help="force the synthetic market")


def validate_grid(grid_path: Path, pipeline):
    """The grid, every configuration's settings built; a configuration that would change the
    shared market data or feature table is refused (one sweep computes those once; turning
    feature families off selects columns of the shared table)."""
    from cryptoml_pipeline.experiments.grid import configuration_settings, load_grid
    from cryptoml_pipeline.experiments.sweep import families_turned_off

    if not grid_path.is_file():
        raise InputError(f"grid file {grid_path} does not exist")
    base = pipeline.settings()
    grid = load_grid(grid_path, base)
    for config in grid.configurations:
        settings = configuration_settings(grid, config, base)
        try:
            families_turned_off(base.features, settings.features)
        except InputError as exc:
            raise InputError(f"{grid_path}: configuration {config.name}: {exc}") from None
        for section in SHARED_SECTIONS:
            if getattr(settings, section) != getattr(base, section):
                raise InputError(
                    f"{grid_path}: configuration {config.name} changes {section}.*, which the "
                    "sweep loads once for every configuration; sweep it in separate grids"
                )
    return grid


def sweep_plan(grid, pipeline) -> tuple[list[str], list[str], list[dict]]:
    """Configuration partition keys, split keys, and the configurations' records."""
    from cryptoml_pipeline.defs.assets.experiments import search_spec
    from cryptoml_pipeline.experiments.grid import configuration_settings
    from cryptoml_pipeline.experiments.layout import configuration_partition
    from cryptoml_pipeline.experiments.sweep import split_keys, training_fingerprint
    from cryptoml_pipeline.modeling.folds import walk_forward_plan
    from cryptoml_pipeline.timing import to_utc

    base = pipeline.settings()
    records, n_wf = [], 0
    for config in grid.configurations:
        settings = configuration_settings(grid, config, base)
        folds = walk_forward_plan(
            to_utc(pipeline.start),
            to_utc(pipeline.end),
            settings.walk_forward,
            timeframe=pipeline.timeframe,
            training_history_days=settings.data.training_history_days,
        )
        n_wf = max(n_wf, len(folds))
        records.append(
            {
                "name": config.name,
                "partition": configuration_partition(grid.name, config.name),
                "params": dict(config.params),
                "fingerprint": training_fingerprint(settings, search_spec(grid)),
            }
        )
    n_cpcv = comb(grid.n_groups, grid.k_test)
    return [r["partition"] for r in records], split_keys(n_wf, n_cpcv), records


def finished_partitions(instance, layout, records: list[dict]) -> set[str]:
    """(configuration, split) partitions materialized whose stored result still matches the
    configuration's training fingerprint (a changed window or data set retrains)."""
    import dagster as dg

    from cryptoml_pipeline.defs.partitions import (
        CONFIGURATION_DIM,
        SPLIT_DIM,
        experiment_partitions,
    )

    done = set()
    by_partition = {r["partition"]: r for r in records}
    materialized = instance.get_materialized_partitions(dg.AssetKey("experiment_predictions"))
    for key in materialized:
        mk = experiment_partitions.get_partition_key_from_str(str(key))
        dims = mk.keys_by_dimension
        record = by_partition.get(dims[CONFIGURATION_DIM])
        if record and layout.read_split(record["fingerprint"], dims[SPLIT_DIM]) is not None:
            done.add(str(mk))
    return done


def cmd_experiment(args: argparse.Namespace) -> int:
    import dagster as dg

    from cryptoml_pipeline.definitions import build_definitions
    from cryptoml_pipeline.defs.assets.experiments import EXPERIMENT_TAG
    from cryptoml_pipeline.defs.partitions import (
        CONFIGURATION_DIM,
        EXPERIMENT_CONFIGURATIONS,
        EXPERIMENT_SPLITS,
        SPLIT_DIM,
    )
    from cryptoml_pipeline.defs.resources import ExperimentResource
    from cryptoml_pipeline.experiments.layout import SweepLayout, atomic_write_text

    started = time.monotonic()
    for name, default in (("config", None), ("holdout_start", None), ("allow_cpu", False)):
        setattr(args, name, getattr(args, name, default))
    pipeline, market = prepare_run(args)
    grid_path = Path(args.grid).resolve()
    try:
        grid = validate_grid(grid_path, pipeline)
    except ValueError as exc:
        raise InputError(f"{grid_path}: {one_line(exc)}") from None
    config_keys, splits, records = sweep_plan(grid, pipeline)
    layout = SweepLayout.of(pipeline.output_dir, grid.name)
    layout.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.root / "grid.yaml", grid_path.read_text())
    layout.write_configurations(records)
    print(
        f"[cryptoml] experiment {grid.name}: {len(config_keys)} configurations x "
        f"{len(splits)} splits ({sum(s.startswith('wf') for s in splits)} walk-forward, "
        f"CPCV N={grid.n_groups} k={grid.k_test}); window=[{pipeline.start}, {pipeline.end}) "
        f"source={market.kind}",
        file=sys.stderr,
    )
    ensure_dagster_home()
    logging.getLogger("cryptoml_pipeline").propagate = False
    defs = build_definitions(
        pipeline, market, experiment=ExperimentResource(grid_file=str(grid_path))
    )

    with dg.DagsterInstance.get() as instance:

        def execute(job: str, partition_key=None, tags=None) -> None:
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance,
                partition_key=partition_key,
                run_config=run_config(),
                tags=tags or {},
                raise_on_error=False,
            )
            if not result.success:
                where = f" ({partition_key})" if partition_key else ""
                raise RuntimeError(
                    f"{job}{where} failed: {first_error(result)} (run {result.run_id})"
                )

        execute("prepare_job")
        existing = set(instance.get_dynamic_partitions(EXPERIMENT_CONFIGURATIONS))
        instance.add_dynamic_partitions(
            EXPERIMENT_CONFIGURATIONS, [k for k in config_keys if k not in existing]
        )
        existing = set(instance.get_dynamic_partitions(EXPERIMENT_SPLITS))
        instance.add_dynamic_partitions(EXPERIMENT_SPLITS, [k for k in splits if k not in existing])
        done = finished_partitions(instance, layout, records)
        todo = [
            dg.MultiPartitionKey({CONFIGURATION_DIM: c, SPLIT_DIM: s})
            for c in config_keys
            for s in splits
        ]
        todo = [k for k in todo if str(k) not in done]
        total = len(config_keys) * len(splits)
        print(
            f"[cryptoml] {total - len(todo)}/{total} partitions already finished; "
            f"running {len(todo)}",
            file=sys.stderr,
        )
        for i, key in enumerate(todo, 1):
            t0 = time.monotonic()
            execute("experiment_job", key, {EXPERIMENT_TAG: grid.name})
            dims = key.keys_by_dimension
            print(
                f"[cryptoml] {i}/{len(todo)} {dims[CONFIGURATION_DIM]} {dims[SPLIT_DIM]} "
                f"({time.monotonic() - t0:.1f} s, {time.monotonic() - started:.0f} s total)",
                file=sys.stderr,
            )
        execute("experiment_leaderboard_job")
    board = json.loads((layout.root / "leaderboard.json").read_text())
    summary = board["summary"]
    print(json.dumps(summary, indent=2, default=str))
    print(f"leaderboard: {layout.root / 'leaderboard.html'}")
    if layout.selected.is_file():
        print(f"selected: {layout.selected} (cryptoml run --config {layout.selected})")
    print(f"wall time: {time.monotonic() - started:.0f} s")
    return 0
