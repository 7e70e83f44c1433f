"""``cryptoml run``: materialize the whole asset graph (prepare -> every fold -> evaluate, the
driver of :mod:`cryptoml_pipeline.defs.chain`) and print the KPIs."""

from __future__ import annotations

import argparse
import json
import logging
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
    ensure_dagster_home,
    prepare_run,
)
from cryptoml_pipeline.cli.args import first_error as _first_error
from cryptoml_pipeline.cli.args import run_config as _run_config


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
