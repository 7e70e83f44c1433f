"""The dashboard's live panel: every account of the live service (``cryptoml live``, paper or
``--execute``) as the registry database holds it -- the account record (``paper_accounts.config``:
mode, model, guard thresholds, ``killed_at``), the cursor and cash (``paper_runs``), each processed
bar's equity mark and guard states (``paper_bars``), the open positions and the orders.

Guards: ``stale``, ``expired`` and ``degraded`` are the service's own, recorded per bar (their
state at the bar's close): "tripped" is the last bar's state, "trips" the number of bars where a
guard went from clear to tripped. ``kill`` is tripped once the account was killed (``killed_at``)
or a bar recorded it; a kill file not acted on yet shows as requested. The daily loss limit and
the notional caps act inside the simulator at entries (``execution/backtest.py``); each bar
records what the simulator's guard counts added at it (``BacktestResult.guard_counts``): "trips"
is their sum (UTC days the loss limit tripped; entries a cap scaled down or skipped), "tripped"
whether the loss limit tripped in the last bar's UTC day / a cap acted at the last bar. Whatever
the database does not hold is shown as :data:`NOT_RECORDED`, never inferred.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Engine

from cryptoml_pipeline.registry.schema import (
    paper_accounts,
    paper_bars,
    paper_orders,
    paper_positions,
    paper_runs,
    utc,
)

NOT_RECORDED = "not recorded"
BAR_GUARDS = ("stale", "expired", "degraded")  # the service's guards, recorded with every bar
KERNEL_GUARDS = ("daily_loss_limit", "max_notional_per_symbol", "max_notional_total")
COUNTS = {  # the simulator's count of each (BacktestResult.guard_counts) and what it counts
    "daily_loss_limit": ("daily_loss_limit_days", "UTC days it tripped"),
    "max_notional_per_symbol": (
        "max_notional_per_symbol_entries",
        "entries it scaled down/skipped",
    ),
    "max_notional_total": ("max_notional_total_entries", "entries it scaled down/skipped"),
}
RULES = {  # each guard's threshold as the table shows it
    "stale": "last bar lags the clock by > {} bars",
    "expired": "model older than {} days",
    "degraded": "recent accuracy < (1 - {}) x prior",
    "daily_loss_limit": "no entry for the day once equity <= (1 - {}) x day start",
    "max_notional_per_symbol": "entry notional <= {} x equity",
    "max_notional_total": "gross notional <= {} x equity",
}
EMPTY_NOTE = (
    "no live-service account recorded yet — start one with `cryptoml live` (paper) or "
    "`cryptoml live --execute`"
)


@dataclass(frozen=True)
class BarMarks:
    """An account's processed bars: equity at each close, the service guards' states and the
    simulator's guard counts recorded with each bar (None where the bar has none) and the last
    bar's close per symbol."""

    equity: pd.Series
    guards: list[dict[str, bool] | None]
    counts: list[dict[str, int] | None]
    closes: dict[str, float]


def account_names(engine: Engine) -> list[str]:
    """The live service's accounts (those with an account record), newest first."""
    query = (
        sa.select(paper_accounts.c.run)
        .join(paper_runs, paper_runs.c.name == paper_accounts.c.run)
        .order_by(paper_runs.c.created_at.desc(), paper_accounts.c.run)
    )
    with engine.connect() as conn:
        return [str(r.run) for r in conn.execute(query).all()]


def bar_marks(engine: Engine, run: str) -> BarMarks:
    query = (
        sa.select(paper_bars.c.bar, paper_bars.c.equity, paper_bars.c.inputs)
        .where(paper_bars.c.run == run)
        .order_by(paper_bars.c.bar)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    index = pd.DatetimeIndex([pd.Timestamp(utc(r.bar)) for r in rows], name="timestamp")
    equity = pd.Series([float(r.equity) for r in rows], index=index, name=run, dtype=float)
    inputs = [json.loads(r.inputs) for r in rows]
    guards = [ln.get("guards") for ln in inputs]
    counts = [ln.get("guard_counts") for ln in inputs]
    closes = {str(s): float(v[3]) for s, v in (inputs[-1]["candles"] if inputs else {}).items()}
    return BarMarks(equity=equity, guards=guards, counts=counts, closes=closes)


def equity_curves(engine: Engine) -> dict[str, pd.Series]:
    """Every account's equity marked at each processed bar's close."""
    return {run: bar_marks(engine, run).equity for run in account_names(engine)}


def rising_edges(states: Sequence[bool]) -> int:
    """How many times a state went from False (or the start) to True."""
    return sum(1 for i, on in enumerate(states) if on and (i == 0 or not states[i - 1]))


def _yes(on: bool) -> str:
    return "yes" if on else "no"


def _threshold(name: str, limits: Any) -> str:
    """The account record's threshold of a guard as text: its rule, ``off`` or not recorded."""
    if not isinstance(limits, Mapping) or name not in limits:
        return NOT_RECORDED
    return "off" if limits[name] is None else RULES[name].format(limits[name])


def _bar_guard(name: str, threshold: str, guards: list[dict[str, bool] | None]) -> dict[str, Any]:
    recorded = [bool(g.get(name, False)) for g in guards if g is not None]
    row: dict[str, Any] = {"guard": name, "threshold": threshold}
    if not recorded:
        return row | {"tripped": NOT_RECORDED, "trips": NOT_RECORDED, "note": "no bar records it"}
    last = guards[-1]
    tripped = NOT_RECORDED if last is None else _yes(bool(last.get(name, False)))
    note = "" if len(recorded) == len(guards) else f"over {len(recorded)} of {len(guards)} bars"
    return row | {"tripped": tripped, "trips": rising_edges(recorded), "note": note}


def _kernel_tripped(name: str, marks: BarMarks) -> str:
    """Loss limit: tripped in the last bar's UTC day; a cap: acted at the last bar."""
    key = COUNTS[name][0]
    if not marks.counts or marks.counts[-1] is None:
        return NOT_RECORDED
    if name != "daily_loss_limit":
        return _yes(marks.counts[-1].get(key, 0) > 0)
    days = marks.equity.index.floor("D")
    today = [c for d, c in zip(days, marks.counts, strict=True) if d == days[-1]]
    return _yes(any(c is not None and c.get(key, 0) > 0 for c in today))


def _kernel_guard(name: str, threshold: str, marks: BarMarks) -> dict[str, Any]:
    row: dict[str, Any] = {"guard": name, "threshold": threshold}
    if threshold == "off":  # the simulator's counts are 0 by construction
        return row | {"tripped": "no", "trips": 0, "note": ""}
    key, unit = COUNTS[name]
    recorded = [c for c in marks.counts if c is not None]
    if not recorded:
        return row | {"tripped": NOT_RECORDED, "trips": NOT_RECORDED, "note": "no bar records it"}
    note = unit
    if len(recorded) < len(marks.counts):
        note += f", over {len(recorded)} of {len(marks.counts)} bars"
    trips = sum(int(c.get(key, 0)) for c in recorded)
    return row | {"tripped": _kernel_tripped(name, marks), "trips": trips, "note": note}


def _kill_guard(
    killed_at: str | None, guards: list[dict[str, bool] | None], requested: bool
) -> dict[str, Any]:
    tripped = killed_at is not None or any(bool(g and g.get("kill")) for g in guards)
    note = f"killed (flattened) at the close of {killed_at}" if killed_at else ""
    if requested and not tripped:
        note = "kill file present: the service acts on it at its next check"
    row = {"guard": "kill", "threshold": "POST /kill or OUTPUT/live/<run>.kill"}
    return row | {"tripped": _yes(tripped), "trips": int(tripped), "note": note}


def guard_rows(
    config: Mapping[str, Any], marks: BarMarks, *, kill_requested: bool = False
) -> list[dict[str, Any]]:
    """One row per guard: threshold (the account record's), tripped now, trips, a note."""
    limits = config.get("guards")
    rows = [_bar_guard(n, _threshold(n, limits), marks.guards) for n in BAR_GUARDS]
    rows += [_kernel_guard(n, _threshold(n, limits), marks) for n in KERNEL_GUARDS]
    rows.append(_kill_guard(config.get("killed_at"), marks.guards, kill_requested))
    return rows


def _positions(engine: Engine, run: str) -> list[tuple[str, int, float]]:
    query = (
        sa.select(paper_positions.c.symbol, paper_positions.c.direction, paper_positions.c.quantity)
        .where(paper_positions.c.run == run)
        .order_by(paper_positions.c.symbol)
    )
    with engine.connect() as conn:
        return [(str(r.symbol), int(r.direction), float(r.quantity)) for r in conn.execute(query)]


def _order_counts(engine: Engine, run: str) -> dict[str, int]:
    query = (
        sa.select(paper_orders.c.reason, sa.func.count())
        .where(paper_orders.c.run == run)
        .group_by(paper_orders.c.reason)
    )
    with engine.connect() as conn:
        return {str(reason): int(n) for reason, n in conn.execute(query).all()}


def _mode(config: Mapping[str, Any]) -> str:
    """``paper`` (simulated fills) or ``live`` (``--execute``: orders on the exchange)."""
    if "execute" in config:
        return "live" if config["execute"] else "paper"
    return "paper" if config.get("mode") == "replay" else NOT_RECORDED


def _feed(config: Mapping[str, Any]) -> str:
    return {"replay": "replay", "live": "exchange"}.get(str(config.get("mode")), NOT_RECORDED)


def _kill_requested(output_dir: Path | None, run: str) -> bool:
    return output_dir is not None and (Path(output_dir) / "live" / f"{run}.kill").exists()


def account_view(
    engine: Engine, run: str, output_dir: Path | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One account's table row and its guard rows."""
    with engine.connect() as conn:
        state = conn.execute(sa.select(paper_runs).where(paper_runs.c.name == run)).one()
        config = conn.execute(
            sa.select(paper_accounts.c.config).where(paper_accounts.c.run == run)
        ).scalar_one()
    config = dict(config or {})
    marks = bar_marks(engine, run)
    killed_at = config.get("killed_at")
    last = utc(state.last_bar)
    # a kill flattens after the last bar: the account is then its cash
    if killed_at or not len(marks.equity):
        equity = float(state.cash)
    else:
        equity = float(marks.equity.iloc[-1])
    positions = _positions(engine, run)
    gross = sum(q * marks.closes[s] for s, _, q in positions if s in marks.closes)
    orders = _order_counts(engine, run)
    guards = guard_rows(config, marks, kill_requested=_kill_requested(output_dir, run))
    tripped = [g["guard"] for g in guards if g["tripped"] == "yes"]
    row = {
        "account": run,
        "mode": _mode(config),
        "feed": _feed(config),
        "model": str(state.model_version),
        "last_bar": None if last is None else pd.Timestamp(last).isoformat(),
        "bars": len(marks.equity),
        "equity": equity,
        "return": equity / float(state.initial_equity) - 1.0,
        "positions": ", ".join(
            f"{s} {'long' if d > 0 else 'short'} {q:.6g}" for s, d, q in positions
        )
        or "none",
        "exposure": gross / equity if equity else None,
        "trades": orders.get("entry", 0),
        "fills": sum(orders.values()),
        "guards_tripped": ", ".join(tripped) or "none",
    }
    return row, [{"account": run, **g} for g in guards]


def live_accounts(engine: Engine, output_dir: Path | None = None) -> dict[str, Any]:
    """The live panel's payload: ``rows`` (one per account), ``guards`` (one per account and
    guard) and ``note`` (why it is empty)."""
    rows: list[dict[str, Any]] = []
    guards: list[dict[str, Any]] = []
    for run in account_names(engine):
        row, account_guards = account_view(engine, run, output_dir)
        rows.append(row)
        guards.extend(account_guards)
    return {"rows": rows, "guards": guards, "note": None if rows else EMPTY_NOTE}
