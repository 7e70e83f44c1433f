"""Exact microstructure features from trade-level data (ccxt ``fetch_trades`` format).

A trade is a dict (or a row) with ``timestamp`` (ms since epoch, UTC), ``symbol``, ``side``
(the taker's side, ``"buy"``/``"sell"``, or ``None``), ``price``, ``amount`` (base currency) and
optionally ``cost`` (quote currency; ``price * amount`` when absent). A trade at time ``tau``
belongs to the bar with ``open <= tau < open + bar``; that bar's row is known at its close, so the
features stay causal. Per bar:

* ``ofi_trades`` — exact order-flow imbalance ``(buy - sell) / (buy + sell)`` volume, buy/sell by
  the taker side (the **Lee–Ready** fallback: the trade-to-trade tick rule when ``side`` is None).
* ``tick_imbalance_trades`` — mean tick-rule sign over the bar's trades (trade-to-trade price
  change; a zero change repeats the previous sign).
* ``vw_pressure_trades`` — ``log(last price / bar VWAP)``.
* ``large_trade_share_{b}`` — share of the bar's volume in trades with ``cost >= b`` for each
  ``b`` of ``trade_size_buckets``.

Bars inside the trades' coverage (first to last trade) without trades get 0; bars outside it NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.timing import timeframe_to_timedelta

__all__ = ["trade_feature_names", "trade_features", "trades_frame"]

_TRADE_COLUMNS = ("timestamp", "symbol", "price", "amount")


def trade_feature_names(buckets: Sequence[float]) -> list[str]:
    names = ["ofi_trades", "tick_imbalance_trades", "vw_pressure_trades"]
    return names + [f"large_trade_share_{int(b)}" for b in buckets]


def trades_frame(trades: pd.DataFrame | Sequence[dict]) -> pd.DataFrame:
    """Normalise ccxt ``fetch_trades`` output (list of dicts or a frame) into a typed frame sorted
    by symbol, time (ties keep input order). Raises :class:`InputError` on missing fields."""
    frame = pd.DataFrame(list(trades)) if not isinstance(trades, pd.DataFrame) else trades.copy()
    missing = [c for c in _TRADE_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"trades lack field(s) {missing} (ccxt fetch_trades format expected)")
    side = frame["side"] if "side" in frame.columns else pd.Series(None, index=frame.index)
    bad = ~side.isna() & ~side.isin(["buy", "sell"])
    if bad.any():
        raise InputError(f"trade side must be 'buy', 'sell' or None, got {side[bad].iloc[0]!r}")
    price = frame["price"].to_numpy(dtype=np.float64)
    amount = frame["amount"].to_numpy(dtype=np.float64)
    if (price <= 0).any() or (amount < 0).any() or np.isnan(price).any():
        raise InputError("trades: price must be positive and amount non-negative")
    cost = frame["cost"].to_numpy(dtype=np.float64) if "cost" in frame.columns else price * amount
    cost = np.where(np.isnan(cost), price * amount, cost)
    out = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(frame["timestamp"].astype("int64"), unit="ms", utc=True)
            .astype("datetime64[ns, UTC]")
            .array,
            "symbol": frame["symbol"].astype(str).array,
            "side": side.astype(object).array,
            "price": price,
            "amount": amount,
            "cost": cost,
        }
    )
    return out.sort_values(["symbol", "timestamp"], kind="stable", ignore_index=True)


def _tick_signs(price: np.ndarray) -> np.ndarray:
    change = np.zeros(price.shape[0])
    change[1:] = np.sign(np.diff(price))
    s = pd.Series(np.where(change == 0, np.nan, change))
    return s.ffill().fillna(0.0).to_numpy().copy()


def trade_features(
    bar_open: pd.Series,
    symbol: str,
    trades: pd.DataFrame,
    *,
    timeframe: str,
    buckets: Sequence[float],
) -> dict[str, np.ndarray]:
    """Trade features for ONE symbol's bars ``bar_open`` (time-ordered open times)."""
    names = trade_feature_names(buckets)
    n = len(bar_open)
    out = {name: np.full(n, np.nan) for name in names}
    mine = trades[trades["symbol"] == symbol]
    if mine.empty or n == 0:
        return out
    bar = timeframe_to_timedelta(timeframe)
    opens = pd.Series(bar_open).astype("datetime64[ns, UTC]").array.asi8
    ts = mine["timestamp"].array.asi8
    price = mine["price"].to_numpy()
    amount = mine["amount"].to_numpy()
    ticks = _tick_signs(price)
    side = mine["side"].to_numpy(dtype=object)
    sign = np.where(side == "buy", 1.0, np.where(side == "sell", -1.0, ticks))
    bar_of = np.searchsorted(opens, ts, side="right") - 1
    inside = (bar_of >= 0) & (ts < opens[np.clip(bar_of, 0, n - 1)] + bar.value)
    bar_of = np.where(inside, bar_of, -1)
    keep = bar_of >= 0
    idx = bar_of[keep]
    vol = np.bincount(idx, amount[keep], minlength=n)
    count = np.bincount(idx, minlength=n).astype(np.float64)
    covered = np.zeros(n, dtype=bool)
    if keep.any():
        covered[idx.min() : idx.max() + 1] = True
    with np.errstate(invalid="ignore", divide="ignore"):
        ofi = np.where(vol > 0, np.bincount(idx, sign[keep] * amount[keep], minlength=n) / vol, 0)
        tick = np.where(count > 0, np.bincount(idx, ticks[keep], minlength=n) / count, 0.0)
        notional = np.bincount(idx, price[keep] * amount[keep], minlength=n)
        vwap = np.where(vol > 0, notional / vol, np.nan)
        last_price = np.full(n, np.nan)
        last_of_bar = np.flatnonzero(np.r_[idx[1:] != idx[:-1], True])  # idx is ascending
        last_price[idx[last_of_bar]] = price[keep][last_of_bar]
        pressure = np.where(vol > 0, np.log(last_price / vwap), 0.0)
        shares = [
            np.where(
                vol > 0,
                np.bincount(idx, amount[keep] * (mine["cost"].to_numpy()[keep] >= b), minlength=n)
                / vol,
                0.0,
            )
            for b in buckets
        ]
    for name, values in zip(names, [ofi, tick, pressure, *shares], strict=True):
        out[name] = np.where(covered, values, np.nan)
    return out
