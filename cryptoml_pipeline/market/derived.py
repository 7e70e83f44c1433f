"""Candles of a timeframe the store has no file for, resampled from a finer stored timeframe.

``4h`` is built from the coarsest stored base that divides it (``1h``, else ``15m``, ``5m``,
``1m``) with :func:`resample_candles` (left-closed, left-labelled buckets; incomplete buckets
dropped, never invented). A timeframe with its own file is always read from that file.
"""

from __future__ import annotations

import logging

import pandas as pd

from cryptoml_pipeline.market.repair import INPUT_REPAIRS
from cryptoml_pipeline.market.resample import resample_candles
from cryptoml_pipeline.market.schemas import CANDLE_COLUMNS
from cryptoml_pipeline.market.store import Coverage, ParquetStore
from cryptoml_pipeline.timing import timeframe_to_timedelta

log = logging.getLogger(__name__)

BASES: tuple[str, ...] = ("1h", "15m", "5m", "1m")  # coarsest first
_EPOCH = pd.Timestamp(0, tz="UTC")


def source_timeframe(store: ParquetStore, symbol: str, timeframe: str) -> str | None:
    """``timeframe`` when the store has its file, else the base it can be resampled from."""
    if store.has_candles(symbol, timeframe):
        return timeframe
    target = timeframe_to_timedelta(timeframe)
    for base in BASES:
        step = timeframe_to_timedelta(base)
        if step < target and target % step == pd.Timedelta(0) and store.has_candles(symbol, base):
            return base
    return None


def has_candles(store: ParquetStore, symbol: str, timeframe: str) -> bool:
    return source_timeframe(store, symbol, timeframe) is not None


def candle_coverage(store: ParquetStore, symbol: str, timeframe: str) -> Coverage | None:
    """(first, last) open time of the complete ``timeframe`` buckets the store can provide."""
    base = source_timeframe(store, symbol, timeframe)
    if base is None:
        return None
    cov = store.candle_coverage(symbol, base)
    if cov is None or base == timeframe:
        return cov
    target = timeframe_to_timedelta(timeframe)
    first = _EPOCH + -((_EPOCH - cov[0]) // target) * target  # first bucket starting in the data
    last = _EPOCH + ((cov[1] + timeframe_to_timedelta(base) - _EPOCH) // target) * target - target
    return (first, last) if first <= last else None


def read_candles(
    store: ParquetStore,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    *,
    as_symbol: str | None = None,
) -> pd.DataFrame:
    """Validated candles of ``timeframe``: from its file, else resampled from a stored base."""
    base = source_timeframe(store, symbol, timeframe)
    if base is None or base == timeframe:
        return store.read_candles(symbol, timeframe, start, end, as_symbol=as_symbol)
    target = timeframe_to_timedelta(timeframe)
    lo = None if start is None else _EPOCH + ((start - _EPOCH) // target) * target
    raw = store.read_candles(symbol, base, lo, end, as_symbol=as_symbol)
    out, report = resample_candles(raw, base, timeframe)
    log.info(
        "%s %s resampled from %s: %d complete bars, %d incomplete buckets dropped",
        symbol,
        timeframe,
        base,
        report.complete_bars,
        report.partial_bars,
    )
    if start is not None:
        out = out[out["timestamp"] >= start]
    out = out[list(CANDLE_COLUMNS)].reset_index(drop=True)
    if INPUT_REPAIRS in raw.attrs:  # what reading the base file repaired travels on
        out.attrs[INPUT_REPAIRS] = raw.attrs[INPUT_REPAIRS]
    return out
