"""File layout of a market-data directory (the layout of ``../shared/data``).

* candles: ``ROOT/market/BTC_USDT-1h.parquet`` (spot ``BTC/USDT``),
  ``ROOT/market/BTC_USDT_USDT-1h.parquet`` (USDT-M perpetual ``BTC/USDT:USDT``)
* funding: ``ROOT/funding/BTC_USDT_USDT-funding.parquet``

Symbols follow ccxt: ``BASE/QUOTE`` is spot, ``BASE/QUOTE:SETTLE`` the perpetual swap.
"""

from __future__ import annotations

from pathlib import Path

from cryptoml_pipeline.errors import InputError

MARKET_DIR = "market"
FUNDING_DIR = "funding"


def symbol_to_stem(symbol: str) -> str:
    """``"BTC/USDT:USDT"`` -> ``"BTC_USDT_USDT"`` (``/`` and ``:`` become ``_``)."""
    return symbol.replace("/", "_").replace(":", "_")


def _split(symbol: str) -> tuple[str, str]:
    pair = symbol.split(":", 1)[0]
    base, sep, quote = pair.partition("/")
    if not sep or not base or not quote or "/" in quote:
        raise InputError(f"bad symbol {symbol!r}: expected BASE/QUOTE such as 'BTC/USDT'")
    return base, quote


def perpetual_symbol(spot: str) -> str:
    """``"BTC/USDT"`` -> ``"BTC/USDT:USDT"``: the linear perpetual settled in the quote currency.

    A symbol that already names a settle currency (``"BTC/USDT:USDT"``) is returned unchanged.
    """
    _split(spot)
    if ":" in spot:
        return spot
    return f"{spot}:{_split(spot)[1]}"


def spot_symbol(symbol: str) -> str:
    """``"BTC/USDT:USDT"`` -> ``"BTC/USDT"``; a spot symbol is returned unchanged."""
    _split(symbol)
    return symbol.split(":", 1)[0]


def candles_path(root: Path, symbol: str, timeframe: str) -> Path:
    """``root/market/STEM-TF.parquet``, e.g. ``root/market/BTC_USDT_USDT-1h.parquet``."""
    return Path(root) / MARKET_DIR / f"{symbol_to_stem(symbol)}-{timeframe}.parquet"


def funding_path(root: Path, perp_symbol: str) -> Path:
    """``root/funding/STEM-funding.parquet`` of the perpetual (a spot symbol maps to its perp)."""
    return (
        Path(root)
        / FUNDING_DIR
        / f"{symbol_to_stem(perpetual_symbol(perp_symbol))}-funding.parquet"
    )


OPEN_INTEREST_DIR = "open_interest"


def open_interest_path(root: Path, perp_symbol: str, period: str) -> Path:
    """``root/open_interest/STEM-oi-PERIOD.parquet``, e.g. ``BTC_USDT_USDT-oi-1h.parquet``."""
    stem = symbol_to_stem(perpetual_symbol(perp_symbol))
    return Path(root) / OPEN_INTEREST_DIR / f"{stem}-oi-{period}.parquet"
