"""``cryptoml data``: download candles + funding via ccxt into a data directory (incremental:
only days the store lacks are fetched; unfinished candles are never stored)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptoml_pipeline.cli.args import add_data_dir, add_symbols, add_timeframe, parse_symbols
from cryptoml_pipeline.settings import DEFAULT_SYMBOLS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="download candles + funding via ccxt into a data directory")
    add_data_dir(p, default="data")
    add_symbols(p, default=",".join(DEFAULT_SYMBOLS))
    add_timeframe(p, help="one or more, comma-separated: 5m,1h")
    p.add_argument("--days", type=int, default=800)
    p.add_argument("--exchange", default="binance", help="any ccxt exchange id")


def cmd_data(args: argparse.Namespace) -> int:
    import pandas as pd

    from cryptoml_pipeline.market import ParquetStore
    from cryptoml_pipeline.market.ccxt_source import make_exchange
    from cryptoml_pipeline.market.ingest import backfill, summarise
    from cryptoml_pipeline.settings import IngestConfig

    symbols = parse_symbols(args.symbols)
    timeframes = tuple(t.strip() for t in args.timeframe.split(",") if t.strip())
    config = IngestConfig(exchange=args.exchange, symbols=tuple(symbols), timeframes=timeframes)
    now = pd.Timestamp.now(tz="UTC")
    start = now.floor("D") - pd.Timedelta(days=args.days)
    results = backfill(
        ParquetStore(Path(args.data_dir)), make_exchange(args.exchange), start, now, config, now=now
    )
    print(f"{summarise(results)['rows_written']} rows written to {Path(args.data_dir).resolve()}")
    return 0
