"""The real-time signal: features on the universe's causal tail, the served model's prediction
for each symbol's last closed bar, and the backtest's decision on it.

The tail is :func:`serving.market.tail_span` of every universe member (gap filling as in the
run's ``ohlcv`` asset when ``ingest.max_fill_bars`` asks for it). The features are the rows of
``features.build.compute_features`` on that tail that the model reads — each requested symbol
from ``history_rows`` bars before its bar on — computed for those rows only
(:func:`signal_table`, :mod:`.fast_features`; equal to :func:`tail_features`' rows to 1e-9); the
prediction is ``predict_forecast`` of the served model on them (the one prediction schema), so
the signal equals the run's own prediction for the bar up to the declared warm-up tolerance of
recursive smoothers (``features.warmup_tolerance``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features.build import compute_features
from cryptoml_pipeline.market.repair import repair_candles
from cryptoml_pipeline.market.schemas import CANDLE_COLUMNS
from cryptoml_pipeline.modeling.forecast_model import predict_forecast
from cryptoml_pipeline.modeling.predictions import PROB_COLUMNS
from cryptoml_pipeline.serving.decision import decide
from cryptoml_pipeline.serving.fast_features import signal_features
from cryptoml_pipeline.serving.market import check_symbols, closed_bars, tail_span
from cryptoml_pipeline.serving.models import ServedModel
from cryptoml_pipeline.timing import timeframe_to_timedelta
from cryptoml_pipeline.trading.decisions import annualise_volatility


def signal_tail(
    served: ServedModel,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    bars: dict[str, pd.Timestamp],
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The repaired universe candles and the funding from the tail's start on."""
    settings = served.settings
    first = min(bars.values()) + timeframe_to_timedelta(served.timeframe) - tail_span(served)
    last = max(bars.values())
    ts = candles["timestamp"]
    tail = candles.loc[(ts >= first) & (ts <= last)]
    ingest = settings.ingest
    if ingest.max_fill_bars:  # the run's ohlcv asset fills short gaps: the same repair here
        repaired, _ = repair_candles(
            tail,
            served.timeframe,
            source="signal candles",
            max_fill_bars=ingest.max_fill_bars,
            outlier_k=ingest.outlier_k_sigma,
            outlier_window=ingest.outlier_window,
        )
        tail = repaired[[*CANDLE_COLUMNS, "is_filled"]]
    # otherwise the repair changes no value: store reads and the synthetic market are validated
    # candles already, and compute_features orders rows and refuses duplicates itself
    interval = pd.Timedelta(hours=settings.data.funding_interval_hours)
    funding_tail = None
    if funding is not None:
        fts = funding["timestamp"]
        funding_tail = funding.loc[(fts >= first - interval) & (fts <= last)]
    return tail, funding_tail


def tail_features(
    served: ServedModel,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    bars: dict[str, pd.Timestamp],
) -> pd.DataFrame:
    """``compute_features`` of the repaired universe candles from the tail's start on: the batch
    pipeline's whole table, which :func:`signal_table` reproduces at the rows the signal reads."""
    tail, funding_tail = signal_tail(served, candles, funding, bars)
    return compute_features(
        tail, funding_tail, served.settings.features, timeframe=served.timeframe
    )


def signal_table(
    served: ServedModel,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    bars: dict[str, pd.Timestamp],
    symbols: Sequence[str],
) -> pd.DataFrame:
    """The rows of :func:`tail_features` the signal reads (each symbol from ``history_rows``
    bars before its bar on), computed for those rows only (:mod:`.fast_features`)."""
    tail, funding_tail = signal_tail(served, candles, funding, bars)
    return signal_features(
        tail,
        funding_tail,
        served.settings.features,
        served.timeframe,
        bars,
        symbols,
        served.history_rows,
    )


def _number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def signals(
    served: ServedModel,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    symbols: Sequence[str] = (),
    *,
    position: dict[str, int] | None = None,
    equity: float | None = None,
) -> list[dict[str, Any]]:
    """One signal record per symbol (default: every traded symbol), in the given order."""
    symbols = check_symbols(served, symbols)
    bars = closed_bars(served, candles, funding, symbols)
    table = signal_table(served, candles, funding, bars, symbols)
    missing = [c for c in served.model.feature_cols if c not in table.columns]
    if missing:  # e.g. open interest / trades / sentiment sources: not read by the signal yet
        raise InputError(f"the signal's features lack the model's columns {missing}")
    key = table["symbol"].astype(str).to_numpy()
    stamp = table["timestamp"].astype("datetime64[ns, UTC]").array.asi8
    mask = np.zeros(len(table), dtype=bool)
    for symbol in symbols:
        mask |= (key == symbol) & (stamp == bars[symbol].value)
    settings, tf = served.settings, served.timeframe
    preds = predict_forecast(served.model, table, None, mask, settings, tf, tag="signal")
    by_symbol = {str(s): i for i, s in enumerate(preds["symbol"].astype(str))}
    vol_col = f"rv_{settings.risk.volatility_window}"
    atr_col = f"atr_pct_{settings.risk.atr_period}"
    bar = timeframe_to_timedelta(tf)
    out = []
    for symbol in symbols:
        if symbol not in by_symbol:
            raise InputError(
                f"{symbol}: the model's features are undefined at {bars[symbol]} "
                "(too little history before it?)"
            )
        p = preds.iloc[by_symbol[symbol]]
        row = table.loc[mask & (key == symbol)].iloc[0]
        volatility = float(annualise_volatility(np.array([row[vol_col]]), tf)[0])
        decision = decide(
            signal=int(p["signal"]),
            confidence=float(p["confidence"]),
            expected_return=float(p["expected_return"]),
            volatility=volatility,
            atr_pct=float(row[atr_col]),
            settings=settings,
            timeframe=tf,
            position=(position or {}).get(symbol, 0),
            equity=equity,
        )
        out.append(
            {
                "symbol": symbol,
                "bar_open": bars[symbol].isoformat(),
                "fills_at": (bars[symbol] + bar).isoformat(),
                "timeframe": tf,
                "signal": int(p["signal"]),
                "confidence": float(p["confidence"]),
                "expected_return": float(p["expected_return"]),
                "probabilities": {c: _number(float(p[c])) for c in PROB_COLUMNS},
                "decision": {k: v for k, v in decision.as_dict().items()},
                "volatility": _number(volatility),
                "atr_pct": _number(float(row[atr_col])),
                "model": {
                    "version": served.version,
                    "model_class": served.manifest.get("model_class", "CryptoTransformer"),
                    "deployed": served.deployed,
                },
                "data": {
                    "source": served.manifest["data"].get("source"),
                    "synthetic": served.synthetic,
                },
            }
        )
    return out
