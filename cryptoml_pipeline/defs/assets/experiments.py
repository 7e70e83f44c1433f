"""Sweeps as Dagster partitions (``cryptoml experiment --grid FILE``).

``experiment_predictions[configuration|split]`` trains the grid's model for one configuration on
one split (a walk-forward fold ``wf-NN`` or a combinatorial purged CV split ``cpcv-NN``) and
stores its test predictions; any one configuration or split can be rerun from the UI. It reads
the shared upstream assets (``ohlcv``, ``funding``, ``feature_table``, ``dataset_info``) that
``prepare_job`` computed once for every configuration. Configurations that differ only in
decision settings reuse one training (same training fingerprint; the metadata says so).

``experiment_leaderboard`` scores every configuration (walk-forward and every CPCV path, costs
on), computes PBO and the deflated Sharpe of the pick over all of them, and writes
``leaderboard.json``, ``leaderboard.html`` and ``selected.yaml``.
"""

import time
from dataclasses import replace
from typing import Any

import dagster as dg
import pandas as pd
import yaml

from cryptoml_pipeline.defs.partitions import CONFIGURATION_DIM, SPLIT_DIM, experiment_partitions
from cryptoml_pipeline.defs.resources import (
    DatabaseResource,
    ExperimentResource,
    PipelineResource,
)
from cryptoml_pipeline.experiments.grid import configuration_settings, grid_to_selected_yaml
from cryptoml_pipeline.experiments.layout import (
    SweepLayout,
    atomic_write_text,
    configuration_partition,
)
from cryptoml_pipeline.experiments.leaderboard import (
    ConfigResult,
    build_leaderboard,
    leaderboard_html,
    write_leaderboard,
)
from cryptoml_pipeline.experiments.optuna_storage import is_postgresql, study_storage
from cryptoml_pipeline.experiments.sweep import (
    SweepData,
    combinatorial_splits,
    families_turned_off,
    feature_set_view,
    score_configuration,
    split_keys,
    sweep_labels,
    train_split,
    training_fingerprint,
    walk_forward_folds,
)
from cryptoml_pipeline.experiments.tuning import tune_split
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import to_utc

GROUP = "experiments"
EXPERIMENT_TAG = "cryptoml/experiment"


def sweep_data(
    ohlcv: pd.DataFrame, funding: pd.DataFrame, feature_table: pd.DataFrame, dataset_info: dict
) -> SweepData:
    return SweepData(
        candles=ohlcv,
        funding=funding,
        features=feature_table,
        traded=tuple(dataset_info["symbols"]),
        start=to_utc(dataset_info["start"]),
        end=to_utc(dataset_info["end"]),
        timeframe=dataset_info["timeframe"],
    )


def search_spec(grid) -> dict[str, Any] | None:
    """The grid's Optuna search as part of a training fingerprint (None without one)."""
    if grid.optuna_trials <= 0:
        return None
    space = {k: repr(v) for k, v in sorted(grid.optuna_space.items())}
    return {"n_trials": grid.optuna_trials, "space": space}


def configuration_of(grid, partition: str):
    for config in grid.configurations:
        if configuration_partition(grid.name, config.name) == partition:
            return config
    raise dg.Failure(
        f"configuration partition {partition!r} is not in grid {grid.name!r} "
        f"({grid.path}); run `cryptoml experiment --grid` with that grid"
    )


@dg.asset(group_name=GROUP, partitions_def=experiment_partitions)
def experiment_predictions(
    context: dg.AssetExecutionContext,
    ohlcv: pd.DataFrame,
    funding: pd.DataFrame,
    feature_table: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
    pipeline: PipelineResource,
    experiment: ExperimentResource,
    database: DatabaseResource,
) -> dg.MaterializeResult:
    """One configuration's model trained on one split's purged training rows; its test-window
    predictions (traded symbols, the prediction schema) under
    ``experiments/<grid>/trainings/<fingerprint>/<split>.parquet``. A training that fails on its
    data (e.g. too few rows) is recorded with its error and shows in the leaderboard."""
    keys = context.partition_key.keys_by_dimension
    base = run_settings
    grid = experiment.grid(base)
    config = configuration_of(grid, keys[CONFIGURATION_DIM])
    split = keys[SPLIT_DIM]
    settings = configuration_settings(grid, config, base)
    layout = SweepLayout.of(pipeline.output_dir, grid.name)
    fingerprint = training_fingerprint(settings, search_spec(grid))
    meta: dict[str, Any] = {"configuration": config.name, "split": split}
    meta["fingerprint"] = fingerprint
    existing = layout.read_split(fingerprint, split)
    if isinstance(existing, pd.DataFrame):
        context.log.info(
            "%s %s: reusing the training of fingerprint %s (same training settings)",
            config.name,
            split,
            fingerprint,
        )
        return dg.MaterializeResult(metadata=meta | {"status": "reused", "rows": len(existing)})
    data = sweep_data(ohlcv, funding, feature_table, dataset_info)
    # its feature set: the shared table without the families it turns off
    off = families_turned_off(base.features, settings.features)
    data = replace(data, features=feature_set_view(data.features, off))
    meta["families_off"] = ", ".join(off) or "none"
    started = time.perf_counter()
    searches: list[dict[str, Any]] = []
    try:
        labels = sweep_labels(settings, data)
        tuner = None
        if grid.optuna_trials > 0:
            storage = study_storage(
                database.url if is_postgresql(database.url) else None, layout.root
            )

            def tuner(s, fold, masks):
                tuned, record = tune_split(
                    s,
                    data.features,
                    labels,
                    fold,
                    masks,
                    data.timeframe,
                    space=dict(grid.optuna_space),
                    n_trials=grid.optuna_trials,
                    storage=storage,
                    study_name=f"{grid.name}.{fingerprint}.{split}",
                )
                searches.append(record)
                return tuned

        preds = train_split(
            settings,
            data,
            labels,
            split,
            n_groups=grid.n_groups,
            k_test=grid.k_test,
            tuner=tuner,
        )
    except Exception as exc:  # recorded: the leaderboard lists the configuration's error
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        layout.write_error(fingerprint, split, message)
        context.log.warning("%s %s failed: %s", config.name, split, message)
        return dg.MaterializeResult(metadata=meta | {"status": "failed", "error": message})
    path = layout.write_predictions(fingerprint, split, preds)
    return dg.MaterializeResult(
        metadata=meta
        | {
            "status": "trained",
            "rows": len(preds),
            "seconds": round(time.perf_counter() - started, 2),
            "path": dg.MetadataValue.path(str(path)),
            **({"optuna": dg.MetadataValue.json(searches[0])} if searches else {}),
        }
    )


def configuration_results(grid, base, data: SweepData, layout: SweepLayout) -> list[ConfigResult]:
    """Every configuration of the grid scored from its stored splits (failed or incomplete ones
    as rows with their error)."""
    results = []
    for config in grid.configurations:
        settings = configuration_settings(grid, config, base)
        fingerprint = training_fingerprint(settings, search_spec(grid))
        n_wf = len(walk_forward_folds(settings, data))
        n_cpcv = len(combinatorial_splits(settings, data, grid.n_groups, grid.k_test))
        preds, errors, missing = {}, [], []
        for key in split_keys(n_wf, n_cpcv):
            value = layout.read_split(fingerprint, key)
            if value is None:
                missing.append(key)
            elif isinstance(value, str):
                errors.append(f"{key}: {value}")
            else:
                preds[key] = value
        if errors or missing:
            error = "; ".join(errors[:3]) or f"splits not run: {', '.join(missing)}"
            results.append(ConfigResult(config.name, dict(config.params), "failed", error))
            continue
        try:
            results.append(
                score_configuration(
                    config.name,
                    dict(config.params),
                    settings,
                    data,
                    preds,
                    n_groups=grid.n_groups,
                    k_test=grid.k_test,
                )
            )
        except Exception as exc:  # a configuration that cannot be scored stays in the table
            error = f"scoring: {type(exc).__name__}: {exc}".splitlines()[0]
            results.append(ConfigResult(config.name, dict(config.params), "failed", error))
    return results


def selected_yaml(grid, leaderboard: dict[str, Any], leaderboard_path: str) -> str | None:
    """The selected configuration as a ``cryptoml run --config`` file: its settings, the
    sweep's trial count and trial Sharpes for the run's deflated Sharpe, and the provenance the
    registry records."""
    summary = leaderboard["summary"]
    name = summary.get("selected")
    config = next((c for c in grid.configurations if c.name == name), None)
    if config is None:
        return None
    text = grid_to_selected_yaml(grid, config)
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    overrides = yaml.safe_load(text) or {}
    sharpes = [
        r["walk_forward_net_sharpe"]
        for r in leaderboard["configurations"]
        if r.get("status") == "ok" and r.get("walk_forward_net_sharpe") is not None
    ]
    overrides.setdefault("controls", {}).update(
        {"n_trials": int(summary["dsr_trials"]), "trial_sharpes": [float(s) for s in sharpes]}
    )
    overrides["experiment"] = {
        "grid": grid.name,
        "configuration": name,
        "selection_rule": summary["selection_rule"],
        "leaderboard": leaderboard_path,
        "n_configurations": int(summary["n_configurations"]),
        "pbo": summary.get("pbo"),
        "dsr": summary.get("dsr"),
        "dsr_trials": int(summary["dsr_trials"]),
    }
    return header + yaml.safe_dump(overrides, sort_keys=True)


@dg.asset(group_name=GROUP, deps=[experiment_predictions])
def experiment_leaderboard(
    context: dg.AssetExecutionContext,
    ohlcv: pd.DataFrame,
    funding: pd.DataFrame,
    feature_table: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
    pipeline: PipelineResource,
    experiment: ExperimentResource,
) -> dict[str, Any]:
    """Every configuration of the grid: walk-forward net Sharpe, rank IC and t, turnover,
    break-even fee, CPCV path Sharpes; PBO across configurations and the deflated Sharpe of the
    pick with every configuration counted. Writes ``leaderboard.json`` / ``.html`` and
    ``selected.yaml`` (run it with ``cryptoml run --config``)."""
    base = run_settings
    grid = experiment.grid(base)
    layout = SweepLayout.of(pipeline.output_dir, grid.name)
    data = sweep_data(ohlcv, funding, feature_table, dataset_info)
    results = configuration_results(grid, base, data, layout)
    board = build_leaderboard(
        grid.name,
        results,
        selection_rule=grid.selection_rule,
        source={
            "grid_file": str(grid.path),
            "model": grid.model,
            "cpcv": {"n_groups": grid.n_groups, "k_test": grid.k_test},
            "data": {
                "symbols": list(data.traded),
                "universe": dataset_info.get("universe"),
                "start": data.start.isoformat(),
                "end": data.end.isoformat(),
                "source": dataset_info.get("source"),
                "synthetic": dataset_info.get("synthetic"),
            },
        },
    )
    json_path, html_path = write_leaderboard(layout.root, board, leaderboard_html(board))
    selected = selected_yaml(grid, board, str(json_path))
    if selected is not None:
        atomic_write_text(layout.selected, selected)
    summary = board["summary"]
    rows = [
        dg.TableRecord(
            {
                "configuration": r["name"],
                "status": r["status"],
                "wf_net_sharpe": _f(r.get("walk_forward_net_sharpe")),
                "rank_ic": _f(r.get("rank_ic")),
                "rank_ic_t": _f(r.get("rank_ic_t")),
                "cpcv_median_sharpe": _f(r.get("cpcv_median_net_sharpe")),
                "break_even_fee": _f(r.get("break_even_taker_fee")),
            }
        )
        for r in board["configurations"]
    ]
    context.add_output_metadata(
        {
            "selected": str(summary.get("selected")),
            "pbo": _f(summary.get("pbo")),
            "dsr": _f(summary.get("dsr")),
            "dsr_trials": int(summary.get("dsr_trials") or 0),
            "n_configurations": int(summary["n_configurations"]),
            "leaderboard": dg.MetadataValue.path(str(json_path)),
            "html": dg.MetadataValue.path(str(html_path)),
            "configurations": dg.MetadataValue.table(
                rows,
                schema=dg.TableSchema(
                    columns=[
                        dg.TableColumn("configuration", "string"),
                        dg.TableColumn("status", "string"),
                        *(
                            dg.TableColumn(c, "float")
                            for c in (
                                "wf_net_sharpe",
                                "rank_ic",
                                "rank_ic_t",
                                "cpcv_median_sharpe",
                                "break_even_fee",
                            )
                        ),
                    ]
                ),
            ),
        }
    )
    return board


def _f(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
