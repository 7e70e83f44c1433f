"""Open-interest history of a perpetual through ccxt, where the exchange offers it.

An exchange without ``fetchOpenInterestHistory`` yields an explicit *unavailable* result, never
made-up numbers. Binance serves only about the last 30 days of this history (``period`` 5m..1d).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import pandas as pd

from cryptoml_pipeline.errors import DataValidationError
from cryptoml_pipeline.market.ccxt_source import _from_ms, _ms, _request
from cryptoml_pipeline.market.retry import Backoff
from cryptoml_pipeline.market.schemas import OPEN_INTEREST_COLUMNS, validate_open_interest
from cryptoml_pipeline.timing import timeframe_to_timedelta

if TYPE_CHECKING:
    from ccxt.base.exchange import Exchange

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenInterest:
    """``status`` ``"ok"``, or ``"unavailable"`` (``frame`` empty, ``reason`` says why)."""

    status: str
    frame: pd.DataFrame
    reason: str = ""


def empty_open_interest() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
            "symbol": pd.Series(dtype="str"),
            "open_interest": pd.Series(dtype="float64"),
            "open_interest_value": pd.Series(dtype="float64"),
        }
    )


def fetch_open_interest_history(
    exchange: Exchange,
    perp_symbol: str,
    period: str,
    since: pd.Timestamp,
    until: pd.Timestamp,
    *,
    limit: int = 500,
    now: pd.Timestamp | None = None,
    backoff: Backoff | None = None,
) -> OpenInterest:
    """Open interest (base units and quote value) stamped in ``[since, until)``, up to now."""
    if not exchange.has.get("fetchOpenInterestHistory"):
        reason = f"exchange {exchange.id!r} does not offer fetchOpenInterestHistory"
        log.warning("%s open interest unavailable: %s", perp_symbol, reason)
        return OpenInterest("unavailable", empty_open_interest(), reason)
    step_ms = _ms(pd.Timestamp(0, tz="UTC") + timeframe_to_timedelta(period))
    now_ms = _ms(now if now is not None else pd.Timestamp.now(tz="UTC"))
    cursor, until_ms = _ms(since), _ms(until)
    rows: dict[int, tuple[float | None, float | None]] = {}
    while cursor < until_ms:
        since_ms = cursor
        batch = _request(
            exchange,
            partial(
                exchange.fetch_open_interest_history,
                perp_symbol,
                period,
                since=since_ms,
                limit=limit,
                params={"until": until_ms - 1},
            ),
            what=f"{exchange.id} {perp_symbol} open interest from {_from_ms([since_ms])[0]}",
            backoff=backoff,
        )
        fresh = [
            r
            for r in batch
            if r.get("timestamp") is not None and since_ms <= int(r["timestamp"]) < until_ms
        ]
        fresh = [r for r in fresh if int(r["timestamp"]) not in rows]
        if not fresh:
            break
        for r in fresh:
            amount, value = r.get("openInterestAmount"), r.get("openInterestValue")
            if amount is None and value is None:
                raise DataValidationError(
                    f"{exchange.id} {perp_symbol} open interest: reply has no value at "
                    f"{_from_ms([int(r['timestamp'])])[0]}"
                )
            rows[int(r["timestamp"])] = (amount, value)
        cursor = max(rows) + 1
    # a snapshot stamped t is known from t on: drop any stamped after now (or off the period grid)
    stamps = sorted(t for t in rows if t <= now_ms and t % step_ms == 0)
    frame = pd.DataFrame(
        {
            "timestamp": _from_ms(stamps),
            "symbol": perp_symbol,
            "open_interest": pd.Series([rows[t][0] for t in stamps], dtype="float64"),
            "open_interest_value": pd.Series([rows[t][1] for t in stamps], dtype="float64"),
        }
    )
    # a corrupted reply (negative / non-finite values) fails here, before anything is stored
    source = f"{exchange.id} {perp_symbol} open interest"
    return OpenInterest(
        "ok", validate_open_interest(frame[list(OPEN_INTEREST_COLUMNS)], source=source)
    )
