"""Paper trading (spec phase 5, "live testing with small capital"): the deployed model's
decisions, bar by bar, executed by THE BACKTEST'S OWN SIMULATOR -- one execution core.

The trader's state is what it has been given: every closed bar's candles, the decisions filling
at it and the funding settled in it. At each new closed bar it runs the backtest simulator
(:func:`paper_adapter.ledger_at`: decision and cost filter, sizing, stops, take-profit,
maker/taker fills, fees, volatility slippage, funding, liquidation -- the backtest's rules, see
:mod:`cryptoml_pipeline.execution.backtest`) and records what is new at that bar.

Bounded work per bar (the re-simulation WINDOW): the simulator's state at the close of a bar
where the account holds no position is its cash alone (no open position, stop, hold review or
margin; sizing reads the equity, and the slippage of a later fill reads decisions at or after
that fill's entry decision). So a simulation that starts after such a FLAT close with that
close's equity as its initial equity gives bit for bit the same fills and marks as one from the
account's first bar. The trader therefore simulates only the bars since the last flat close:
the work per bar is bounded by the longest stretch the account stays in the market, not by how
long it has run. The simulator is causal, so a run over more bars must agree with every earlier
run on the earlier bars; each bar CHECKS that (prefix stability) against what was recorded,
and raises :class:`PaperParityError` if not.

The daily loss limit (``risk.daily_loss_limit``) is the one piece of simulator state that
outlives a flat close: the UTC day's start equity and whether the limit has tripped that day.
Each window is given that state at its flat close (``loss_limit_start``, ``window_day``): read
off the recorded marks when the trader (re)starts (:func:`recorded_loss_limit_day`), carried on
from the previous window's marks otherwise (:func:`paper_adapter.loss_limit_state`; the same
value), so the account books every day exactly as one simulation from its first bar does.

Durability: ONE database transaction per bar writes the bar's inputs and equity mark
(``paper_bars``: candles, decisions, funding, whether the account is flat at its close, the
model that decided, what the simulator's guards counted at the bar, the live service's guard
states), its orders and fills, the open positions, the cash and the cursor
(``paper_runs.last_bar``). A process killed at any point resumes at the first bar after the
cursor: the window is re-read from ``paper_bars`` (the bars after the last flat close),
re-simulated and checked against the recorded fills and marks. Client order ids
(``run:symbol:bar:n:reason``) are unique in the database as a second guard.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Engine

from cryptoml_pipeline.errors import CryptoMLError, InputError
from cryptoml_pipeline.execution.backtest import (
    GUARD_COUNTS,
    BacktestResult,
    LossLimitDay,
    loss_limit_day,
)
from cryptoml_pipeline.live import paper_adapter as core
from cryptoml_pipeline.registry.schema import (
    paper_accounts,
    paper_bars,
    paper_fills,
    paper_orders,
    paper_positions,
    paper_runs,
    utc,
)
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import timeframe_to_timedelta

logger = logging.getLogger(__name__)

PARITY_ATOL = 1e-9  # recorded values vs a re-simulation (in fact bitwise equal)


class PaperParityError(CryptoMLError, RuntimeError):
    """A re-simulation disagrees with what the paper trader already recorded."""


@dataclass(frozen=True)
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
    """What one closed ``bar`` brings: its candles, the decisions filling at its open (stamped
    one bar earlier) and the funding settled in it (or in the data gap just before it)."""

    bar: pd.Timestamp
    candles: pd.DataFrame  # index symbol: open, high, low, close
    decisions: pd.DataFrame  # index symbol: paper_adapter.DECISION_FIELDS
    funding: pd.DataFrame  # columns timestamp, symbol, funding_rate


def _record(item: BarInput, step: pd.Timedelta) -> dict:
    """A bar's inputs as one JSON-able record (floats round-trip exactly)."""
    return {
        "bar": item.bar.isoformat(),
        "stamp": (item.bar - step).isoformat(),
        "candles": {str(s): [float(r[c]) for c in core.OHLC] for s, r in item.candles.iterrows()},
        "decisions": {
            str(s): [float(r[c]) for c in core.DECISION_FIELDS]
            for s, r in item.decisions.iterrows()
        },
        "funding": [
            [pd.Timestamp(t).isoformat(), str(s), float(r)]
            for t, s, r in item.funding[["timestamp", "symbol", "funding_rate"]].itertuples(
                index=False
            )
        ],
    }


def _frames(lines: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Bar records -> (candles, funding, decisions) frames for the simulator."""
    candles = pd.DataFrame(
        [(ln["bar"], s, *v) for ln in lines for s, v in ln["candles"].items()],
        columns=["timestamp", "symbol", *core.OHLC],
    )
    funding = pd.DataFrame(
        [tuple(f) for ln in lines for f in ln["funding"]],
        columns=["timestamp", "symbol", "funding_rate"],
    )
    decisions = pd.DataFrame(
        [(ln["stamp"], s, *v) for ln in lines for s, v in ln["decisions"].items()],
        columns=["timestamp", "symbol", *core.DECISION_FIELDS],
    )
    for frame in (candles, funding, decisions):
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        frame["symbol"] = frame["symbol"].astype(str)
    funding["funding_rate"] = funding["funding_rate"].astype(np.float64)
    for col in core.DECISION_FIELDS:
        decisions[col] = decisions[col].astype(np.float64)
    return candles, funding, decisions


def _check_prefix(what: str, recorded: pd.DataFrame, now: pd.DataFrame) -> None:
    """``now`` must start with ``recorded`` (same rows, floats to PARITY_ATOL)."""
    head = now.iloc[: len(recorded)].reset_index(drop=True)
    rec = recorded.reset_index(drop=True)
    ok = len(head) == len(rec)
    for col in rec.columns if ok else ():
        a, b = rec[col].to_numpy(), head[col].to_numpy()
        if rec[col].dtype.kind == "f":
            ok = ok and bool(np.allclose(a, b, rtol=0, atol=PARITY_ATOL, equal_nan=True))
        else:
            ok = ok and bool((pd.Series(a) == pd.Series(b)).all())
    if not ok:
        raise PaperParityError(f"re-simulation changed already recorded {what}")


def _increase(before: dict[str, int], now: dict[str, int]) -> dict[str, int]:
    """The guard counts ``now`` has above ``before`` (the nonzero ones)."""
    out = {str(k): int(v) - int(before.get(k, 0)) for k, v in now.items()}
    return {k: v for k, v in out.items() if v}


def record_fill(
    conn: sa.Connection,
    run: str,
    fill: Any,
    *,
    client_order_id: str,
    reason: str,
    at: datetime,
    now: datetime,
) -> None:
    """One paper order and its fill (``fill``: a row of ``trade_fills``: symbol, side,
    quantity, price, fee) inside the caller's transaction."""
    order_id = conn.execute(
        paper_orders.insert()
        .values(
            run=run,
            client_order_id=client_order_id,
            symbol=fill.symbol,
            bar=at,
            side=int(fill.side),
            quantity=float(fill.quantity),
            reason=reason,
            created_at=now,
        )
        .returning(paper_orders.c.id)
    ).scalar_one()
    conn.execute(
        paper_fills.insert().values(
            order_id=order_id,
            price=float(fill.price),
            quantity=float(fill.quantity),
            fee=float(fill.fee),
            at=at,
        )
    )


class PaperTrader:
    """A paper account (``run_name``) in the database; see the module docstring.

    ``account``: how the account was started (``paper_accounts.config``, written once, read by
    ``cryptoml parity``)."""

    def __init__(
        self,
        engine: Engine,
        *,
        run_name: str,
        model_version: str,
        settings: PipelineSettings,
        timeframe: str,
        initial_equity: float,
        account: dict[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.run = run_name
        self.settings = settings
        self.timeframe = timeframe
        self.model_version = model_version
        self.step = timeframe_to_timedelta(timeframe)
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
                self.initial_equity, self.last_bar = float(initial_equity), None
            else:
                self.initial_equity = float(row._mapping["initial_equity"])
                last = utc(row._mapping["last_bar"])
                self.last_bar = None if last is None else pd.Timestamp(last)
            if account is not None:
                known = conn.execute(
                    sa.select(paper_accounts.c.config).where(paper_accounts.c.run == run_name)
                ).first()
                if known is None:
                    conn.execute(paper_accounts.insert().values(run=run_name, config=account))
        self.window, self.window_start, self.window_equity = self._load_window()
        # the daily loss limit's state at the window's start (None: off, or the first bar)
        self.window_day: LossLimitDay | None = None
        limit = settings.risk.daily_loss_limit
        if limit is not None and self.window_start is not None:
            self.window_day = recorded_loss_limit_day(
                engine, run_name, self.initial_equity, limit, self.window_start
            )
        self.ledger: core.AccountSnapshot | None = None
        self.last_equity = self.window_equity
        self.flat = True
        if self.window:  # resume: the window must reproduce what the database recorded
            self.ledger = self._simulate(self.window)
            recorded = orders_frame(engine, run_name, after=self.window_start)
            _check_prefix("fills", recorded[core.FILL_COLUMNS], self.ledger.fills)
            self._check_marks(self.ledger)
            self.last_equity = float(self.ledger.equity.iloc[-1])
            self.flat = self.ledger.open.empty

    # --- the re-simulation window ------------------------------------------------------------
    def _load_window(self) -> tuple[list[dict], pd.Timestamp | None, float]:
        """The bars after the last flat close (and that close's bar and equity)."""
        if self.last_bar is None:
            return [], None, self.initial_equity
        with self.engine.connect() as conn:
            flat = conn.execute(
                sa.select(paper_bars.c.bar, paper_bars.c.equity)
                .where((paper_bars.c.run == self.run) & paper_bars.c.flat)
                .order_by(paper_bars.c.bar.desc())
                .limit(1)
            ).first()
            since = None if flat is None else utc(flat.bar)
            query = sa.select(paper_bars.c.bar, paper_bars.c.inputs, paper_bars.c.equity).where(
                paper_bars.c.run == self.run
            )
            if since is not None:
                query = query.where(paper_bars.c.bar > since)
            rows = conn.execute(query.order_by(paper_bars.c.bar)).all()
            last = conn.execute(
                sa.select(sa.func.max(paper_bars.c.bar)).where(paper_bars.c.run == self.run)
            ).scalar()
        if last is None or pd.Timestamp(utc(last)) != self.last_bar:
            raise InputError(
                f"paper account {self.run!r}: its recorded bars end at {last}, the cursor is "
                f"{self.last_bar}: start a new run name"
            )
        lines = [json.loads(r.inputs) | {"equity": float(r.equity)} for r in rows]
        equity = self.initial_equity if flat is None else float(flat.equity)
        return lines, (None if since is None else pd.Timestamp(since)), equity

    def _options(self) -> dict[str, Any]:
        return core.simulator_options(
            self.settings,
            self.timeframe,
            initial_equity=self.window_equity,
            loss_limit_start=self.window_day,
        )

    # --- the execution core: the backtest simulator over the window ---------------------------
    def _simulate(self, lines: list[dict]) -> core.AccountSnapshot:
        candles, funding, decisions = _frames(lines)
        return core.ledger_at(candles, funding, decisions, options=self._options())

    def _check_marks(self, ledger: core.AccountSnapshot) -> None:
        recorded = pd.DataFrame({"equity": [float(ln["equity"]) for ln in self.window]})
        _check_prefix("equity", recorded, ledger.equity.to_frame("equity"))

    def process(
        self,
        bar_input: BarInput,
        *,
        model_version: str | None = None,
        guards: dict[str, bool] | None = None,
    ) -> int:
        """Process one closed bar; returns the number of fills. Bars at or before the cursor are
        skipped (already committed). ``model_version``: the model whose decisions fill at this
        bar (default: the trader's); ``guards``: the live service's guard states at the bar's
        close, recorded with the bar (the simulator never reads them)."""
        bar = bar_input.bar
        if self.last_bar is not None and bar <= self.last_bar:
            return 0
        if self.flat and self.window:  # the last close was flat: a new window starts here
            self.window_day = self.loss_limit_now()
            self.window, self.window_start = [], self.last_bar
            self.window_equity, self.ledger = self.last_equity, None
        line = _record(bar_input, self.step)
        if guards is not None:
            line["guards"] = {str(k): bool(v) for k, v in guards.items()}
        ledger = self._simulate([*self.window, line])
        if ledger.bar != bar:
            raise InputError(f"bar {bar} has no candles")
        before = self.ledger.fills if self.ledger is not None else ledger.fills.iloc[:0]
        _check_prefix("fills", before, ledger.fills)
        self._check_marks(ledger)
        new = ledger.fills.iloc[len(before) :]
        if not (new["bar"] == bar).all():
            raise PaperParityError(f"re-simulation at {bar} added fills at earlier bars")
        equity = float(ledger.equity.iloc[-1])
        flat = bool(ledger.open.empty)
        counted = self.ledger.guard_counts if self.ledger is not None else {}
        line["guard_counts"] = _increase(counted, ledger.guard_counts)  # what the bar added
        self._commit(bar, ledger, new, line, equity, flat, model_version or self.model_version)
        line["equity"] = equity
        self.window.append(line)
        self.ledger, self.last_bar = ledger, bar
        self.last_equity, self.flat = equity, flat
        return len(new)

    def _commit(
        self,
        bar: pd.Timestamp,
        ledger: core.AccountSnapshot,
        new: pd.DataFrame,
        line: dict,
        equity: float,
        flat: bool,
        model_version: str,
    ) -> None:
        at = bar.to_pydatetime()
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(
                paper_bars.insert().values(
                    run=self.run,
                    bar=at,
                    inputs=json.dumps(line),
                    equity=equity,
                    flat=flat,
                    model_version=model_version,
                )
            )
            for k, o in enumerate(new.itertuples(index=False)):
                record_fill(
                    conn,
                    self.run,
                    o,
                    client_order_id=f"{self.run}:{o.symbol}:{bar.isoformat()}:{k}:{o.reason}",
                    reason=o.reason,
                    at=at,
                    now=now,
                )
            conn.execute(paper_positions.delete().where(paper_positions.c.run == self.run))
            if len(ledger.open):
                conn.execute(
                    paper_positions.insert(),
                    [
                        {
                            "run": self.run,
                            "symbol": p.symbol,
                            "direction": int(p.direction),
                            "quantity": float(p.quantity),
                            "entry_price": float(p.entry_price),
                            "entry_bar": pd.Timestamp(p.entry_bar).to_pydatetime(),
                            "review_bar": pd.Timestamp(p.review_bar).to_pydatetime(),
                            "stop": float(p.stop),
                            "risk_amount": float(p.risk_amount),
                        }
                        for p in ledger.open.itertuples(index=False)
                    ],
                )
            conn.execute(
                paper_runs.update()
                .where(paper_runs.c.name == self.run)
                .values(last_bar=at, cash=ledger.cash, model_version=model_version)
            )

    def next_open_positions(
        self, decisions: pd.DataFrame, closes: dict[str, float]
    ) -> dict[str, float]:
        """The account's positions (signed quantities) right after the next bar's open if it
        opens at the last close (``closes``), with ``decisions`` filling there: what the
        simulator will do at that open (entries sized on the equity, exits by signal or hold
        review), known now. ``--execute`` sends the orders that bring the exchange there."""
        if self.last_bar is None:
            return {}
        nxt = self.last_bar + self.step
        line = {
            "bar": nxt.isoformat(),
            "stamp": self.last_bar.isoformat(),
            "candles": {s: [float(c)] * 4 for s, c in closes.items()},
            "decisions": {
                str(s): [float(r[c]) for c in core.DECISION_FIELDS] for s, r in decisions.iterrows()
            },
            "funding": [],
        }
        # zero-rate settlements inside the provisional bar (they move no position at its open)
        interval = pd.Timedelta(hours=self.settings.data.funding_interval_hours)
        times = pd.date_range(nxt.ceil(interval), nxt + self.step, freq=interval, inclusive="left")
        line["funding"] = [
            [t.isoformat(), str(s), 0.0] for t in times if t < nxt + self.step for s in closes
        ]
        if self.flat:
            lines, equity, start = [line], self.last_equity, self.loss_limit_now()
        else:
            lines, equity, start = [*self.window, line], self.window_equity, self.window_day
        candles, funding, decided = _frames(lines)
        options = core.simulator_options(
            self.settings, self.timeframe, initial_equity=equity, loss_limit_start=start
        )
        ledger = core.ledger_at(candles, funding, decided, options=options)
        return {
            str(p.symbol): float(p.direction) * float(p.quantity)
            for p in ledger.open.itertuples(index=False)
        }

    # --- views ---------------------------------------------------------------------------
    @property
    def positions(self) -> dict[str, PaperPosition]:
        if self.ledger is None or self.flat:
            return {}
        return {
            p.symbol: PaperPosition(
                symbol=p.symbol,
                direction=int(p.direction),
                quantity=float(p.quantity),
                entry_price=float(p.entry_price),
                entry_bar=pd.Timestamp(p.entry_bar),
                review_bar=pd.Timestamp(p.review_bar),
                stop=float(p.stop),
                risk_amount=float(p.risk_amount),
            )
            for p in self.ledger.open.itertuples(index=False)
        }

    def loss_limit_now(self) -> LossLimitDay | None:
        """The daily loss limit's state at the last processed bar's close (None: the limit is
        off or no bar is processed yet), from the window's marks and its start state."""
        limit = self.settings.risk.daily_loss_limit
        if limit is None or self.last_bar is None:
            return None
        if self.ledger is None:  # an empty window: it starts at the last bar
            return self.window_day
        return core.loss_limit_state(
            self.ledger.equity, self.window_equity, limit, self.last_bar, self.window_day
        )

    def loss_limit_inputs(self, fill_bar: pd.Timestamp) -> tuple[float | None, float | None]:
        """:func:`.decision.decide`'s ``day_open_equity``, ``day_low_equity`` for a decision
        filling at the open of ``fill_bar``: the account's UTC day at its last close (the equity
        it started with, its lowest close, from the recorded marks) where ``fill_bar`` opens in
        that day; (None, None) where the limit is off, no bar is processed yet or ``fill_bar``
        opens a new day (the kernel starts a day afresh: its first open blocks nothing)."""
        limit = self.settings.risk.daily_loss_limit
        last = self.last_bar
        if limit is None or last is None:
            return None, None
        if pd.Timestamp(fill_bar).tz_convert("UTC").floor("D") != last.tz_convert("UTC").floor("D"):
            return None, None
        marks = recorded_day_marks(self.engine, self.run, last)
        day = loss_limit_day(marks, self.initial_equity, limit, last)
        return day.start_equity, float(marks[marks.index >= day.day].min())

    def guard_counts(self) -> dict[str, int]:
        """What the guards did in the account since its first bar (the keys of
        ``BacktestResult.guard_counts``): the sum of what each processed bar recorded it added
        (``guard_counts`` of its record; a window's increments add up to that window's counts).
        Reads every bar's record: for reports, not per bar."""
        counts = dict.fromkeys(GUARD_COUNTS, 0)
        for line in account_bars(self.engine, self.run):
            for name, n in (line.get("guard_counts") or {}).items():
                counts[name] = counts.get(name, 0) + int(n)
        return counts

    def equity(self) -> float:
        """Marked at the last processed bar's close."""
        return self.last_equity

    def exposure(self) -> float:
        """Gross notional of the open positions at the last close / equity."""
        if self.ledger is None or self.flat or not self.window:
            return 0.0
        closes = self.window[-1]["candles"]
        gross = sum(
            p.quantity * closes[p.symbol][3] for p in self.positions.values() if p.symbol in closes
        )
        return float(gross / self.last_equity) if self.last_equity else float("nan")

    def close_out(self) -> BacktestResult:
        """The backtest of exactly the bars seen so far, from the account's first bar (open
        positions closed at the last close): what the account would be if the data ended now."""
        lines = account_bars(self.engine, self.run)
        if not lines:
            raise InputError("no bars paper-traded yet")
        candles, funding, decisions = _frames(lines)
        options = core.simulator_options(
            self.settings, self.timeframe, initial_equity=self.initial_equity
        )
        return core.close_out(candles, funding, decisions, options=options)


def bar_inputs(
    candles: pd.DataFrame,
    decisions: pd.DataFrame,
    funding: pd.DataFrame | None,
    *,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> list[BarInput]:
    """Per bar in ``[start, end)``: its candles, the decisions stamped one bar earlier (they
    fill at its open) and the funding settled in it -- or in the data gap before it, as the
    simulator charges it (each settlement belongs to the first bar that ends after it)."""
    step = timeframe_to_timedelta(timeframe)
    c = candles.assign(timestamp=pd.to_datetime(candles["timestamp"], utc=True))
    c = c[(c["timestamp"] >= start) & (c["timestamp"] < end)]
    d = decisions.assign(timestamp=pd.to_datetime(decisions["timestamp"], utc=True) + step)
    if "expected_return" not in d.columns:
        d["expected_return"] = np.nan
    bars = pd.DatetimeIndex(sorted(c["timestamp"].unique()))
    if funding is not None and len(funding) and len(bars):
        f = funding.assign(timestamp=pd.to_datetime(funding["timestamp"], utc=True))
        f = f[(f["timestamp"] >= start) & (f["timestamp"] < bars[-1] + step)]
        f = f.assign(_bar=bars[(bars + step).searchsorted(f["timestamp"], side="right")])
    else:
        f = pd.DataFrame(columns=["timestamp", "symbol", "funding_rate", "_bar"])
    c_groups = dict(tuple(c.groupby("timestamp")))
    d_groups = dict(tuple(d.groupby("timestamp")))
    f_groups = dict(tuple(f.groupby("_bar"))) if len(f) else {}
    empty_dec = pd.DataFrame(columns=list(core.DECISION_FIELDS), dtype=np.float64)
    empty_fund = pd.DataFrame(columns=["timestamp", "symbol", "funding_rate"])
    out = []
    for bar in bars:
        dg = d_groups.get(bar)
        fg = f_groups.get(bar)
        out.append(
            BarInput(
                bar=pd.Timestamp(bar),
                candles=c_groups[bar].set_index("symbol")[list(core.OHLC)],
                decisions=empty_dec
                if dg is None
                else dg.set_index("symbol")[list(core.DECISION_FIELDS)],
                funding=empty_fund
                if fg is None
                else fg[["timestamp", "symbol", "funding_rate"]].reset_index(drop=True),
            )
        )
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


def orders_frame(
    engine: Engine, run_name: str, *, after: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Orders joined with their fills, in order (only those of bars after ``after``)."""
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
    if after is not None:
        query = query.where(paper_orders.c.bar > after.to_pydatetime())
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


def account_bars(engine: Engine, run_name: str) -> list[dict]:
    """Every processed bar's record of an account, in order (with ``equity``, ``flat`` and
    ``model``: the model whose decisions filled at the bar)."""
    query = (
        sa.select(
            paper_bars.c.inputs, paper_bars.c.equity, paper_bars.c.flat, paper_bars.c.model_version
        )
        .where(paper_bars.c.run == run_name)
        .order_by(paper_bars.c.bar)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        json.loads(r.inputs)
        | {"equity": float(r.equity), "flat": bool(r.flat), "model": r.model_version}
        for r in rows
    ]


def equity_marks(engine: Engine, run_name: str) -> pd.Series:
    """The account's equity at every processed bar's close."""
    query = (
        sa.select(paper_bars.c.bar, paper_bars.c.equity)
        .where(paper_bars.c.run == run_name)
        .order_by(paper_bars.c.bar)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    index = pd.DatetimeIndex([pd.Timestamp(utc(r.bar)) for r in rows], name="timestamp")
    return pd.Series([float(r.equity) for r in rows], index=index, name="equity", dtype=float)


def recorded_day_marks(engine: Engine, run_name: str, bar: pd.Timestamp) -> pd.Series:
    """The account's recorded marks that the daily loss limit reads at the close of ``bar``:
    the last one before ``bar``'s UTC day (none on the account's first day) and the day's up
    to ``bar``."""
    bar = pd.Timestamp(bar).tz_convert("UTC")
    day = bar.floor("D").to_pydatetime()
    cols, mine = (paper_bars.c.bar, paper_bars.c.equity), paper_bars.c.run == run_name
    with engine.connect() as conn:
        before = conn.execute(
            sa.select(*cols)
            .where(mine & (paper_bars.c.bar < day))
            .order_by(paper_bars.c.bar.desc())
            .limit(1)
        ).all()
        today = conn.execute(
            sa.select(*cols)
            .where(mine & (paper_bars.c.bar >= day) & (paper_bars.c.bar <= bar.to_pydatetime()))
            .order_by(paper_bars.c.bar)
        ).all()
    rows = [*before, *today]
    index = pd.DatetimeIndex([pd.Timestamp(utc(r.bar)) for r in rows], name="timestamp")
    return pd.Series([float(r.equity) for r in rows], index=index, name="equity", dtype=float)


def recorded_loss_limit_day(
    engine: Engine, run_name: str, initial_equity: float, limit: float, bar: pd.Timestamp
) -> LossLimitDay:
    """The daily loss limit's state at the close of ``bar`` from the account's recorded marks
    (:func:`recorded_day_marks`; ``initial_equity`` starts its first day), by the kernel's
    definition (:func:`backtest.loss_limit_day`): what a window starting after ``bar`` carries."""
    marks = recorded_day_marks(engine, run_name, bar)
    return loss_limit_day(marks, initial_equity, limit, bar)


def account_config(engine: Engine, run_name: str) -> dict | None:
    """How the account was started (``PaperTrader(account=...)``), or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(paper_accounts.c.config).where(paper_accounts.c.run == run_name)
        ).first()
    return None if row is None else dict(row.config)
