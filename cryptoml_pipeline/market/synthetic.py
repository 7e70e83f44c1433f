"""A seeded SYNTHETIC market, for demos and tests without data. Says nothing about real markets.

Prices follow a regime-switching geometric Brownian motion shared by all assets (one Markov chain
of bull / bear / stress regimes, correlated shocks through a common factor), with hourly volatility
of about 0.5-1 %. Candles are valid OHLC with positive volume. Funding settles every 8h at
00/08/16 UTC with small, mean-reverting rates whose level depends on the regime.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market.layout import spot_symbol
from cryptoml_pipeline.market.schemas import (
    CANDLE_COLUMNS,
    FUNDING_COLUMNS,
    TS_DTYPE,
    validate_candles,
    validate_funding,
)
from cryptoml_pipeline.market.source import FUNDING_INTERVAL, MarketData
from cryptoml_pipeline.timing import timeframe_to_timedelta, to_utc

log = logging.getLogger(__name__)

# Regimes: hourly drift, hourly volatility, funding level (per 8h), mean stay (hours).
_DRIFT = np.array([2.0e-4, -1.5e-4, -4.0e-4])
_VOL = np.array([0.0055, 0.0075, 0.0110])
_FUNDING_LEVEL = np.array([1.5e-4, 0.5e-4, -0.5e-4])
_STAY_HOURS = np.array([240.0, 160.0, 48.0])
_NEXT = np.array([[0.0, 0.8, 0.2], [0.7, 0.0, 0.3], [0.5, 0.5, 0.0]])  # given a switch
_CORRELATION = 0.7
_FUNDING_PHI = 0.85
_FUNDING_NOISE = 4.0e-5

_BASE_PRICE = {"BTC": 40_000.0, "ETH": 2_400.0, "SOL": 100.0, "BNB": 300.0, "XRP": 0.6}
_VOL_SCALE = {"BTC": 1.0, "ETH": 1.15, "SOL": 1.5}
_BASE_VOLUME = {"BTC": 900.0, "ETH": 12_000.0, "SOL": 90_000.0}


def _base(symbol: str) -> str:
    return spot_symbol(symbol).split("/", 1)[0]


def _name_number(symbol: str) -> float:
    """A stable number in [0, 1) from the symbol's name (for unknown assets)."""
    return (zlib.crc32(_base(symbol).encode()) % 10_000) / 10_000


def _regimes(rng: np.random.Generator, n: int, bar_hours: float) -> np.ndarray:
    switch = 1.0 - np.exp(-bar_hours / _STAY_HOURS)
    u_switch, u_next = rng.random(n), rng.random(n)
    states = np.empty(n, dtype=np.int64)
    state = 0
    cumulative = np.cumsum(_NEXT, axis=1)
    for i in range(n):  # a Markov chain is sequential by nature
        if u_switch[i] < switch[state]:
            state = int(np.searchsorted(cumulative[state], u_next[i], side="right"))
        states[i] = state
    return states


def _candles(
    rng: np.random.Generator,
    symbols: Sequence[str],
    timestamps: pd.DatetimeIndex,
    states: np.ndarray,
    bar_hours: float,
) -> pd.DataFrame:
    n, k = len(timestamps), len(symbols)
    common = rng.standard_normal(n)
    own = rng.standard_normal((n, k))
    shocks = np.sqrt(_CORRELATION) * common[:, None] + np.sqrt(1.0 - _CORRELATION) * own
    wicks = np.abs(rng.standard_normal((n, k, 2)))
    volume_noise = rng.standard_normal((n, k))
    hours = timestamps.hour.to_numpy()
    session = 1.0 + 0.35 * ((hours >= 13) & (hours < 21))  # busier US hours
    frames = []
    for j, symbol in enumerate(symbols):
        base = _base(symbol)
        scale = _VOL_SCALE.get(base, 1.2 + 0.4 * _name_number(symbol))
        sigma = _VOL[states] * scale * np.sqrt(bar_hours)
        drift = _DRIFT[states] * bar_hours - 0.5 * sigma**2
        log_ret = drift + sigma * shocks[:, j]
        p0 = _BASE_PRICE.get(base, 5.0 + 200.0 * _name_number(symbol))
        close = p0 * np.exp(np.cumsum(log_ret))
        open_ = np.concatenate([[p0], close[:-1]])
        high = np.maximum(open_, close) * np.exp(0.5 * sigma * wicks[:, j, 0])
        low = np.minimum(open_, close) * np.exp(-0.5 * sigma * wicks[:, j, 1])
        activity = np.exp(0.35 * volume_noise[:, j] + 0.8 * np.abs(log_ret) / sigma)
        volume = _BASE_VOLUME.get(base, 50_000.0) * bar_hours * session * activity
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": timestamps,
                    "symbol": symbol,
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[list(CANDLE_COLUMNS)]


def _funding(
    rng: np.random.Generator,
    symbols: Sequence[str],
    timestamps: pd.DatetimeIndex,
    states: np.ndarray,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> pd.DataFrame:
    settlements = pd.date_range(
        (start - FUNDING_INTERVAL).ceil("8h"), end, freq="8h", inclusive="left"
    ).astype(TS_DTYPE)
    m = len(settlements)
    position = np.clip(timestamps.searchsorted(settlements, side="right") - 1, 0, None)
    level = _FUNDING_LEVEL[states[position]] if m else np.empty(0)
    noise = rng.standard_normal((m, len(symbols))) * _FUNDING_NOISE
    frames = []
    for j, symbol in enumerate(symbols):
        rates = np.empty(m)
        previous = level[0] if m else 0.0
        for i in range(m):  # AR(1) around the regime's level
            previous = level[i] + _FUNDING_PHI * (previous - level[i]) + noise[i, j]
            rates[i] = previous
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": settlements,
                    "symbol": symbol,
                    "funding_rate": np.clip(rates, -0.0075, 0.0075),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[list(FUNDING_COLUMNS)]


def synthetic_market(
    symbols: Sequence[str],
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    seed: int = 7,
) -> MarketData:
    """Seeded synthetic candles (bars in ``[start, end)``) and funding (``[start - 8h, end)``).

    Deterministic for given symbols, timeframe, window and seed. Labelled ``source="synthetic"``.
    """
    if not symbols:
        raise InputError("no symbols selected")
    if len(set(symbols)) != len(symbols):
        raise InputError(f"duplicate symbols in {list(symbols)}")
    try:
        bar = timeframe_to_timedelta(timeframe)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    start, end = to_utc(start), to_utc(end)
    timestamps = pd.date_range(start.ceil(bar), end, freq=bar, inclusive="left").astype(TS_DTYPE)
    if len(timestamps) == 0:
        raise InputError(f"empty synthetic window [{start}, {end}) for timeframe {timeframe}")
    ordered = sorted(symbols)
    rng = np.random.default_rng(seed)
    bar_hours = bar / pd.Timedelta(hours=1)
    states = _regimes(rng, len(timestamps), bar_hours)
    candles = _candles(rng, ordered, timestamps, states, bar_hours)
    funding = _funding(rng, ordered, timestamps, states, start, end)
    log.warning("SYNTHETIC market (seed %d): results say nothing about real markets", seed)
    return MarketData(
        candles=validate_candles(candles, source="synthetic"),
        funding=validate_funding(funding, source="synthetic"),
        source="synthetic",
        synthetic=True,
        price_source="synthetic",
        price_sources=dict.fromkeys(ordered, "synthetic"),
        timeframe=timeframe,
        start=start,
        end=end,
    )
