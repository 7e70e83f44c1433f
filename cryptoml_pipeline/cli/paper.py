"""``cryptoml paper``: paper trading with the deployed model (replay of stored bars, or live
ccxt data with network), executed by the backtest's own simulator. Killed and restarted, it
resumes at the first unprocessed bar (state log under ``OUTPUT/paper_state/``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from cryptoml_pipeline.cli.args import (
    add_data_dir,
    add_output_dir,
    add_profile,
    add_symbols,
    add_timeframe,
    parse_symbols,
)
from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.settings import DEFAULT_SYMBOLS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("paper", help="paper-trade the deployed model bar by bar (replay or live)")
    add_output_dir(p, help="where the registry database lives")
    add_data_dir(p)
    add_symbols(p, default=",".join(DEFAULT_SYMBOLS))
    add_timeframe(p)
    add_profile(p)
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


def _settings(args: argparse.Namespace):
    from cryptoml_pipeline.settings import profile_settings

    return profile_settings(
        args.profile, symbols=tuple(parse_symbols(args.symbols)), timeframe=args.timeframe
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
    from cryptoml_pipeline.live.paper import PaperTrader, replay
    from cryptoml_pipeline.live.paper_feed import build_feed, load_market
    from cryptoml_pipeline.locations import resolve_data_location
    from cryptoml_pipeline.registry.candidates import load_verified
    from cryptoml_pipeline.registry.db import open_database
    from cryptoml_pipeline.registry.model_registry import ModelRegistry
    from cryptoml_pipeline.timing import timeframe_to_timedelta

    settings = _settings(args)
    engine = open_database(Path(args.output_dir))
    registry = ModelRegistry(engine)
    deployed = registry.deployed()
    if args.candidate:
        candidates = registry.list_versions(stage="candidate")
        if not candidates:
            raise InputError(f"no undeployed candidate model in {args.output_dir}")
        deployed = candidates[-1]
        print(
            f"[paper] candidate {deployed.version} is NOT deployed for trading: "
            f"{deployed.reason or 'no reason recorded'}",
            file=sys.stderr,
        )
    elif deployed is None:
        candidates = registry.list_versions(stage="candidate")
        why = (
            f"; the latest candidate {candidates[-1].version} was not deployed: "
            f"{candidates[-1].reason} (--candidate paper-trades it anyway)"
            if candidates
            else ": run `cryptoml run` first"
        )
        raise InputError(f"no deployed model in {args.output_dir}{why}")
    model = load_verified(registry, deployed.version)
    location = resolve_data_location(args.data_dir)
    if location.path is None:
        raise InputError("paper trading needs a data directory (no synthetic paper trading)")
    run_name = args.run_name or settings.paper.run_name
    trader = PaperTrader(
        engine,
        run_name=run_name,
        model_version=deployed.version,
        settings=settings,
        timeframe=args.timeframe,
        initial_equity=settings.paper.initial_equity,
        state_dir=Path(args.output_dir) / "paper_state",
    )
    step = timeframe_to_timedelta(args.timeframe)
    if args.live:
        while True:  # Ctrl-C / SIGTERM stops it; the cursor is in the database
            end = pd.Timestamp.now(tz="UTC").floor(step)  # bars before it are closed
            start = trader.last_bar + step if trader.last_bar is not None else end - step
            if start < end:
                market = load_market(Path(location.path), settings, start, end, live=True)
                feed = build_feed(market, model, settings, start, end)
                replay(trader, feed.inputs)
                print(f"[paper] {run_name}: bar {trader.last_bar} equity {trader.equity():.2f}")
            time.sleep(settings.paper.poll_seconds)
    if not args.start:
        raise InputError("replay needs --start (or pass --live)")
    start = _utc(args.start, "--start")
    end = _utc(args.end, "--end") if args.end else start + pd.Timedelta(days=7)
    if end <= start:
        raise InputError(f"empty window: --end {end} is not after --start {start}")
    market = load_market(Path(location.path), settings, start, end, live=False)
    feed = build_feed(market, model, settings, start, end)
    done = replay(trader, feed.inputs, bar_delay=args.bar_delay, max_bars=args.max_bars)
    print(
        f"[paper] run={run_name} model={deployed.version} bars={done} last_bar={trader.last_bar} "
        f"equity={trader.equity():.2f} open_positions={len(trader.positions)}",
        file=sys.stderr,
    )
    return 0
