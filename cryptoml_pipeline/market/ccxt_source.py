"""Download candles and funding history through ccxt (public endpoints, no API keys).

Pagination walks forward from ``since``: each request starts just after the last candle received,
until ``until`` is reached or a request brings no new rows. The still-forming candle
(``open + timeframe > now``) is dropped, and no row is ever returned twice.

Every request goes through :func:`call_with_retries` (bounded exponential backoff with jitter on
transient errors; immediate failure on ``BadSymbol`` / ``AuthenticationError`` / ``NotSupported``).
A reply that ccxt could not decode (truncated JSON) is a retryable ``BadResponse``; a decoded reply
with missing/non-numeric values is a :class:`DataValidationError` naming the symbol and timestamp.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import pandas as pd

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.market.layout import perpetual_symbol, spot_symbol
from cryptoml_pipeline.market.retry import Backoff, call_with_retries
from cryptoml_pipeline.market.schemas import CANDLE_COLUMNS, FUNDING_COLUMNS, TS_DTYPE
from cryptoml_pipeline.market.store import ParquetStore
from cryptoml_pipeline.timing import timeframe_to_timedelta, to_utc

if TYPE_CHECKING:
    from ccxt.base.exchange import Exchange

log = logging.getLogger(__name__)

_MS = pd.Timedelta(milliseconds=1)
_EPOCH = pd.Timestamp(0, tz="UTC")


def make_exchange(
    exchange_id: str = "binance",
    *,
    api_key: str | None = None,
    secret: str | None = None,
    market_type: str | None = None,
) -> Exchange:
    """A ccxt exchange with rate limiting on. Constructing it needs no network.

    Public endpoints need no keys. Keys, when given, must come from environment variables
    (``dagster.EnvVar`` in the Dagster wiring); they are never logged or put in errors.
    """
    import ccxt

    if exchange_id not in ccxt.exchanges:
        raise InputError(f"unknown ccxt exchange {exchange_id!r}")
    options: dict[str, object] = {}
    if exchange_id == "binance":
        # spot + USDT-M markets are all this pipeline trades; skip the COIN-M/option listings.
        options["fetchMarkets"] = {"types": ["spot", "linear"]}
    if market_type:
        options["defaultType"] = market_type
    config: dict[str, object] = {"enableRateLimit": True, "options": options}
    if api_key:
        config["apiKey"] = api_key
    if secret:
        config["secret"] = secret
    return getattr(ccxt, exchange_id)(config)


def require_capabilities(exchange: Exchange, *capabilities: str) -> None:
    """Raise a one-line :class:`InputError` naming every capability the exchange lacks."""
    missing = [c for c in capabilities if not exchange.has.get(c)]
    if missing:
        raise InputError(f"exchange {exchange.id!r} does not support {', '.join(missing)}")


def require_timeframe(exchange: Exchange, timeframe: str) -> None:
    offered = getattr(exchange, "timeframes", None) or {}
    if timeframe not in offered:
        raise InputError(
            f"exchange {exchange.id!r} offers no {timeframe} candles "
            f"(it offers {', '.join(offered) or 'none'})"
        )


def _ms(ts: pd.Timestamp) -> int:
    return int((to_utc(ts) - _EPOCH) // _MS)


def _from_ms(values: Sequence[int]) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), unit="ms", utc=True)).astype(TS_DTYPE)


def _require(exchange: Exchange, capability: str) -> None:
    require_capabilities(exchange, capability)


T = TypeVar("T")


def _request(exchange: Exchange, fn: Callable[[], T], *, what: str, backoff: Backoff | None) -> T:
    """One exchange request, retried; a reply ccxt could not decode becomes ``BadResponse``."""
    import ccxt

    def attempt() -> T:
        exchange.last_http_response = None
        result = fn()
        raw = getattr(exchange, "last_http_response", None)
        if isinstance(raw, str) and raw:
            try:
                json.loads(raw)
            except ValueError as exc:
                raise ccxt.BadResponse(f"truncated or invalid JSON reply ({exc})") from None
        return result

    return call_with_retries(attempt, what=what, backoff=backoff or Backoff())


def load_markets(exchange: Exchange, *, backoff: Backoff | None = None) -> dict:
    """The exchange's markets (loaded once, with retries; canned markets are used as they are)."""
    if exchange.markets is None:
        _request(exchange, exchange.load_markets, what=f"{exchange.id} markets", backoff=backoff)
    return exchange.markets


def _check_rows(rows: list, *, what: str) -> None:
    """Reject decoded kline rows with missing/non-numeric values (one line, first timestamp)."""
    for row in rows:
        if len(row) < 6 or any(v is None for v in row[:6]):
            when = pd.Timestamp(int(row[0]), unit="ms", tz="UTC") if row and row[0] else "?"
            raise DataValidationError(
                f"{what}: exchange reply has a missing or non-numeric value at {when}: {row[:6]}"
            )


def fetch_ohlcv_history(
    exchange: Exchange,
    symbol: str,
    timeframe: str,
    since: pd.Timestamp,
    until: pd.Timestamp,
    *,
    limit: int = 1000,
    now: pd.Timestamp | None = None,
    backoff: Backoff | None = None,
) -> pd.DataFrame:
    """Long candles of ``symbol`` (exchange notation) with open times in ``[since, until)``.

    Only finished candles: a candle whose ``open + timeframe`` is after ``now`` is dropped.
    """
    _require(exchange, "fetchOHLCV")
    require_timeframe(exchange, timeframe)
    bar_ms = _ms(_EPOCH + timeframe_to_timedelta(timeframe))
    now_ms = _ms(now if now is not None else pd.Timestamp.now(tz="UTC"))
    cursor, until_ms = _ms(since), _ms(until)
    rows: dict[int, list] = {}
    pages = 0
    while cursor < until_ms:
        since_ms = cursor
        batch = _request(
            exchange,
            partial(
                exchange.fetch_ohlcv,
                symbol,
                timeframe,
                since=since_ms,
                limit=limit,
                params={"until": until_ms - 1},
            ),
            what=f"{exchange.id} {symbol} {timeframe} candles from {_from_ms([since_ms])[0]}",
            backoff=backoff,
        )
        _check_rows(batch, what=f"{exchange.id} {symbol} {timeframe}")
        pages += 1
        fresh = [r for r in batch if cursor <= int(r[0]) < until_ms and int(r[0]) not in rows]
        if not fresh:
            break
        rows.update({int(r[0]): list(r[:6]) for r in fresh})
        cursor = max(rows) + 1
    finished = sorted(t for t in rows if t + bar_ms <= now_ms)
    dropped = len(rows) - len(finished)
    log.debug(
        "%s %s: %d candles in %d requests (%d unfinished dropped)",
        symbol,
        timeframe,
        len(finished),
        pages,
        dropped,
    )
    data = [rows[t] for t in finished]
    frame = pd.DataFrame(data, columns=["ms", "open", "high", "low", "close", "volume"])
    frame["timestamp"] = _from_ms(frame["ms"].tolist())
    frame["symbol"] = symbol
    for col in ("open", "high", "low", "close", "volume"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame[list(CANDLE_COLUMNS)]


def fetch_funding_history(
    exchange: Exchange,
    perp_symbol: str,
    since: pd.Timestamp,
    until: pd.Timestamp,
    *,
    limit: int = 1000,
    backoff: Backoff | None = None,
) -> pd.DataFrame:
    """Long funding of the perpetual with settlement times in ``[since, until)``.

    Settlement times are floored to the second (Binance reports jitter such as ``08:00:00.001``).
    """
    _require(exchange, "fetchFundingRateHistory")
    cursor, until_ms = _ms(since), _ms(until)
    rates: dict[int, float] = {}
    last_raw = -1
    while cursor < until_ms:
        since_ms = cursor
        batch = _request(
            exchange,
            partial(
                exchange.fetch_funding_rate_history,
                perp_symbol,
                since=since_ms,
                limit=limit,
                params={"until": until_ms - 1},
            ),
            what=f"{exchange.id} {perp_symbol} funding from {_from_ms([since_ms])[0]}",
            backoff=backoff,
        )
        for record in batch:
            if record.get("timestamp") is not None and record.get("fundingRate") is None:
                raise DataValidationError(
                    f"{exchange.id} {perp_symbol} funding: reply has a missing or non-numeric "
                    f"rate at {_from_ms([int(record['timestamp'])])[0]}"
                )
        fresh = [
            r for r in batch if r["timestamp"] is not None and cursor <= r["timestamp"] < until_ms
        ]
        fresh = [r for r in fresh if int(r["timestamp"]) > last_raw]
        if not fresh:
            break
        for record in fresh:
            rates[int(record["timestamp"]) // 1000 * 1000] = record["fundingRate"]
        last_raw = max(int(r["timestamp"]) for r in fresh)
        cursor = last_raw + 1
    stamps = sorted(rates)
    frame = pd.DataFrame(
        {
            "timestamp": _from_ms(stamps),
            "symbol": perp_symbol,
            "funding_rate": pd.Series([rates[t] for t in stamps], dtype="float64"),
        }
    )
    return frame[list(FUNDING_COLUMNS)]


def _fetch_start(
    coverage: tuple[pd.Timestamp, pd.Timestamp] | None, start: pd.Timestamp, step: pd.Timedelta
) -> pd.Timestamp:
    """Resume after the stored data when it already covers ``start``; else fetch from ``start``."""
    if coverage is not None and coverage[0] <= start:
        return max(start, coverage[1] + step)
    return start


def download_to_store(
    store: ParquetStore,
    symbols: Sequence[str],
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    exchange: Exchange | None = None,
) -> dict[str, int]:
    """Fetch spot candles, perpetual candles and perpetual funding of each user symbol for
    ``[start, end)`` into ``store`` (only what the store does not already hold from ``start`` on).

    Returns the number of new rows fetched per series (``"BTC/USDT:USDT funding"`` etc.).
    """
    if not symbols:
        raise InputError("no symbols selected")
    exchange = exchange if exchange is not None else make_exchange()
    _require(exchange, "fetchOHLCV")
    _require(exchange, "fetchFundingRateHistory")
    start, end = to_utc(start), to_utc(end)
    bar = timeframe_to_timedelta(timeframe)
    load_markets(exchange)
    fetched: dict[str, int] = {}
    for symbol in symbols:
        spot, perp = spot_symbol(symbol), perpetual_symbol(symbol)
        for market in (spot, perp):
            if market not in exchange.markets:
                raise InputError(f"{exchange.id} lists no market {market!r} (for {symbol!r})")
        for market in (spot, perp):
            since = _fetch_start(store.candle_coverage(market, timeframe), start, bar)
            if since >= end:
                log.info("%s %s candles already stored up to %s", market, timeframe, end)
                continue
            log.info(
                "downloading %s %s candles %s .. %s from %s",
                market,
                timeframe,
                since,
                end,
                exchange.id,
            )
            candles = fetch_ohlcv_history(exchange, market, timeframe, since, end)
            fetched[f"{market} {timeframe}"] = len(candles)
            if len(candles):
                store.write_candles(candles, market, timeframe)
        since = _fetch_start(
            store.funding_coverage(perp), start - pd.Timedelta(hours=8), pd.Timedelta(seconds=1)
        )
        if since < end:
            log.info("downloading %s funding %s .. %s from %s", perp, since, end, exchange.id)
            funding = fetch_funding_history(exchange, perp, since, end)
            fetched[f"{perp} funding"] = len(funding)
            if len(funding):
                store.write_funding(funding, perp)
    log.info("download done: %s", fetched)
    return fetched
