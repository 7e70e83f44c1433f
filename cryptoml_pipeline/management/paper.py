"""Paper trading (spec phase 5, "live testing with small capital"): the deployed model, the
sizing and risk layer, bar by bar, with simulated fills at the backtester's cost model.

Every bar is ONE database transaction: its orders, fills, position changes, cash and the cursor
(``paper_runs.last_bar``) commit together or not at all. A process killed at any point therefore
resumes at the first unprocessed bar without duplicating or losing an order; client order ids
(``run:symbol:bar:reason``) are unique in the database as a second guard.

Rules (the backtester's, see trading/backtest.py): a decision stamped ``t`` fills at the open of
the next bar; entries need an active decision (|signal| >= 1, confidence > 0 and >= threshold)
and are sized by the spec sizer with the heat and leverage caps; at ``entry + min_hold_bars`` the
position is reviewed (same direction: hold on; opposite: flip; else exit); stops (ATR multiple)
fill at the stop or at a gapping open; funding is charged at settlements on positions opened
before them; every fill pays the taker fee and slippage.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Engine

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.management import paper_adapter as trading
from cryptoml_pipeline.management.schema import (
    paper_fills,
    paper_orders,
    paper_positions,
    paper_runs,
    utc,
)
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import timeframe_to_timedelta

logger = logging.getLogger(__name__)


@dataclass
class PaperPosition:
    symbol: str
    direction: int
    quantity: float
    entry_price: float
    entry_bar: pd.Timestamp
    review_bar: pd.Timestamp
    stop: float
    risk_amount: float


@dataclass(frozen=True)
class BarInput:
    """What is known at the open of ``bar`` per symbol: the bar's OHLC (the open fills; high/low
    and close are used only after the open, for stops and marking), the decision of the bar
    before, and the funding rate settling at ``bar`` (if any)."""

    bar: pd.Timestamp
    candles: pd.DataFrame  # index symbol: open, high, low, close
    decisions: pd.DataFrame  # index symbol: signal, confidence, volatility, atr_pct
    funding: dict[str, float]


class PaperTrader:
    def __init__(
        self,
        engine: Engine,
        *,
        run_name: str,
        model_version: str,
        settings: PipelineSettings,
        timeframe: str,
        initial_equity: float,
    ) -> None:
        self.engine = engine
        self.run = run_name
        self.settings = settings
        self.bar = timeframe_to_timedelta(timeframe)
        with engine.begin() as conn:
            row = conn.execute(sa.select(paper_runs).where(paper_runs.c.name == run_name)).first()
            if row is None:
                conn.execute(
                    paper_runs.insert().values(
                        name=run_name,
                        model_version=model_version,
                        created_at=datetime.now(UTC),
                        cash=initial_equity,
                        initial_equity=initial_equity,
                    )
                )
                self.cash, self.last_bar = initial_equity, None
            else:
                self.cash = float(row._mapping["cash"])
                last = utc(row._mapping["last_bar"])
                self.last_bar = None if last is None else pd.Timestamp(last)
                if row._mapping["model_version"] != model_version:
                    conn.execute(
                        paper_runs.update()
                        .where(paper_runs.c.name == run_name)
                        .values(model_version=model_version)
                    )
            self.positions = {
                r.symbol: PaperPosition(
                    symbol=r.symbol,
                    direction=int(r.direction),
                    quantity=float(r.quantity),
                    entry_price=float(r.entry_price),
                    entry_bar=pd.Timestamp(utc(r.entry_bar)),
                    review_bar=pd.Timestamp(utc(r.review_bar)),
                    stop=float(r.stop),
                    risk_amount=float(r.risk_amount),
                )
                for r in conn.execute(
                    sa.select(paper_positions).where(paper_positions.c.run == run_name)
                ).all()
            }
        self.prices: dict[str, float] = {}

    # --- one bar, one transaction ----------------------------------------------------------
    def process(self, bar_input: BarInput) -> int:
        """Process one bar; returns the number of orders. Bars at or before the cursor are
        skipped (already committed)."""
        bar = bar_input.bar
        if self.last_bar is not None and bar <= self.last_bar:
            return 0
        cash, positions = (
            self.cash,
            {k: PaperPosition(**vars(v)) for k, v in self.positions.items()},
        )
        prices = dict(self.prices)
        orders: list[dict] = []
        risk, costs = self.settings.risk, self.settings.costs
        hold = self.bar * self.settings.min_hold_bars

        def order(symbol: str, side: int, qty: float, raw: float, reason: str) -> float:
            price, fee = trading.execution(raw, side, qty, costs)
            orders.append(
                {
                    "symbol": symbol,
                    "side": side,
                    "qty": qty,
                    "price": price,
                    "fee": fee,
                    "reason": reason,
                }
            )
            return price

        def close(pos: PaperPosition, raw: float, reason: str) -> None:
            nonlocal cash
            price = order(pos.symbol, -pos.direction, pos.quantity, raw, reason)
            fee = orders[-1]["fee"]
            cash += pos.direction * pos.quantity * (price - pos.entry_price) - fee
            del positions[pos.symbol]

        for symbol, c in bar_input.candles.iterrows():
            prices[symbol] = float(c["open"])
        # 1. funding at the instant of the bar on positions carried into it
        for symbol, rate in bar_input.funding.items():
            pos = positions.get(symbol)
            if pos is not None and pos.entry_bar < bar and np.isfinite(rate):
                cash -= pos.direction * pos.quantity * prices[symbol] * rate
        # 2. at the open: gapped stops, reviews, entries (alphabetical symbol order)
        for symbol in sorted(bar_input.candles.index):
            c = bar_input.candles.loc[symbol]
            dec = bar_input.decisions.loc[symbol] if symbol in bar_input.decisions.index else None
            active = dec is not None and trading.is_active(
                float(dec["signal"]), float(dec["confidence"]), risk
            )
            direction = int(np.sign(dec["signal"])) if active else 0
            pos = positions.get(symbol)
            if pos is not None:
                gap = trading.stop_fill(pos.direction, c["open"], c["open"], c["open"], pos.stop)
                if np.isfinite(gap):
                    close(pos, gap, "stop")
                    pos = None
                elif bar >= pos.review_bar:
                    if direction == pos.direction:
                        pos.review_bar = bar + hold
                        continue
                    close(pos, float(c["open"]), "flip" if direction else "time")
                    pos = None
            if pos is None and direction and dec is not None:
                equity = cash + sum(
                    p.direction * p.quantity * (prices[p.symbol] - p.entry_price)
                    for p in positions.values()
                )
                size = trading.entry_size(
                    equity=equity,
                    signal=float(dec["signal"]),
                    confidence=float(dec["confidence"]),
                    volatility=float(dec["volatility"]),
                    atr_pct=float(dec["atr_pct"]),
                    open_risk=sum(p.risk_amount for p in positions.values()),
                    open_notional=sum(p.quantity * prices[p.symbol] for p in positions.values()),
                    risk=risk,
                )
                if size is not None:
                    qty = size.notional / float(c["open"])
                    price = order(symbol, direction, qty, float(c["open"]), "entry")
                    cash -= orders[-1]["fee"]
                    positions[symbol] = PaperPosition(
                        symbol=symbol,
                        direction=direction,
                        quantity=qty,
                        entry_price=price,
                        entry_bar=bar,
                        review_bar=bar + hold,
                        stop=trading.stop_level(price, direction, size.stop_distance),
                        risk_amount=size.risk_amount,
                    )
        # 3. intrabar stops, then mark at the close
        for symbol, c in bar_input.candles.iterrows():
            pos = positions.get(symbol)
            if pos is not None:
                raw = trading.stop_fill(pos.direction, c["open"], c["low"], c["high"], pos.stop)
                if np.isfinite(raw):
                    close(pos, raw, "stop")
            prices[symbol] = float(c["close"])
        self._commit(bar, cash, positions, orders)
        self.cash, self.positions, self.prices, self.last_bar = cash, positions, prices, bar
        return len(orders)

    def _commit(
        self, bar: pd.Timestamp, cash: float, positions: dict[str, PaperPosition], orders: list
    ) -> None:
        at = bar.to_pydatetime()
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for o in orders:
                order_id = conn.execute(
                    paper_orders.insert()
                    .values(
                        run=self.run,
                        client_order_id=f"{self.run}:{o['symbol']}:{bar.isoformat()}:{o['reason']}",
                        symbol=o["symbol"],
                        bar=at,
                        side=o["side"],
                        quantity=o["qty"],
                        reason=o["reason"],
                        created_at=now,
                    )
                    .returning(paper_orders.c.id)
                ).scalar_one()
                conn.execute(
                    paper_fills.insert().values(
                        order_id=order_id, price=o["price"], quantity=o["qty"], fee=o["fee"], at=at
                    )
                )
            conn.execute(paper_positions.delete().where(paper_positions.c.run == self.run))
            if positions:
                conn.execute(
                    paper_positions.insert(),
                    [
                        {
                            "run": self.run,
                            "symbol": p.symbol,
                            "direction": p.direction,
                            "quantity": p.quantity,
                            "entry_price": p.entry_price,
                            "entry_bar": p.entry_bar.to_pydatetime(),
                            "review_bar": p.review_bar.to_pydatetime(),
                            "stop": p.stop,
                            "risk_amount": p.risk_amount,
                        }
                        for p in positions.values()
                    ],
                )
            conn.execute(
                paper_runs.update()
                .where(paper_runs.c.name == self.run)
                .values(last_bar=at, cash=cash)
            )

    def equity(self) -> float:
        return self.cash + sum(
            p.direction * p.quantity * (self.prices.get(p.symbol, p.entry_price) - p.entry_price)
            for p in self.positions.values()
        )


def bar_inputs(
    candles: pd.DataFrame,
    decisions: pd.DataFrame,
    funding: pd.DataFrame | None,
    *,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> list[BarInput]:
    """Per bar in ``[start, end)``: its candles, the decisions stamped one bar earlier (known at
    its open) and the funding settling at it."""
    step = timeframe_to_timedelta(timeframe)
    c = candles.assign(timestamp=pd.to_datetime(candles["timestamp"], utc=True))
    c = c[(c["timestamp"] >= start) & (c["timestamp"] < end)]
    d = decisions.assign(
        timestamp=pd.to_datetime(decisions["timestamp"], utc=True) + step
    )  # the bar whose open it fills at
    f = (
        funding.assign(timestamp=pd.to_datetime(funding["timestamp"], utc=True))
        if funding is not None and len(funding)
        else None
    )
    out = []
    c_groups = dict(tuple(c.groupby("timestamp")))
    d_groups = dict(tuple(d.groupby("timestamp")))
    f_groups = dict(tuple(f.groupby("timestamp"))) if f is not None else {}
    for bar in sorted(c_groups):
        cg = c_groups[bar].set_index("symbol")[["open", "high", "low", "close"]]
        dg_ = d_groups.get(bar)
        dec = (
            dg_.set_index("symbol")[["signal", "confidence", "volatility", "atr_pct"]]
            if dg_ is not None
            else pd.DataFrame(columns=["signal", "confidence", "volatility", "atr_pct"])
        )
        fg = f_groups.get(bar)
        rates = (
            dict(zip(fg["symbol"].astype(str), fg["funding_rate"].astype(float), strict=True))
            if fg is not None
            else {}
        )
        out.append(BarInput(pd.Timestamp(bar), cg, dec, rates))
    return out


def replay(
    trader: PaperTrader,
    inputs: list[BarInput],
    *,
    bar_delay: float = 0.0,
    max_bars: int | None = None,
) -> int:
    """Process the bars after the cursor in order; returns the bars processed."""
    if not inputs:
        raise InputError("no bars to paper-trade in the selected window")
    done = 0
    for item in inputs:
        if trader.last_bar is not None and item.bar <= trader.last_bar:
            continue
        if max_bars is not None and done >= max_bars:
            break
        trader.process(item)
        done += 1
        if bar_delay:
            time.sleep(bar_delay)
    return done


def orders_frame(engine: Engine, run_name: str) -> pd.DataFrame:
    """Orders joined with their fills, in order."""
    query = (
        sa.select(
            paper_orders.c.client_order_id,
            paper_orders.c.symbol,
            paper_orders.c.bar,
            paper_orders.c.side,
            paper_orders.c.quantity,
            paper_orders.c.reason,
            paper_fills.c.price,
            paper_fills.c.fee,
        )
        .join(paper_fills, paper_fills.c.order_id == paper_orders.c.id, isouter=True)
        .where(paper_orders.c.run == run_name)
        .order_by(paper_orders.c.id)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out = pd.DataFrame(
        rows,
        columns=list(rows[0]._fields)
        if rows
        else ["client_order_id", "symbol", "bar", "side", "quantity", "reason", "price", "fee"],
    )
    out["bar"] = pd.to_datetime(out["bar"], utc=True)
    return out


def run_state(engine: Engine, run_name: str) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(paper_runs).where(paper_runs.c.name == run_name)).first()
    if row is None:
        return None
    m = dict(row._mapping)
    m["last_bar"] = utc(m["last_bar"])
    return m
