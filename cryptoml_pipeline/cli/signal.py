"""``cryptoml signal``: the deployed model's signal for the last closed bar, as JSON on stdout.

Every setting (universe, timeframe, features, costs, risk) comes from the model's manifest. The
data source is the run's: the parquet data directory (``--data-dir``, else the README's rule),
or, for a model trained on the synthetic market, that market regenerated exactly as the run did
(``MarketDataResource`` with the run's settings; seed and signal strength are the resource's).

Output: one JSON object for one ``--symbol``; a JSON list (in the order given) for several
comma-separated symbols or none (= every traded symbol). Logs go to stderr. Nothing deployed:
one line naming the latest candidate and why it was not deployed (exit 2); ``--candidate``
serves that candidate, saying on stderr that it is not deployed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from cryptoml_pipeline.cli.args import add_data_dir, add_output_dir
from cryptoml_pipeline.cli.args import parse_symbols as _parse_symbols
from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.live.loader import ServedModel, load_served
from cryptoml_pipeline.live.market_tail import check_symbols, store_tail
from cryptoml_pipeline.live.signal import signals
from cryptoml_pipeline.locations import resolve_data_location
from cryptoml_pipeline.market.store import ParquetStore

logger = logging.getLogger(__name__)
SIDES = {"long": 1, "short": -1, "flat": 0}


def add_parser(sub: argparse._SubParsersAction) -> None:
    sig = sub.add_parser("signal", help="print the deployed model's latest signal as JSON")
    sig.add_argument(
        "--symbol",
        help="ccxt symbol, e.g. BTC/USDT (one JSON object); comma-separated for several, or "
        "omitted for every traded symbol (a JSON list)",
    )
    add_data_dir(sig)
    add_output_dir(sig, help="where `cryptoml run` deployed")
    sig.add_argument(
        "--candidate",
        action="store_true",
        help="serve the latest registry candidate (not deployed for trading)",
    )
    sig.add_argument(
        "--position",
        default="flat",
        help="the held position the decision reviews: flat|long|short for every symbol, or "
        "SYMBOL=SIDE,... (default flat)",
    )
    sig.add_argument("--equity", type=float, help="account equity for sizing (default: costs)")


def parse_symbols(raw: str | None) -> list[str]:
    """``--symbol``: none (= every traded symbol), one or several, comma-separated."""
    return _parse_symbols(raw, required=False)


def parse_positions(raw: str, symbols: list[str]) -> dict[str, int]:
    raw = raw.strip()
    if raw in SIDES:
        return dict.fromkeys(symbols, SIDES[raw])
    out = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        symbol, _, side = part.partition("=")
        if side not in SIDES:
            raise InputError(f"--position {part!r}: expected flat|long|short or SYMBOL=SIDE")
        out[symbol.strip()] = SIDES[side]
    return out


def market_frames(
    served: ServedModel, data_dir: str | None, symbols: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candles and funding from the run's data source (module docstring)."""
    if served.synthetic:
        from cryptoml_pipeline.defs.resources import MarketDataResource

        settings = served.settings
        if settings.data.end is None and served.data_end is not None:
            data = settings.data.model_copy(update={"end": served.data_end.to_pydatetime()})
            settings = settings.model_copy(update={"data": data})
        market = MarketDataResource(kind="synthetic").load(settings)
        return market.candles, market.funding
    location = resolve_data_location(data_dir)
    if location.kind != "parquet" or location.path is None or not location.path.is_dir():
        raise InputError(
            f"model {served.version} was trained on parquet data; no data directory found "
            f"({location.reason}): pass --data-dir"
        )
    return store_tail(ParquetStore(location.path), served, symbols)


def cmd_signal(args: argparse.Namespace) -> int:
    symbols = parse_symbols(args.symbol)
    served = load_served(Path(args.output_dir), candidate=args.candidate)
    if not served.deployed:
        print(
            f"cryptoml: warning: model {served.version} is a candidate, NOT deployed for trading "
            f"({served.reason or 'no reason recorded'})",
            file=sys.stderr,
        )
    wanted = check_symbols(served, symbols)
    positions = parse_positions(args.position, wanted)
    candles, funding = market_frames(served, args.data_dir, wanted)
    records = signals(served, candles, funding, wanted, position=positions, equity=args.equity)
    body = records[0] if len(symbols) == 1 else records
    print(json.dumps(body, allow_nan=False))
    return 0
