"""``cryptoml dashboard``: the monitoring web page on http://127.0.0.1:PORT (read-only view of the
registry, the performance tracker and paper trading; until live predictions are tracked, the run's
walk-forward predictions and backtest from ``--output-dir``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptoml_pipeline.cli.args import add_output_dir, add_profile, add_timeframe


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="serve the monitoring dashboard on 127.0.0.1")
    add_output_dir(p, help="pipeline output (registry database unless $CRYPTOML_DB_URL, assets)")
    p.add_argument("--port", type=int, default=8050)
    add_profile(p)
    add_timeframe(p)
    p.add_argument("--paper-run", default=None, help="paper account shown (default: settings)")


def cmd_dashboard(args: argparse.Namespace) -> int:
    from cryptoml_pipeline.dashboard.data import DashboardData
    from cryptoml_pipeline.dashboard.server import make_server
    from cryptoml_pipeline.registry.db import database_url, open_database, redacted
    from cryptoml_pipeline.settings import profile_settings

    settings = profile_settings(args.profile, timeframe=args.timeframe)
    engine = open_database(Path(args.output_dir))
    data = DashboardData(
        engine, settings, args.paper_run or settings.paper.run_name, output_dir=args.output_dir
    )
    server = make_server(data, args.port)
    host, port = server.server_address[:2]
    print(
        f"dashboard on http://{host}:{port}/ (database {redacted(database_url(args.output_dir))})"
    )
    print("Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
