"""The arguments every ``cryptoml`` subcommand shares, the parser that reports a bad one on ONE
line and exits with code 2 (no traceback), and the shared step from arguments to the run's
resources and local Dagster instance (:func:`prepare_run`, :func:`ensure_dagster_home`).
Imports nothing of the subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.locations import REPO_ROOT, has_market_data, resolve_data_location
from cryptoml_pipeline.settings import PROFILES
from cryptoml_pipeline.timing import to_utc

EXIT_BAD_INPUT = 2
DATA_DIR_HELP = "parquet data directory (default: see README)"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        print(f"cryptoml: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def add_data_dir(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--data-dir", default=default, help=None if default else DATA_DIR_HELP)


def add_output_dir(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--output-dir", default="output", help=help)


def add_symbols(
    parser: argparse.ArgumentParser, default: str | None = None, help: str | None = None
) -> None:
    parser.add_argument("--symbols", default=default, help=help)


def add_universe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--universe",
        help="symbols the models train on, pooled (traded symbols always included; "
        "default: every spot series with data in the window)",
    )


def add_timeframe(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--timeframe", default="1h", help=help)


def add_profile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="demo", choices=PROFILES)


def parse_symbols(raw: str | None, *, required: bool = True) -> list[str]:
    """Comma-separated ccxt symbols; empty is an error unless not ``required``."""
    symbols = [s.strip() for s in (raw or "").split(",") if s.strip()]
    if required and not symbols:
        raise InputError("no symbols selected (--symbols is empty)")
    bad = [s for s in symbols if "/" not in s]
    if bad:
        raise InputError(f"symbol {bad[0]!r} is not a ccxt symbol like BTC/USDT")
    return symbols


def one_line(exc: Exception) -> str:
    """A pydantic error as one line: ``loc: message``."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            loc = ".".join(str(p) for p in first.get("loc", ()))
            return f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
        except (IndexError, TypeError, KeyError):
            pass
    return str(exc).splitlines()[0]


DEFAULT_DAGSTER_YAML = """telemetry:
  enabled: false
python_logs:
  managed_python_loggers: [cryptoml_pipeline]
  python_log_level: INFO
"""


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


def run_config() -> dict:
    return {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def first_error(result) -> str:
    """The first failed step and its error message, on one line."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None and error.cause is not None:  # the user code's own error
                error = error.cause
            message = (error.message if error else "unknown error").strip().splitlines()
            return f"step {event.step_key}: {message[-1] if message else 'unknown error'}"
    return "the run failed"
