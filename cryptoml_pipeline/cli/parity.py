"""``cryptoml parity``: a paper / live account's bars replayed through the backtest; one JSON
object on stdout, exit 0 when equal, 1 when not (see docs/live.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cryptoml_pipeline.cli.args import add_output_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("parity", help="replay a paper/live account's bars through the backtest")
    q.add_argument("--run-name", required=True)
    add_output_dir(q, help="the output directory holding the account's database")


def cmd_parity(args: argparse.Namespace) -> int:
    from cryptoml_pipeline.live.parity import parity

    result, equal = parity(Path(args.output_dir), args.run_name)
    print(json.dumps(result, allow_nan=False))
    print(f"[parity] {args.run_name}: {'EQUAL' if equal else 'NOT EQUAL'}", file=sys.stderr)
    return 0 if equal else 1
