"""``cryptoml run``: materialize the whole asset graph (prepare -> every fold -> evaluate, the
driver of :mod:`cryptoml_pipeline.defs.chain`) and print the KPIs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from cryptoml_pipeline.cli.args import (
    add_data_dir,
    add_output_dir,
    add_profile,
    add_symbols,
    add_timeframe,
    add_universe,
    one_line,
    parse_symbols,
)
from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.locations import REPO_ROOT, has_market_data, resolve_data_location
from cryptoml_pipeline.timing import to_utc

DEFAULT_DAGSTER_YAML = """telemetry:
  enabled: false
python_logs:
  managed_python_loggers: [cryptoml_pipeline]
  python_log_level: INFO
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="materialize the whole asset graph and print the KPIs")
    add_data_dir(run)
    add_symbols(
        run,
        help="traded symbols, each as its USDT-M perpetual, comma-separated "
        "(default: every perpetual with funding in the data)",
    )
    add_universe(run)
    run.add_argument("--config", help="YAML of setting overrides, e.g. configs/spec.yaml")
    run.add_argument(
        "--holdout-start",
        help="UTC date: the report splits into 'development' and 'held_back' periods there",
    )
    add_timeframe(run)
    run.add_argument("--start", help="UTC date/time, inclusive (default: end - 730 days)")
    run.add_argument("--end", help="UTC date/time, exclusive (default: last common bar + 1 bar)")
    add_profile(run)
    add_output_dir(run)
    run.add_argument("--synthetic", action="store_true", help="force the synthetic market")
    run.add_argument("--allow-cpu", action="store_true", help="let the 'full' profile run on CPU")


def ensure_dagster_home() -> Path:
    """``$DAGSTER_HOME`` (default ``./.dagster``) with a ``dagster.yaml`` (copied from the project's
    when missing), so runs persist and show in ``make ui``."""
    home = Path(os.environ.get("DAGSTER_HOME", ".dagster")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    target = home / "dagster.yaml"
    if not target.exists():
        project = REPO_ROOT / "dagster.yaml"
        target.write_text(project.read_text() if project.exists() else DEFAULT_DAGSTER_YAML)
    return home


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def prepare_run(args: argparse.Namespace):
    """Validate arguments into resources; raises InputError naming the problem."""
    from cryptoml_pipeline.defs.resources import MarketDataResource, PipelineResource

    symbols = parse_symbols(args.symbols) if args.symbols else None
    universe = parse_symbols(args.universe) if args.universe else None
    if args.profile == "full" and not args.allow_cpu and not _cuda_available():
        raise InputError("profile 'full' needs CUDA (no GPU found); pass --allow-cpu to force it")
    if args.synthetic:
        market = MarketDataResource(kind="synthetic")
    else:
        location = resolve_data_location(args.data_dir)
        if location.kind == "parquet":
            assert location.path is not None
            if not location.path.is_dir():
                raise InputError(
                    f"data directory {location.path} does not exist ({location.reason})"
                )
            if not has_market_data(location.path):
                raise InputError(f"data directory {location.path} holds no market/*.parquet files")
            market = MarketDataResource(kind="parquet", data_dir=str(location.path.resolve()))
        else:
            market = MarketDataResource(kind="synthetic")
    config = str(Path(args.config).resolve()) if args.config else None
    pipeline = PipelineResource(
        profile=args.profile,
        symbols=symbols,
        universe=universe,
        timeframe=args.timeframe,
        start=args.start,
        end=args.end,
        output_dir=str(Path(args.output_dir).resolve()),
        config_file=config,
        holdout_start=args.holdout_start,
    )
    try:
        settings = pipeline.settings()
        if args.holdout_start:
            to_utc(args.holdout_start)
    except ValueError as exc:  # unparsable date or invalid setting
        raise InputError(f"invalid argument: {one_line(exc)}") from None
    resolved = market.resolved(settings)
    start, end = resolved["start"], resolved["end"]
    from cryptoml_pipeline.modeling.folds import walk_forward_plan

    walk_forward_plan(  # >= 1 fold, or one line and exit 2
        start,
        end,
        settings.walk_forward,
        timeframe=args.timeframe,
        training_history_days=settings.data.training_history_days,
    )
    # a new resource, not ``model_copy``: Dagster rebuilds a resource inside a run from the
    # values it was constructed with, so copied-in fields would be lost there
    fields = {name: getattr(pipeline, name) for name in type(pipeline).model_fields}
    pipeline = type(pipeline)(
        **fields
        | {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "symbols": list(resolved["symbols"]),
            "universe": list(resolved["universe"]),
        }
    )
    return pipeline, market


def _run_config() -> dict:
    return {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def _first_error(result) -> str:
    """The first failed step and its error message, on one line."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:  # the user code's own error
                error = error.cause
            message = (error.message if error else "unknown error").strip().splitlines()
            return f"step {event.step_key}: {message[-1] if message else 'unknown error'}"
    return "the run failed"


def execute_pipeline(pipeline, market) -> dict:
    """Run prepare -> every fold partition of its plan -> evaluate on the persistent instance, in
    process, with the driver the retrain sensors use (:mod:`cryptoml_pipeline.defs.chain`)."""
    import dagster as dg

    from cryptoml_pipeline.definitions import build_definitions
    from cryptoml_pipeline.defs.chain import run_chain

    ensure_dagster_home()
    # during runs Dagster's managed logger prints our records; don't print them twice
    logging.getLogger("cryptoml_pipeline").propagate = False
    defs = build_definitions(pipeline, market)
    with dg.DagsterInstance.get() as instance:

        def run(job: str, partition_key: str | None, tags: dict[str, str]) -> str:
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance,
                partition_key=partition_key,
                run_config=_run_config(),
                tags=tags,
                raise_on_error=False,
            )
            if not result.success:
                where = f" (fold {partition_key})" if partition_key else ""
                raise RuntimeError(
                    f"{job}{where} failed: {_first_error(result)} (run {result.run_id}; "
                    "details in `make ui`)"
                )
            return result.run_id

        def on_fold(i: int, n: int, key: str) -> None:
            print(f"[cryptoml] training fold {i}/{n}: {key}", file=sys.stderr)

        run_chain(instance, run, on_fold=on_fold)
    report_path = Path(pipeline.output_dir) / "reports" / "report.json"
    return json.loads(report_path.read_text())


def kpi_table(report: dict) -> str:
    from cryptoml_pipeline.reporting.html import KPI_HEADER, kpi_rows

    head = f"{KPI_HEADER[0]:<26}" + "".join(f"{h:>12}" for h in KPI_HEADER[1:4]) + "   target"
    lines = [head, "-" * len(head)]
    for label, *values, target in kpi_rows(report):
        lines.append(f"{label:<26}" + "".join(f"{v:>12}" for v in values) + f"   {target}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    pipeline, market = prepare_run(args)
    print(
        f"[cryptoml] profile={pipeline.profile} symbols={','.join(pipeline.symbols or [])} "
        f"universe={len(pipeline.universe or [])} symbols "
        f"window=[{pipeline.start}, {pipeline.end}) source={market.kind} "
        f"{market.data_dir or ''}",
        file=sys.stderr,
    )
    report = execute_pipeline(pipeline, market)
    data = report["data"]
    print()
    print(report["title"])
    print(
        f"data: {data['source']} ({data['price_source']}), {', '.join(data['symbols'])} "
        f"{data['timeframe']}, [{data['start']}, {data['end']})"
    )
    print(kpi_table(report))
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    dep = report["deployment"]
    print(f"deployment: deployed={dep['deployed']} version={dep['version']} ({dep['reason']})")
    print(f"report: {Path(pipeline.output_dir) / 'reports' / 'report.html'}")
    print(f"wall time: {time.monotonic() - started:.0f} s")
    return 0
