"""Inputs of the paper trader: market data (stored parquet bars, or live via ccxt), causal
features, the deployed model's predictions and the decisions frame."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features import build_features
from cryptoml_pipeline.live import paper_adapter as trading
from cryptoml_pipeline.live.paper import BarInput, bar_inputs
from cryptoml_pipeline.market import ParquetStore
from cryptoml_pipeline.market.source import MarketData, load_market_data, load_via_ccxt
from cryptoml_pipeline.modeling.models import ZOO, Fitted
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import timeframe_to_timedelta

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaperFeed:
    inputs: list[BarInput]
    predictions: pd.DataFrame
    start: pd.Timestamp
    end: pd.Timestamp


def load_market(
    data_dir: Path,
    settings: PipelineSettings,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    live: bool,
    universe: Sequence[str] | None = None,
    timeframe: str | None = None,
) -> MarketData:
    """The traded symbols' (``settings.data.symbols``) market and, with ``universe``, every
    member's candles (the served model's features need them: ``live.loader``)."""
    symbols, tf = list(settings.data.symbols), timeframe or settings.data.timeframe
    history = pd.Timedelta(days=settings.data.history_days)
    if live:
        return load_via_ccxt(
            ParquetStore(data_dir), list(universe or symbols), tf, start - history, end
        )
    return load_market_data(
        ParquetStore(data_dir),
        symbols,
        tf,
        start,
        end,
        history=history,
        funding_interval_hours=settings.data.funding_interval_hours,
        universe=list(universe) if universe else None,
    )


def build_feed(
    market: MarketData,
    model: Fitted,
    settings: PipelineSettings,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    symbols: Sequence[str] | None = None,
    timeframe: str | None = None,
) -> PaperFeed:
    """Features on all loaded bars (warm-up included); predictions of every bar in
    ``[start - 1 bar, end)`` — each from its own causal input window, exactly what a bar-by-bar
    loop would compute — and the per-bar inputs of ``[start, end)``."""
    tf = timeframe or settings.data.timeframe
    if model.manifest.get("timeframe") != tf:
        raise InputError(
            f"the deployed model is for {model.manifest.get('timeframe')} bars, not {tf}"
        )
    table = build_features(market.candles, market.funding, settings.features, timeframe=tf).table
    ts = pd.to_datetime(table["timestamp"], utc=True)
    step = timeframe_to_timedelta(tf)
    mask = ((ts >= start - step) & (ts < end)).to_numpy(copy=True)
    if symbols is not None:  # the traded ones of the (universe) table
        mask &= table["symbol"].astype(str).isin(list(symbols)).to_numpy()
    if not mask.any():
        raise InputError(f"no bars in the paper window [{start}, {end})")
    preds = ZOO[str(model.name)].predict_rows(model, table, None, mask, settings, tf, tag="paper")
    decisions = trading.decisions(preds, table, timeframe=tf, settings=settings)
    candles, funding = market.candles, market.funding
    if symbols is not None:
        candles = candles[candles["symbol"].astype(str).isin(list(symbols))]
        if funding is not None:
            funding = funding[funding["symbol"].astype(str).isin(list(symbols))]
    inputs = bar_inputs(candles, decisions, funding, timeframe=tf, start=start, end=end)
    return PaperFeed(inputs=inputs, predictions=preds, start=start, end=end)
