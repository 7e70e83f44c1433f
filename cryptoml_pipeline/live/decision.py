"""What the backtest would do with one signal, by the backtest's own rules and functions.

* Entry (flat): :func:`execution.kernel.entry_direction` with the kernel's own parameters
  (:func:`execution.backtest.kernel_params`: entry confidence threshold, ``edge_cost_multiple``,
  the entry fee of the order type) and the fill's slippage (:func:`execution.backtest.
  slippage_matrix`: half-spread + volatility term of this decision) — so the cost filter is
  ``expected_return * direction >= edge_cost_multiple * 2 * (fee + slippage)``; the size from
  the kernel's sizer :func:`execution.kernel.size_entry` with every limit of the backtest, the
  notional caps (``risk.max_notional_per_symbol`` / ``max_notional_total``) included (equity =
  ``costs.initial_equity`` unless given; ``open_risk`` / ``gross_notional``: what the account
  already holds, default none).
* The daily loss limit (``risk.daily_loss_limit``), where the caller gives ``day_open_equity``
  (the equity at the UTC day's first open): the kernel's rule
  :func:`execution.kernel.loss_limit_hit` on the lowest equity marked at a close so far that day
  (``day_low_equity``, default ``equity``); tripped, no entry (a flip only exits). The live
  service (``/signal``) gives its paper account's day
  (:meth:`.paper.PaperTrader.loss_limit_inputs`: none where the fill opens a new UTC day).
* Review of a held position (``position`` = +1 / -1, at the end of its hold period): held on when
  the kernel's review :func:`execution.kernel.holds` keeps it (same direction with
  ``confidence >= hold threshold``, no cost filter); otherwise exit, and when the entry rules
  pass in the other direction, flip (enter the other side at the same open).

The decision fills at the open of the bar after ``bar_open``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from cryptoml_pipeline.execution import kernel as K
from cryptoml_pipeline.execution.backtest import kernel_params, slippage_matrix
from cryptoml_pipeline.settings import PipelineSettings

SIDES = {1: "long", -1: "short", 0: None}


@dataclass(frozen=True)
class Decision:
    action: str  # "enter" | "hold" | "exit"
    side: str | None  # enter: the new side; hold / exit: the position's side (None = flat)
    flip_to: str | None  # exit that re-enters the other side at the same open
    risk_amount: float | None  # currency lost at the stop (entries)
    notional: float | None  # currency value of the entry
    stop_distance: float | None  # fraction of the entry price
    equity: float
    cost_threshold: float | None  # |expected_return| the cost filter asks for (None = off)
    slippage: float
    fee: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _slippage(settings: PipelineSettings, volatility: float, timeframe: str) -> float:
    """The backtest's slippage of a fill whose latest decision has this annualised volatility."""
    grid = SimpleNamespace(open=np.empty((1, 1)))
    aligned = {"volatility": np.array([[volatility]], dtype=np.float64)}
    return float(
        slippage_matrix(aligned, grid, settings.costs, settings.slippage, timeframe)[0, 0]  # type: ignore[arg-type]
    )


def decide(
    *,
    signal: int,
    confidence: float,
    expected_return: float,
    volatility: float,
    atr_pct: float,
    settings: PipelineSettings,
    timeframe: str,
    position: int = 0,
    equity: float | None = None,
    open_risk: float = 0.0,
    gross_notional: float = 0.0,
    day_open_equity: float | None = None,
    day_low_equity: float | None = None,
) -> Decision:
    """The backtest's decision on this signal (module docstring)."""
    iparams, f = kernel_params(settings.costs, settings.risk, settings.min_hold_bars, None)
    fee = float(f[K.F_MAKER] if iparams[K.I_MAKER] else f[K.F_TAKER])
    slip = _slippage(settings, volatility, timeframe)
    edge = float(f[K.F_EDGE_MULT])
    threshold = None if math.isnan(edge) else edge * 2.0 * (fee + slip)
    equity = float(f[K.F_EQUITY] if equity is None else equity)
    sig, conf, exp = float(signal), float(confidence), float(expected_return)
    direction = int(K.entry_direction(sig, conf, exp, slip, fee, float(f[K.F_ENTRY_CONF]), edge))
    common = {"equity": equity, "cost_threshold": threshold, "slippage": slip, "fee": fee}
    flat = {"risk_amount": None, "notional": None, "stop_distance": None}
    low = equity if day_low_equity is None else float(day_low_equity)
    halted = day_open_equity is not None and bool(
        K.loss_limit_hit(float(day_open_equity), low, float(f[K.F_LOSS_LIMIT]))
    )

    def entry(d: int, action: str, side: str | None, flip: str | None, why: str) -> Decision:
        if halted:
            fallback = "exit" if position else "hold"
            why = f"{why}; the daily loss limit blocks new entries for the rest of the UTC day"
            return Decision(fallback, SIDES[position], None, **flat, **common, reason=why)
        stop_distance = float(f[K.F_ATR_MULT] * atr_pct)
        amount, notional = K.size_entry(
            equity,
            sig,
            conf,
            float(volatility),
            stop_distance,
            float(open_risk),
            float(gross_notional),
            f,
        )
        if notional == 0.0:
            fallback = "exit" if position else "hold"
            why = f"{why}; the sizer skips the entry (undefined volatility/ATR or no room)"
            return Decision(fallback, SIDES[position], None, **flat, **common, reason=why)
        return Decision(
            action,
            side,
            flip,
            float(amount),
            float(notional),
            stop_distance,
            **common,
            reason=why,
        )

    if position == 0:
        if direction == 0:
            return Decision("hold", None, None, **flat, **common, reason=_why_not(sig, conf, f))
        return entry(direction, "enter", SIDES[direction], None, "entry rules pass")
    hold_conf = float(f[K.F_HOLD_CONF])
    if K.holds(sig, conf, float(position), hold_conf):
        why = "same direction with confidence >= the hold threshold"
        return Decision("hold", SIDES[position], None, **flat, **common, reason=why)
    if direction == -position:
        return entry(direction, "exit", SIDES[position], SIDES[direction], "flip: entry rules pass")
    why = "the signal no longer supports the position"
    return Decision("exit", SIDES[position], None, **flat, **common, reason=why)


def _why_not(sig: float, conf: float, f: np.ndarray) -> str:
    if sig == 0:
        return "signal 0"
    if not (conf >= f[K.F_ENTRY_CONF] and conf > 0):
        return "confidence below the entry threshold"
    return "expected return below the cost filter"
