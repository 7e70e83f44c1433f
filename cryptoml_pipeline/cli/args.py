"""The arguments every ``cryptoml`` subcommand shares, and the parser that reports a bad one on
ONE line and exits with code 2 (no traceback). Imports nothing of the subcommands."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.settings import PROFILES

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
