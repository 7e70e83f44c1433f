"""The simulator's ledger, driven from Python: cash, open positions, fills with slippage and taker
fees, funding (used by the baselines). The accounting is the kernel's (:mod:`.kernel`).

Cash accounting (one shared equity): an entry pays its fee; an exit books
``direction * quantity * (exit_price - entry_price)`` minus its fee; a funding settlement moves
``direction * quantity * price * rate`` out of cash (a long pays a positive rate, a short receives
it). Equity = cash + unrealised P&L of the open positions. A trade's ``pnl`` is net of its fees and
funding, so the trades' pnl sum equals the equity change once everything is closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import MissingFundingError
from cryptoml_pipeline.execution import kernel as K
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
    return float(K.fill_price(raw_price, side, slippage))


def stop_price(entry_price: float, direction: int, stop_distance: float) -> float:
    return fill_price(entry_price, -direction, stop_distance)


@dataclass
class Position:
    """A snapshot of one open position of a :class:`Ledger`."""

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
    """Mutable book of one simulation, driven from Python one event at a time. Symbols are
    addressed by their index. The book is the kernel's (``kernel.new_book``) and every booking
    is a kernel helper (:func:`kernel.open_position`, :func:`kernel.close_position`,
    :func:`kernel.settle`, :func:`kernel.mark`): the simulator's own accounting."""

    def __init__(self, symbols: tuple[str, ...], costs: CostConfig) -> None:
        self.symbols = symbols
        self.initial_equity = float(costs.initial_equity)
        self.taker_fee = float(costs.taker_fee)
        self.slippage = float(costs.slippage_bps) / 10_000.0
        self._pos, self._acct = K.new_book(len(symbols), self.initial_equity)
        self._records = K.new_records(max(8, len(symbols)))
        self._entry_times: list[pd.Timestamp | None] = [None] * len(symbols)
        self._closed: list[tuple[pd.Timestamp, pd.Timestamp, str]] = []  # entry, exit, reason
        self._error = np.zeros(3, dtype=np.int64)

    @property
    def cash(self) -> float:
        return float(self._acct[K.A_CASH])

    @property
    def fees_paid(self) -> float:
        return float(self._acct[K.A_FEES])

    @property
    def funding_paid(self) -> float:
        return float(self._acct[K.A_FUNDING])

    @property
    def positions(self) -> list[Position | None]:
        return [self._position(s) for s in range(len(self.symbols))]

    def _position(self, s: int) -> Position | None:
        p = self._pos[:, s]
        if p[K.P_DIR] == 0.0:
            return None
        return Position(
            direction=int(p[K.P_DIR]),
            quantity=float(p[K.P_QTY]),
            entry_price=float(p[K.P_ENTRY_PX]),
            entry_time=self._entry_times[s],  # type: ignore[arg-type]
            entry_ordinal=int(p[K.P_ENTRY_BAR]),
            planned_exit=int(p[K.P_PLANNED]),
            stop=float(p[K.P_STOP]),
            risk_amount=float(p[K.P_RISK]),
            fees=float(p[K.P_FEES]),
            funding=float(p[K.P_FUNDING]),
        )

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
        pos = self._pos
        K.open_position(
            pos,
            self._acct,
            s,
            direction,
            quantity,
            price,
            raw_price,
            self.taker_fee,
            ordinal,
            np.nan,
            risk_amount,
        )
        pos[K.P_PLANNED, s] = ordinal + hold_bars
        pos[K.P_STOP, s] = stop_price(price, direction, stop_distance)
        self._entry_times[s] = time
        return self._position(s)  # type: ignore[return-value]

    def close(self, s: int, *, raw_price: float, time: pd.Timestamp, reason: str) -> None:
        direction = self._pos[K.P_DIR, s]
        if direction == 0.0:
            return
        row = len(self._closed)
        if row == self._records.shape[1]:
            grown = K.new_records(2 * row)
            grown[:, :row] = self._records
            self._records = grown
        price = fill_price(raw_price, -direction, self.slippage)
        code = K.EXIT_REASONS.index(reason) if reason in K.EXIT_REASONS else -1
        K.close_position(
            self._pos,
            self._acct,
            self._records,
            row,
            s,
            -1,
            price,
            raw_price,
            self.taker_fee,
            code,
            K.AT_CLOSE,
        )
        self._closed.append((self._entry_times[s], time, reason))  # type: ignore[arg-type]

    def settle_funding(self, s: int, *, price: float, rate: float) -> None:
        """One settlement on symbol ``s``'s position (nothing when it is flat)."""
        one = slice(s, s + 1)
        rates = np.array([[rate]], dtype=np.float64)
        prices = np.array([price], dtype=np.float64)
        K.settle(0, 1, rates, self._pos[:, one], prices, self._acct, self._error)

    def settle_all(self, *, time: pd.Timestamp, rates: list[float], prices: list[float]) -> None:
        """One settlement instant for every open position (``rates``/``prices`` per symbol).

        Raises :class:`MissingFundingError` when a position is held and its rate is unknown.
        """
        row = np.asarray(rates, dtype=np.float64)
        row = np.where(np.isfinite(row), row, np.nan)[None, :]
        price = np.asarray(prices, dtype=np.float64)
        if not K.settle(0, 1, row, self._pos, price, self._acct, self._error):
            raise MissingFundingError(
                f"no funding rate for {self.symbols[int(self._error[1])]} at {time.isoformat()} "
                "while a position was held"
            )

    def open_risk(self) -> float:
        return float(K.open_risk(self._pos))

    def gross_notional(self, prices: list[float]) -> float:
        return float(K.gross_notional(self._pos, np.asarray(prices, dtype=np.float64)))

    def equity(self, prices: list[float]) -> float:
        unrealised = K.mark(0.0, self._pos, np.asarray(prices, dtype=np.float64))
        return self.cash + float(unrealised)

    def trades_frame(self) -> pd.DataFrame:
        rec = self._records[:, : len(self._closed)]
        entry_times, exit_times, reasons = (
            zip(*self._closed, strict=True) if self._closed else ((), (), ())
        )
        trades = pd.DataFrame(
            {
                "symbol": [self.symbols[int(k)] for k in rec[K.T_SYM]],
                "side": ["long" if d > 0 else "short" for d in rec[K.T_DIR]],
                "entry_time": list(entry_times),
                "entry_price": rec[K.T_ENTRY_PRICE],
                "exit_time": list(exit_times),
                "exit_price": rec[K.T_EXIT_PRICE],
                "quantity": rec[K.T_QTY],
                "notional": rec[K.T_QTY] * rec[K.T_ENTRY_PRICE],
                "risk_amount": rec[K.T_RISK],
                "pnl": rec[K.T_PNL],
                "fees": rec[K.T_FEES],
                "funding": rec[K.T_FUNDING],
                "exit_reason": list(reasons),
            },
            columns=list(TRADE_COLUMNS),
        )
        for col in ("entry_time", "exit_time"):
            trades[col] = pd.to_datetime(trades[col], utc=True).astype("datetime64[ns, UTC]")
        floats = ["entry_price", "exit_price", "quantity", "notional", "risk_amount", "pnl"]
        for col in [*floats, "fees", "funding"]:
            trades[col] = trades[col].astype(np.float64)
        for col in ("symbol", "side", "exit_reason"):
            trades[col] = trades[col].astype(str)
        return trades
