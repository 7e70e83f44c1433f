"""``cryptoml`` command line: ``run`` (the main job end-to-end), ``data`` (download via ccxt),
``paper`` (paper trading), ``signal`` (the deployed model's latest signal), ``dashboard``,
``experiment`` (configuration sweeps), ``live`` (the live service with its HTTP API) and
``parity`` (a paper/live account replayed through the backtest).

One module per subcommand (``add_parser`` + ``cmd_<name>``), all sharing :mod:`.args`. Bad
arguments print ONE line on stderr naming the problem and exit with code 2 (no traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys

from cryptoml_pipeline.cli import (
    dashboard,
    data,
    experiment,
    live,
    paper,
    parity,
    run,
    signal,
)
from cryptoml_pipeline.cli.args import EXIT_BAD_INPUT, OneLineParser
from cryptoml_pipeline.errors import DataValidationError, InputError

SUBCOMMANDS = {
    "run": (run.add_parser, run.cmd_run),
    "data": (data.add_parser, data.cmd_data),
    "paper": (paper.add_parser, paper.cmd_paper),
    "dashboard": (dashboard.add_parser, dashboard.cmd_dashboard),
    "signal": (signal.add_parser, signal.cmd_signal),
    "experiment": (experiment.add_parser, experiment.cmd_experiment),
    "live": (live.add_parser, live.cmd_live),
    "parity": (parity.add_parser, parity.cmd_parity),
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="cryptoml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for add_parser, _ in SUBCOMMANDS.values():
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # INFO progress of runs is printed by Dagster's managed loggers (dagster.yaml); the root
    # handler only adds warnings from outside runs, so nothing is printed twice
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)  # a handler level: INFO records propagating from runs stop
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command][1](args)
    except (InputError, DataValidationError) as exc:  # bad arguments or bad data: one line
        print(f"cryptoml: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RuntimeError as exc:
        print(f"cryptoml: failed: {exc}", file=sys.stderr)
        return 1


__all__ = ["EXIT_BAD_INPUT", "build_parser", "main"]
