"""Incremental, idempotent landing of exchange data into the parquet store, one UTC day at a time.

A *partition* is one UTC day ``[day, day + 1d)``. Landing a partition fetches each configured
series (spot / perpetual candles per timeframe, funding, open interest), repairs and validates it
(:mod:`cryptoml_pipeline.market.repair`) and then replaces exactly that day of the stored file
(:meth:`ParquetStore.replace_candles_range`, atomic). Consequences:

* re-landing a day replaces it and never duplicates a row;
* a series that fails (bad reply, validation error) writes nothing, so what was stored stays as it
  was; series landed before the failure keep their new data;
* only finished candles are stored (the exchange's still-open candle is dropped), so today's
  partition holds the bars closed so far and is completed by a later run;
* :func:`backfill` skips days the store already holds completely, so a backfill that stopped
  half-way resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market.ccxt_source import (
    fetch_funding_history,
    fetch_ohlcv_history,
    load_markets,
    require_capabilities,
    require_timeframe,
)
from cryptoml_pipeline.market.layout import perpetual_symbol, spot_symbol
from cryptoml_pipeline.market.open_interest import fetch_open_interest_history
from cryptoml_pipeline.market.repair import RepairReport, repair_candles
from cryptoml_pipeline.market.retry import Backoff
from cryptoml_pipeline.market.schemas import validate_funding
from cryptoml_pipeline.market.store import ParquetStore
from cryptoml_pipeline.settings import IngestConfig
from cryptoml_pipeline.timing import timeframe_to_timedelta, to_utc

if TYPE_CHECKING:
    from ccxt.base.exchange import Exchange

log = logging.getLogger(__name__)

DAY = pd.Timedelta(days=1)
Status = Literal["written", "skipped", "unavailable"]


@dataclass(frozen=True)
class SeriesResult:
    """What landing one series for one day did."""

    series: str  # "BTC/USDT:USDT 5m", "BTC/USDT:USDT funding", "BTC/USDT:USDT open interest 1h"
    status: Status
    rows: int
    report: RepairReport | None = None
    reason: str = ""


def day_window(day: pd.Timestamp | str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = to_utc(day)
    if start != start.floor("D"):
        raise InputError(f"partition day {day!r} is not a UTC midnight")
    return start, start + DAY


def instruments(config: IngestConfig) -> list[str]:
    """Exchange symbols of the configured user symbols and markets (spot, perpetual)."""
    out: list[str] = []
    for symbol in config.symbols:
        if "spot" in config.markets:
            out.append(spot_symbol(symbol))
        if "perpetual" in config.markets:
            out.append(perpetual_symbol(symbol))
    return list(dict.fromkeys(out))


def check_exchange(exchange: Exchange, config: IngestConfig, backoff: Backoff) -> None:
    """Fail clearly (one line) when the exchange lacks a needed capability, timeframe or market."""
    needed = ["fetchOHLCV"]
    if config.funding and "perpetual" in config.markets:
        needed.append("fetchFundingRateHistory")
    require_capabilities(exchange, *needed)
    for timeframe in config.timeframes:
        require_timeframe(exchange, timeframe)
    markets = load_markets(exchange, backoff=backoff)
    missing = [s for s in instruments(config) if s not in markets]
    if missing:
        raise InputError(f"{exchange.id} lists no market {', '.join(repr(s) for s in missing)}")


def _expected(period: str) -> int:
    return int(DAY // timeframe_to_timedelta(period))


def land_ohlcv_day(
    store: ParquetStore,
    exchange: Exchange,
    day: pd.Timestamp | str,
    config: IngestConfig,
    *,
    now: pd.Timestamp | None = None,
    backoff: Backoff | None = None,
    skip_complete: bool = False,
) -> list[SeriesResult]:
    """Land every configured instrument × timeframe for ``day``."""
    start, end = day_window(day)
    backoff = backoff or _backoff(config)
    results = []
    for symbol in instruments(config):
        for timeframe in config.timeframes:
            series = f"{symbol} {timeframe}"
            path = store.candles_path(symbol, timeframe)
            if skip_complete and store.count_rows(path, start, end) >= _expected(timeframe):
                results.append(SeriesResult(series, "skipped", 0, reason="day already complete"))
                continue
            results.append(
                land_candles_range(
                    store, exchange, symbol, timeframe, start, end, config, now=now, backoff=backoff
                )
            )
    return results


def land_candles_range(
    store: ParquetStore,
    exchange: Exchange,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    config: IngestConfig,
    *,
    now: pd.Timestamp | None = None,
    backoff: Backoff | None = None,
) -> SeriesResult:
    """Fetch (paginated) and land the finished candles of one series in ``[start, end)``."""
    raw = fetch_ohlcv_history(
        exchange,
        symbol,
        timeframe,
        start,
        end,
        limit=config.page_limit,
        now=now,
        backoff=backoff or _backoff(config),
    )
    source = f"{exchange.id} {symbol} {timeframe} [{start.date()}, {end.date()})"
    return land_candles_frame(
        store, raw, symbol, timeframe, start, end, source=source, config=config
    )


def land_funding_range(
    store: ParquetStore,
    exchange: Exchange,
    perp: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    config: IngestConfig,
    *,
    backoff: Backoff | None = None,
) -> SeriesResult:
    """Fetch (paginated), validate and land the funding settlements in ``[start, end)``."""
    raw = fetch_funding_history(
        exchange, perp, start, end, limit=config.page_limit, backoff=backoff or _backoff(config)
    )
    source = f"{exchange.id} {perp} funding [{start.date()}, {end.date()})"
    clean = validate_funding(raw, source=source)
    store.replace_funding_range(clean, perp, start, end)
    return SeriesResult(f"{perp} funding", "written", len(clean))


def land_candles_frame(
    store: ParquetStore,
    frame: pd.DataFrame,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    source: str,
    config: IngestConfig,
) -> SeriesResult:
    """Repair + validate ``frame`` (from an exchange reply or a file named by ``source``) and
    replace ``[start, end)`` of the stored series with it. On any error nothing is written."""
    clean, report = repair_candles(
        frame,
        timeframe,
        source=source,
        max_fill_bars=0,  # the store keeps exchange truth; filling happens downstream
        outlier_k=config.outlier_k_sigma,
        outlier_window=config.outlier_window,
    )
    store.replace_candles_range(clean, symbol, timeframe, start, end)
    return SeriesResult(f"{symbol} {timeframe}", "written", len(clean), report)


def land_funding_day(
    store: ParquetStore,
    exchange: Exchange,
    day: pd.Timestamp | str,
    config: IngestConfig,
    *,
    backoff: Backoff | None = None,
    skip_complete: bool = False,
    funding_interval_hours: int = 8,
) -> list[SeriesResult]:
    """Land the funding settlements of every configured perpetual for ``day``."""
    start, end = day_window(day)
    backoff = backoff or _backoff(config)
    results = []
    for symbol in dict.fromkeys(perpetual_symbol(s) for s in config.symbols):
        series = f"{symbol} funding"
        path = store.funding_path(symbol)
        if skip_complete and store.count_rows(path, start, end) >= 24 // funding_interval_hours:
            results.append(SeriesResult(series, "skipped", 0, reason="day already complete"))
            continue
        results.append(
            land_funding_range(store, exchange, symbol, start, end, config, backoff=backoff)
        )
    return results


def land_open_interest_day(
    store: ParquetStore,
    exchange: Exchange,
    day: pd.Timestamp | str,
    config: IngestConfig,
    *,
    now: pd.Timestamp | None = None,
    backoff: Backoff | None = None,
) -> list[SeriesResult]:
    """Land open interest of every configured perpetual for ``day``, where the exchange has it."""
    start, end = day_window(day)
    backoff = backoff or _backoff(config)
    period = config.open_interest_period
    results = []
    for symbol in dict.fromkeys(perpetual_symbol(s) for s in config.symbols):
        series = f"{symbol} open interest {period}"
        got = fetch_open_interest_history(
            exchange, symbol, period, start, end, now=now, backoff=backoff
        )
        if got.status != "ok":
            results.append(SeriesResult(series, "unavailable", 0, reason=got.reason))
            continue
        store.replace_open_interest_range(got.frame, symbol, period, start, end)
        results.append(SeriesResult(series, "written", len(got.frame)))
    return results


def incomplete_chunks(
    store: ParquetStore,
    path: Path,
    days: pd.DatetimeIndex,
    per_day: int,
    chunk_days: int,
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """``[start, end)`` ranges of at most ``chunk_days`` consecutive days among ``days`` that the
    file at ``path`` does not hold completely (fewer than ``per_day`` rows)."""
    if len(days) == 0:
        return []
    counts = pd.Series(0, index=days)
    if path.is_file():
        stamps = store.read_timestamps(path, days[0], days[-1] + DAY)
        counts = counts.add(stamps.dt.floor("D").value_counts(), fill_value=0)
    todo = counts.index[counts.reindex(days).to_numpy() < per_day]
    chunks: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    for day in todo:
        if chunks and chunks[-1][1] == day and (day - chunks[-1][0]) < chunk_days * DAY:
            chunks[-1] = (chunks[-1][0], day + DAY)
        else:
            chunks.append((day, day + DAY))
    return chunks


def backfill(
    store: ParquetStore,
    exchange: Exchange,
    start: pd.Timestamp | str,
    end: pd.Timestamp | str,
    config: IngestConfig,
    *,
    now: pd.Timestamp | None = None,
    backoff: Backoff | None = None,
    chunk_days: int = 30,
    funding_interval_hours: int = 8,
    funding_start: pd.Timestamp | str | None = None,
) -> list[SeriesResult]:
    """Land every UTC day in ``[start, end)`` that the store does not hold completely.

    Missing days are fetched in paginated runs of at most ``chunk_days`` days, each written
    atomically as soon as it is fetched: a backfill that fails keeps every chunk already written,
    and rerunning it skips the complete days — it resumes where it stopped. Funding is landed
    from ``funding_start`` (default ``start``) to ``end``.
    """
    backoff = backoff or _backoff(config)
    check_exchange(exchange, config, backoff)
    days = pd.date_range(to_utc(start).floor("D"), to_utc(end), freq="D", inclusive="left")
    results: list[SeriesResult] = []

    first = to_utc(funding_start if funding_start is not None else start).floor("D")
    funding_days = pd.date_range(first, to_utc(end), freq="D", inclusive="left")

    def skipped(
        series: str, todo: list[tuple[pd.Timestamp, pd.Timestamp]], span: pd.DatetimeIndex = days
    ) -> None:
        done = len(span) - sum(int((b - a) / DAY) for a, b in todo)
        if done:
            results.append(SeriesResult(series, "skipped", 0, reason=f"{done} days complete"))

    for symbol in instruments(config):
        for timeframe in config.timeframes:
            path = store.candles_path(symbol, timeframe)
            todo = incomplete_chunks(store, path, days, _expected(timeframe), chunk_days)
            skipped(f"{symbol} {timeframe}", todo)
            results += [
                land_candles_range(
                    store, exchange, symbol, timeframe, a, b, config, now=now, backoff=backoff
                )
                for a, b in todo
            ]
    if config.funding and "perpetual" in config.markets:
        for perp in dict.fromkeys(perpetual_symbol(s) for s in config.symbols):
            per_day = 24 // funding_interval_hours
            path = store.funding_path(perp)
            todo = incomplete_chunks(store, path, funding_days, per_day, chunk_days)
            skipped(f"{perp} funding", todo, funding_days)
            results += [
                land_funding_range(store, exchange, perp, a, b, config, backoff=backoff)
                for a, b in todo
            ]
    written = sum(r.rows for r in results if r.status == "written")
    log.info("backfill of %d days: %d rows written", len(days), written)
    return results


def summarise(results: Sequence[SeriesResult]) -> dict[str, object]:
    """Counts for asset metadata: rows per series, statuses and the combined repair report."""
    reports = [r.report for r in results if r.report is not None]
    return {
        "rows_written": sum(r.rows for r in results if r.status == "written"),
        "rows_per_series": {r.series: r.rows for r in results if r.status == "written"},
        "unavailable": {r.series: r.reason for r in results if r.status == "unavailable"},
        "skipped": [r.series for r in results if r.status == "skipped"],
        "repairs": RepairReport.combine(reports).as_metadata(),
    }


def _backoff(config: IngestConfig) -> Backoff:
    retry = config.retry
    return Backoff(
        max_attempts=retry.max_attempts,
        base_delay_s=retry.base_delay_s,
        max_delay_s=retry.max_delay_s,
        jitter=retry.jitter,
    )


def backoff_from(config: IngestConfig) -> Backoff:
    """The configured :class:`Backoff` (real ``time.sleep``)."""
    return _backoff(config)
