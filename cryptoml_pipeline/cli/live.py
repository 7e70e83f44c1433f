"""``cryptoml live``: the live service (paper fills by default) with its HTTP API (see
docs/live.md)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from cryptoml_pipeline.cli.args import add_data_dir, add_output_dir, parse_symbols
from cryptoml_pipeline.errors import InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("live", help="serve the deployed model bar by bar with an HTTP API")
    p.add_argument(
        "--candidate",
        action="store_true",
        help="serve the latest registry candidate that was NOT deployed (says so)",
    )
    p.add_argument(
        "--replay",
        nargs=2,
        metavar=("START", "END"),
        help="replay the stored bars whose open time is in [START, END) UTC",
    )
    p.add_argument("--bar-delay", type=float, default=0.0, help="replay: seconds between bars")
    p.add_argument("--exit-at-end", action="store_true", help="replay: exit after the last bar")
    p.add_argument("--host", default="127.0.0.1", help="API bind address (loopback default)")
    p.add_argument("--port", type=int, default=8765, help="API port (0 = any free port)")
    p.add_argument(
        "--execute",
        action="store_true",
        help="live mode: send the decisions as orders on the USDT-M perpetuals via ccxt "
        "(keys from CRYPTOML_EXCHANGE_API_KEY / CRYPTOML_EXCHANGE_SECRET)",
    )
    p.add_argument(
        "--exchange-url",
        help="point ccxt at another server (testnet, simulator); default CRYPTOML_EXCHANGE_URL "
        "or Binance",
    )
    p.add_argument(
        "--bar-deadline",
        type=float,
        default=60.0,
        help="live: seconds after its close a late bar is awaited before it is skipped",
    )
    p.add_argument(
        "--exchange-clock",
        action="store_true",
        help="live: take the bar clock from the exchange's server time (GET /fapi/v1/time at "
        "every poll) instead of this machine's (a skewed local clock; a simulator's clock)",
    )
    p.add_argument("--poll-seconds", type=float, help="live: seconds between exchange polls")
    p.add_argument("--run-name", default="live", help="the account (restart resumes it)")
    p.add_argument("--symbols", help="trade only these of the model's traded symbols")
    add_data_dir(p)
    add_output_dir(p, help="where the model is deployed and the database lives")


def cmd_live(args: argparse.Namespace) -> int:
    import pandas as pd

    from cryptoml_pipeline.live.api import ApiServer, bind_token
    from cryptoml_pipeline.live.service import LiveOptions, LiveService, parse_utc, say
    from cryptoml_pipeline.locations import resolve_data_location

    if args.execute and args.replay:
        raise InputError("--execute sends real orders: live mode only, not with --replay")
    if args.exchange_clock and args.replay:
        raise InputError("--exchange-clock: live mode only, not with --replay")
    token = bind_token(args.host)
    replay = None
    if args.replay:
        start, end = (parse_utc(v, "--replay") for v in args.replay)
        if end <= start:
            raise InputError(f"--replay: END {end} is not after START {start}")
        replay = (start, end)
    location = resolve_data_location(args.data_dir)
    if location.path is None or not Path(location.path).is_dir():
        raise InputError(f"the live service needs a parquet data directory ({location.reason})")
    symbols = parse_symbols(args.symbols, required=False) if args.symbols else None
    service = LiveService(
        LiveOptions(
            output_dir=Path(args.output_dir),
            data_dir=Path(location.path),
            run_name=args.run_name,
            candidate=args.candidate,
            symbols=symbols,
            replay=replay,
            bar_delay=args.bar_delay,
            poll_seconds=args.poll_seconds,
            execute=args.execute,
            exchange_url=args.exchange_url,
            exchange_clock=args.exchange_clock,
            bar_deadline=pd.Timedelta(seconds=args.bar_deadline),
        )
    )
    api = ApiServer(service, args.host, args.port, token)
    api.start()
    port = api.server.servers[0].sockets[0].getsockname()[1] if api.server.servers else args.port
    say(
        f"serving http://{args.host}:{port} account={args.run_name!r} "
        f"model={service.served.version} symbols={service.trading} "
        f"mode={'replay' if replay else 'live (ccxt)'}, "
        + ("ORDERS SENT (--execute)" if args.execute else "paper fills")
    )

    def stop(signum, frame) -> None:  # SIGTERM / Ctrl-C: stop after the current bar
        service.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        code = service.run(exit_at_end=args.exit_at_end)
    finally:
        api.stop()
    return code
