"""The paper trader's ONE seam to ``cryptoml_pipeline.trading`` (sizing, fills, stops, the
prediction engine), so changes to the trading engine are followed in one place."""

from __future__ import annotations

import pandas as pd

from cryptoml_pipeline.settings import CostConfig, PipelineSettings, RiskConfig
from cryptoml_pipeline.trading.book import fill_price, stop_fill_raw, stop_price
from cryptoml_pipeline.trading.engine import decisions_from_predictions
from cryptoml_pipeline.trading.sizing import EntrySize, size_entry


def decisions(
    predictions: pd.DataFrame, features: pd.DataFrame, *, timeframe: str, settings: PipelineSettings
) -> pd.DataFrame:
    """Predictions -> the backtester's decisions frame (signal, confidence, volatility, atr)."""
    return decisions_from_predictions(
        predictions,
        features,
        timeframe=timeframe,
        vol_col=f"rv_{settings.risk.volatility_window}",
        atr_col=f"atr_pct_{settings.risk.atr_period}",
    )


def entry_size(
    *,
    equity: float,
    signal: float,
    confidence: float,
    volatility: float,
    atr_pct: float,
    open_risk: float,
    open_notional: float,
    risk: RiskConfig,
) -> EntrySize | None:
    return size_entry(
        equity=equity,
        signal=signal,
        confidence=confidence,
        volatility=volatility,
        atr_pct=atr_pct,
        open_risk=open_risk,
        open_notional=open_notional,
        risk=risk,
    )


def is_active(signal: float, confidence: float, risk: RiskConfig) -> bool:
    """The backtester's entry rule: |signal| >= 1, confidence >= threshold and > 0."""
    return (
        abs(signal) >= 1
        and confidence == confidence  # not NaN
        and confidence >= risk.confidence_threshold
        and confidence > 0
    )


def execution(
    raw_price: float, side: int, quantity: float, costs: CostConfig
) -> tuple[float, float]:
    """(fill price after slippage, taker fee) of a market order."""
    price = fill_price(raw_price, side, costs.slippage_bps / 1e4)
    return price, costs.taker_fee * quantity * price


def stop_level(entry_price: float, direction: int, stop_distance: float) -> float:
    return stop_price(entry_price, direction, stop_distance)


def stop_fill(direction: int, bar_open: float, low: float, high: float, stop: float) -> float:
    """Raw stop fill in the bar, NaN when untouched (gaps fill at the open)."""
    return stop_fill_raw(direction, bar_open, low, high, stop)
