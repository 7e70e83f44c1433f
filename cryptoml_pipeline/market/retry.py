"""Bounded retries with exponential backoff and jitter around exchange requests.

Transient ccxt errors (``NetworkError`` and its subclasses ``RateLimitExceeded``, ``DDoSProtection``
— what ccxt raises for HTTP 429/418 —, ``ExchangeNotAvailable`` — HTTP 5xx —, ``RequestTimeout``)
and ``BadResponse`` (a truncated or unparseable reply) are retried at most
``max_attempts - 1`` times. Permanent errors (``BadSymbol``, ``AuthenticationError``,
``NotSupported``) fail at once. Either way the final error is an :class:`ExchangeFetchError` with a
one-line message naming what was fetched. ``sleep`` and ``rng`` are injectable so tests never sleep.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from cryptoml_pipeline.errors import CryptoMLError, InputError

log = logging.getLogger(__name__)

T = TypeVar("T")

# ccxt is imported lazily (≈0.3 s): importing the market package must stay cheap
RETRYABLE_NAMES: tuple[str, ...] = ("NetworkError", "BadResponse")
PERMANENT_NAMES: tuple[str, ...] = ("BadSymbol", "AuthenticationError", "NotSupported")


def _classes(names: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    import ccxt

    return tuple(getattr(ccxt, name) for name in names)


class ExchangeFetchError(CryptoMLError, RuntimeError):
    """An exchange request failed for good (permanent error, or transient ones past the bound)."""


class PermanentExchangeError(ExchangeFetchError, InputError):
    """Bad symbol, bad credentials or an unsupported call: retrying cannot help."""


@dataclass(frozen=True)
class Backoff:
    """``delay(n) = min(max_delay, base * 2**n) * (1 ± jitter)`` for the n-th retry (n from 0)."""

    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    jitter: float = 0.25
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, retry: int) -> float:
        raw = min(self.max_delay_s, self.base_delay_s * (2.0**retry))
        return max(0.0, raw * (1.0 + self.jitter * (2.0 * self.rng.random() - 1.0)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def call_with_retries(fn: Callable[[], T], *, what: str, backoff: Backoff) -> T:
    """``fn()``, retried on transient exchange errors; ``what`` names the request in errors."""
    import ccxt

    permanent, retryable = _classes(PERMANENT_NAMES), _classes(RETRYABLE_NAMES)
    attempt = 0
    while True:
        try:
            return fn()
        except permanent as exc:
            raise PermanentExchangeError(
                f"{what}: {type(exc).__name__} (not retried): {_first_line(exc)}"
            ) from exc
        except retryable as exc:
            attempt += 1
            if attempt >= backoff.max_attempts:
                raise ExchangeFetchError(
                    f"{what}: {type(exc).__name__} after {attempt} attempts: {_first_line(exc)}"
                ) from exc
            pause = backoff.delay(attempt - 1)
            log.warning(
                "%s: %s (attempt %d/%d); retrying in %.2fs",
                what,
                type(exc).__name__,
                attempt,
                backoff.max_attempts,
                pause,
            )
            backoff.sleep(pause)
        except ccxt.BaseError as exc:  # any other exchange error: clear, not retried
            raise ExchangeFetchError(
                f"{what}: {type(exc).__name__} (not retried): {_first_line(exc)}"
            ) from exc
