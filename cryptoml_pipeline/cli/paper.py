"""``cryptoml paper``: paper trading with the deployed model (replay of stored bars, or live
ccxt data with network), executed by the backtest's own simulator. The model comes through the
one loader (``live.loader``): settings, universe, traded symbols and features from its manifest;
``--symbols`` may only narrow the traded symbols and ``--timeframe`` must match (otherwise one
line, exit 2). Killed and restarted, it resumes at the first unprocessed bar (the account's
bars are in the database)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from cryptoml_pipeline.cli.args import add_data_dir, add_output_dir, parse_symbols
from cryptoml_pipeline.errors import InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("paper", help="paper-trade the deployed model bar by bar (replay or live)")
    add_output_dir(p, help="where the registry database lives")
    add_data_dir(p)
    p.add_argument("--symbols", help="trade only these of the model's traded symbols")
    p.add_argument("--timeframe", help="must be the model's (from its manifest)")
    p.add_argument("--profile", help=argparse.SUPPRESS)  # refused: the settings are the model's
    p.add_argument("--start", help="replay: first bar (UTC); live: ignored")
    p.add_argument("--end", help="replay: end, exclusive (default: start + 7 days)")
    p.add_argument("--run-name", default=None, help="paper account name (default: settings)")
    p.add_argument("--live", action="store_true", help="poll live ccxt bars (needs network)")
    p.add_argument("--bar-delay", type=float, default=0.0, help="replay: seconds between bars")
    p.add_argument("--max-bars", type=int, default=None, help="stop after N bars this session")
    p.add_argument(
        "--candidate",
        action="store_true",
        help="paper-trade the latest registry candidate that was NOT deployed (says so)",
    )


def _utc(value: str, what: str) -> pd.Timestamp:
    try:
        return (
            pd.Timestamp(value, tz="UTC")
            if pd.Timestamp(value).tz is None
            else pd.Timestamp(value).tz_convert("UTC")
        )
    except ValueError as exc:
        raise InputError(f"{what} {value!r} is not a date/time") from exc


def cmd_paper(args: argparse.Namespace) -> int:
    from cryptoml_pipeline.live.loader import announce, check_timeframe, load_served, narrow_symbols
    from cryptoml_pipeline.live.paper import PaperTrader, replay
    from cryptoml_pipeline.live.paper_feed import build_feed, load_market
    from cryptoml_pipeline.locations import resolve_data_location
    from cryptoml_pipeline.registry.db import open_database
    from cryptoml_pipeline.timing import timeframe_to_timedelta

    if args.profile:
        raise InputError(
            "--profile: paper trading takes its settings from the model's manifest (drop it)"
        )
    served = load_served(Path(args.output_dir), candidate=args.candidate)
    warning = announce(served, "paper")
    if warning:
        print(warning, file=sys.stderr)
    check_timeframe(served, args.timeframe)
    symbols = narrow_symbols(served, parse_symbols(args.symbols, required=False))
    settings, tf = served.settings, served.timeframe
    location = resolve_data_location(args.data_dir)
    if location.path is None:
        raise InputError("paper trading needs a data directory (no synthetic paper trading)")
    engine = open_database(Path(args.output_dir))
    run_name = args.run_name or settings.paper.run_name
    trader = PaperTrader(
        engine,
        run_name=run_name,
        model_version=served.version,
        settings=settings,
        timeframe=tf,
        initial_equity=settings.paper.initial_equity,
    )
    step = timeframe_to_timedelta(tf)

    def feed(start: pd.Timestamp, end: pd.Timestamp, live: bool):
        market = load_market(
            Path(location.path),
            settings,
            start,
            end,
            live=live,
            universe=served.universe,
            timeframe=tf,
        )
        return build_feed(market, served.model, settings, start, end, symbols=symbols, timeframe=tf)

    if args.live:
        while True:  # Ctrl-C / SIGTERM stops it; the cursor is in the database
            end = pd.Timestamp.now(tz="UTC").floor(step)  # bars before it are closed
            start = trader.last_bar + step if trader.last_bar is not None else end - step
            if start < end:
                replay(trader, feed(start, end, True).inputs)
                print(f"[paper] {run_name}: bar {trader.last_bar} equity {trader.equity():.2f}")
            time.sleep(settings.paper.poll_seconds)
    if not args.start:
        raise InputError("replay needs --start (or pass --live)")
    start = _utc(args.start, "--start")
    end = _utc(args.end, "--end") if args.end else start + pd.Timedelta(days=7)
    if end <= start:
        raise InputError(f"empty window: --end {end} is not after --start {start}")
    done = replay(
        trader, feed(start, end, False).inputs, bar_delay=args.bar_delay, max_bars=args.max_bars
    )
    print(
        f"[paper] run={run_name} model={served.version} symbols={symbols} bars={done} "
        f"last_bar={trader.last_bar} equity={trader.equity():.2f} "
        f"open_positions={len(trader.positions)}",
        file=sys.stderr,
    )
    return 0
