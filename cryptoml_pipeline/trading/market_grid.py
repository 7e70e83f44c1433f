"""Candles, decisions and funding laid out on one bar grid (the union of all symbols' bar times).

Arrays are ``[n_symbols, n_bars]`` with NaN where a symbol has no bar. Funding settlements are the
instants every ``interval_hours`` aligned to 00:00 UTC (00/08/16 for 8h) inside the grid's span,
each attached to the grid bar that contains it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.timing import timeframe_to_timedelta
from cryptoml_pipeline.trading.decisions import require_columns

logger = logging.getLogger(__name__)

OHLC = ("open", "high", "low", "close")


@dataclass(frozen=True)
class MarketGrid:
    timestamps: pd.DatetimeIndex  # union of bar open times, datetime64[ns, UTC]
    symbols: tuple[str, ...]  # sorted
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    has_bar: np.ndarray  # bool [n_symbols, n_bars]
    last_bar: np.ndarray  # int [n_symbols], grid index of each symbol's last bar
    bar: pd.Timedelta


@dataclass(frozen=True)
class FundingSchedule:
    times: pd.DatetimeIndex  # expected settlement instants inside the grid span
    bar_index: np.ndarray  # grid index of the bar containing each settlement
    at_open: np.ndarray  # bool: the settlement is that bar's open instant
    rates: np.ndarray  # [n_symbols, n_settlements], NaN where the funding frame has no rate


def _utc_ns(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")


def build_grid(candles: pd.DataFrame, timeframe: str) -> MarketGrid:
    """Validate long candles and pivot them onto the union bar grid."""
    require_columns(candles, ["timestamp", "symbol", *OHLC], "candles")
    if candles.empty:
        raise InputError("candles are empty: nothing to simulate")
    frame = candles.loc[:, ["timestamp", "symbol", *OHLC]].copy()
    frame["timestamp"] = _utc_ns(frame["timestamp"])
    frame["symbol"] = frame["symbol"].astype(str)
    dup = frame.duplicated(["symbol", "timestamp"])
    if dup.any():
        row = frame.loc[dup].iloc[0]
        raise DataValidationError(f"duplicate candle for {row['symbol']} at {row['timestamp']}")
    values = frame[list(OHLC)].to_numpy(np.float64)
    bad = ~np.isfinite(values).all(axis=1) | (values <= 0).any(axis=1)
    if bad.any():
        row = frame.loc[bad].iloc[0]
        raise DataValidationError(
            f"non-finite or non-positive price: {row['symbol']} at {row['timestamp']}"
        )
    bar = timeframe_to_timedelta(timeframe)
    frame = frame.sort_values(["symbol", "timestamp"], kind="stable")
    step = frame.groupby("symbol", sort=False)["timestamp"].diff()
    off_grid = step.notna() & ((step % bar) != pd.Timedelta(0))
    if off_grid.any():
        row = frame.loc[off_grid[off_grid].index[0]]
        raise InputError(
            f"candles of {row['symbol']} are not {timeframe} bars (step ending {row['timestamp']})"
        )
    timestamps = pd.DatetimeIndex(frame["timestamp"].drop_duplicates().sort_values())
    symbols = tuple(sorted(frame["symbol"].unique()))
    shape = (len(symbols), len(timestamps))
    arrays = {name: np.full(shape, np.nan) for name in OHLC}
    sym_pos = pd.Index(symbols).get_indexer(frame["symbol"])
    bar_pos = timestamps.get_indexer(frame["timestamp"])
    for name in OHLC:
        arrays[name][sym_pos, bar_pos] = frame[name].to_numpy(np.float64)
    has_bar = np.isfinite(arrays["open"])
    last_bar = np.array([np.flatnonzero(row)[-1] for row in has_bar], dtype=np.int64)
    return MarketGrid(
        timestamps=timestamps,
        symbols=symbols,
        has_bar=has_bar,
        last_bar=last_bar,
        bar=bar,
        **arrays,
    )


def align_decisions(decisions: pd.DataFrame, grid: MarketGrid) -> dict[str, np.ndarray]:
    """Decision columns placed at the grid bar where they FILL: the open of ``t + one bar``.

    A decision whose next bar does not exist for its symbol (end of data, gap) is dropped.
    Returns signal/confidence/volatility/atr_pct arrays ``[n_symbols, n_bars]`` (signal 0, the
    others NaN where no decision fills).
    """
    unknown = sorted(set(decisions["symbol"]) - set(grid.symbols))
    if unknown:
        raise InputError(f"decisions name symbol(s) without candles: {unknown}")
    shape = (len(grid.symbols), len(grid.timestamps))
    out = {
        "signal": np.zeros(shape),
        "confidence": np.full(shape, np.nan),
        "volatility": np.full(shape, np.nan),
        "atr_pct": np.full(shape, np.nan),
    }
    fill_time = pd.DatetimeIndex(decisions["timestamp"] + grid.bar)
    bar_pos = grid.timestamps.get_indexer(fill_time)
    sym_pos = pd.Index(grid.symbols).get_indexer(decisions["symbol"])
    ok = bar_pos >= 0
    ok[ok] = grid.has_bar[sym_pos[ok], bar_pos[ok]]
    if (~ok).any():
        logger.info("%d decisions have no next bar to fill at and are dropped", int((~ok).sum()))
    for name in out:
        out[name][sym_pos[ok], bar_pos[ok]] = decisions[name].to_numpy(np.float64)[ok]
    return out


def funding_schedule(
    grid: MarketGrid, funding: pd.DataFrame, *, interval_hours: int = 8
) -> FundingSchedule:
    """Expected settlements in ``[first bar open, last bar close)`` and each symbol's rate there."""
    require_columns(funding, ["timestamp", "symbol", "funding_rate"], "funding")
    interval = pd.Timedelta(hours=interval_hours)
    start = grid.timestamps[0].ceil(interval)
    end = grid.timestamps[-1] + grid.bar
    times = pd.date_range(start, end, freq=interval, inclusive="left").astype("datetime64[ns, UTC]")
    times = times[times < end]
    prev = grid.timestamps.searchsorted(times, side="right") - 1
    inside = np.asarray(times < grid.timestamps[prev] + grid.bar, dtype=bool)
    # a settlement inside a data gap belongs to the first bar after it, charged at its open on
    # the positions carried through the gap
    bar_index = np.where(inside, prev, grid.timestamps.searchsorted(times, side="left"))
    at_open = np.asarray(grid.timestamps[bar_index] == times, dtype=bool) | ~inside
    rates = np.full((len(grid.symbols), len(times)), np.nan)
    frame = funding.loc[:, ["timestamp", "symbol", "funding_rate"]].copy()
    frame["timestamp"] = _utc_ns(frame["timestamp"])
    frame["symbol"] = frame["symbol"].astype(str)
    dup = frame.duplicated(["symbol", "timestamp"])
    if dup.any():
        row = frame.loc[dup].iloc[0]
        raise DataValidationError(
            f"duplicate funding rate for {row['symbol']} at {row['timestamp']}"
        )
    in_span = (frame["timestamp"] >= grid.timestamps[0]) & (frame["timestamp"] < end)
    off = in_span & ~frame["timestamp"].isin(times)
    if off.any():
        row = frame.loc[off].iloc[0]
        raise DataValidationError(
            f"funding for {row['symbol']} at {row['timestamp']} is off the {interval_hours}h "
            "settlement schedule; set data.funding_interval_hours to the exchange's interval"
        )
    for s, symbol in enumerate(grid.symbols):
        sub = frame.loc[frame["symbol"] == symbol]
        series = pd.Series(sub["funding_rate"].to_numpy(np.float64), index=sub["timestamp"])
        rates[s] = series.reindex(times).to_numpy(np.float64)
    return FundingSchedule(times=times, bar_index=bar_index, at_open=at_open, rates=rates)
