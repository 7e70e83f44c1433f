"""``cryptoml signal --symbol BTC/USDT``: the deployed model's signal for the latest closed bar,
printed as JSON. Reads the parquet data directory; errors print one line (exit 2)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.locations import resolve_data_location
from cryptoml_pipeline.market.layout import perpetual_symbol, spot_symbol
from cryptoml_pipeline.market.store import ParquetStore
from cryptoml_pipeline.settings import PROFILES, profile_settings
from cryptoml_pipeline.timing import timeframe_to_timedelta
from cryptoml_pipeline.trading.realtime import LoadedModel, latest_signal, load_engine, tail_bars


def add_parser(sub: argparse._SubParsersAction) -> None:
    sig = sub.add_parser("signal", help="print the deployed model's latest signal as JSON")
    sig.add_argument("--symbol", required=True, help="ccxt symbol, e.g. BTC/USDT")
    sig.add_argument("--data-dir", help="parquet data directory (default: see README)")
    sig.add_argument("--output-dir", default="output", help="where `cryptoml run` deployed")
    sig.add_argument("--profile", default="demo", choices=PROFILES, help="feature settings")


def read_tail(
    store: ParquetStore, symbol: str, loaded: LoadedModel, n_bars: int
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The last ``n_bars`` closed candles of the traded instrument (perpetual, else spot) and
    the perpetual's funding over the same span (None when there is no funding file)."""
    tf = loaded.timeframe
    perp, spot = perpetual_symbol(symbol), spot_symbol(symbol)
    instrument = perp if store.has_candles(perp, tf) else spot
    coverage = store.candle_coverage(instrument, tf)
    if coverage is None:
        raise InputError(f"no {tf} candles for {symbol} in {store.root}")
    end = coverage[1] + timeframe_to_timedelta(tf)
    start = end - n_bars * timeframe_to_timedelta(tf)
    candles = store.read_candles(instrument, tf, start, end, as_symbol=symbol)
    funding = None
    if store.has_funding(perp):
        funding = store.read_funding(perp, start - pd.Timedelta(hours=8), end, as_symbol=symbol)
    return candles, funding


def cmd_signal(args: argparse.Namespace) -> int:
    if "/" not in args.symbol:
        raise InputError(f"symbol {args.symbol!r} is not a ccxt symbol like BTC/USDT")
    location = resolve_data_location(args.data_dir)
    if location.kind != "parquet" or location.path is None or not location.path.is_dir():
        raise InputError(f"no parquet data directory for signals ({location.reason})")
    settings = profile_settings(args.profile)
    loaded = load_engine(Path(args.output_dir))
    candles, funding = read_tail(
        ParquetStore(location.path), args.symbol, loaded, tail_bars(loaded, settings.features)
    )
    print(json.dumps(latest_signal(loaded, candles, funding, settings.features)))  # noqa: T201
    return 0
