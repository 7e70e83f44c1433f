"""The simulator's ledger: cash, open positions, fills with slippage and taker fees, funding.

Cash accounting (one shared equity): an entry pays its fee; an exit books
``direction * quantity * (exit_price - entry_price)`` minus its fee; a funding settlement moves
``direction * quantity * price * rate`` out of cash (a long pays a positive rate, a short receives
it). Equity = cash + unrealised P&L of the open positions. A trade's ``pnl`` is net of its fees and
funding, so the trades' pnl sum equals the equity change once everything is closed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import MissingFundingError
from cryptoml_pipeline.settings import CostConfig

TRADE_COLUMNS: tuple[str, ...] = (
    "symbol",
    "side",
    "entry_time",
    "entry_price",
    "exit_time",
    "exit_price",
    "quantity",
    "notional",
    "risk_amount",
    "pnl",
    "fees",
    "funding",
    "exit_reason",
)


def fill_price(raw_price: float, side: int, slippage: float) -> float:
    """Price paid (``side=+1``, buy: higher) or received (``side=-1``, sell: lower)."""
    return raw_price * (1.0 + side * slippage)


def stop_price(entry_price: float, direction: int, stop_distance: float) -> float:
    return entry_price * (1.0 - direction * stop_distance)


@dataclass
class Position:
    direction: int  # +1 long, -1 short
    quantity: float
    entry_price: float  # fill price, slippage included
    entry_time: pd.Timestamp
    entry_ordinal: int  # the symbol's bar count at entry
    planned_exit: int  # ordinal of the bar at whose open the hold period ends
    stop: float
    risk_amount: float
    fees: float = 0.0
    funding: float = 0.0  # net paid (negative = received)

    def unrealised(self, price: float) -> float:
        return self.direction * self.quantity * (price - self.entry_price)


class Ledger:
    """Mutable book of one simulation. Symbols are addressed by their index."""

    def __init__(self, symbols: tuple[str, ...], costs: CostConfig) -> None:
        self.symbols = symbols
        self.initial_equity = float(costs.initial_equity)
        self.cash = float(costs.initial_equity)
        self.taker_fee = float(costs.taker_fee)
        self.slippage = float(costs.slippage_bps) / 10_000.0
        self.positions: list[Position | None] = [None] * len(symbols)
        self.fees_paid = 0.0
        self.funding_paid = 0.0
        self._trades: list[tuple] = []

    def open(
        self,
        s: int,
        *,
        direction: int,
        raw_price: float,
        notional: float,
        time: pd.Timestamp,
        ordinal: int,
        hold_bars: int,
        stop_distance: float,
        risk_amount: float,
    ) -> Position:
        price = fill_price(raw_price, direction, self.slippage)
        quantity = notional / price
        fee = self.taker_fee * quantity * price
        self.cash -= fee
        self.fees_paid += fee
        position = Position(
            direction=direction,
            quantity=quantity,
            entry_price=price,
            entry_time=time,
            entry_ordinal=ordinal,
            planned_exit=ordinal + hold_bars,
            stop=stop_price(price, direction, stop_distance),
            risk_amount=risk_amount,
            fees=fee,
        )
        self.positions[s] = position
        return position

    def close(self, s: int, *, raw_price: float, time: pd.Timestamp, reason: str) -> None:
        position = self.positions[s]
        if position is None:
            return
        price = fill_price(raw_price, -position.direction, self.slippage)
        fee = self.taker_fee * position.quantity * price
        gross = position.unrealised(price)
        self.cash += gross - fee
        self.fees_paid += fee
        fees = position.fees + fee
        self._trades.append(
            (
                self.symbols[s],
                "long" if position.direction > 0 else "short",
                position.entry_time,
                position.entry_price,
                time,
                price,
                position.quantity,
                position.quantity * position.entry_price,
                position.risk_amount,
                gross - fees - position.funding,
                fees,
                position.funding,
                reason,
            )
        )
        self.positions[s] = None

    def settle_funding(self, s: int, *, price: float, rate: float) -> None:
        position = self.positions[s]
        if position is None:
            return
        payment = position.direction * position.quantity * price * rate
        self.cash -= payment
        self.funding_paid += payment
        position.funding += payment

    def settle_all(self, *, time: pd.Timestamp, rates: list[float], prices: list[float]) -> None:
        """One settlement instant for every open position (``rates``/``prices`` per symbol).

        Raises :class:`MissingFundingError` when a position is held and its rate is unknown.
        """
        for s, position in enumerate(self.positions):
            if position is None:
                continue
            rate = rates[s]
            if not math.isfinite(rate):
                raise MissingFundingError(
                    f"no funding rate for {self.symbols[s]} at {time.isoformat()} "
                    "while a position was held"
                )
            self.settle_funding(s, price=prices[s], rate=rate)

    def open_risk(self) -> float:
        return sum(p.risk_amount for p in self.positions if p is not None)

    def gross_notional(self, prices: list[float]) -> float:
        return sum(p.quantity * prices[s] for s, p in enumerate(self.positions) if p is not None)

    def equity(self, prices: list[float]) -> float:
        return self.cash + sum(
            p.unrealised(prices[s]) for s, p in enumerate(self.positions) if p is not None
        )

    def trades_frame(self) -> pd.DataFrame:
        trades = pd.DataFrame.from_records(self._trades, columns=list(TRADE_COLUMNS))
        for col in ("entry_time", "exit_time"):
            trades[col] = pd.to_datetime(trades[col], utc=True).astype("datetime64[ns, UTC]")
        floats = ["entry_price", "exit_price", "quantity", "notional", "risk_amount", "pnl"]
        for col in [*floats, "fees", "funding"]:
            trades[col] = trades[col].astype(np.float64)
        for col in ("symbol", "side", "exit_reason"):
            trades[col] = trades[col].astype(str)
        return trades
