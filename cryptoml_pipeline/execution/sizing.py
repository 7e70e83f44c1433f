"""Position sizing (spec MLPositionSizer) and the portfolio limits, as small pure functions.

The spec's "position size" is read as a RISK amount (currency lost if the stop is hit):
``risk = equity * base_risk * |signal|/2 * confidence * min(1, vol_ref / volatility)``, capped at
``equity * max_risk_per_trade``; the notional follows from the stop distance:
``notional = risk / stop_distance``. Then both are scaled down together so that total open risk
stays <= ``portfolio_heat * equity`` and gross notional <= ``max_leverage * equity``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cryptoml_pipeline.settings import RiskConfig

# An entry whose notional scales below this fraction of equity is skipped ("scales to ~0").
MIN_NOTIONAL_FRACTION = 1e-6


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def spec_risk_amount(
    equity: float, signal: float, confidence: float, volatility: float, risk: RiskConfig
) -> float:
    """Spec MLPositionSizer risk amount (currency); 0.0 on NaN input or non-positive equity.

    ``volatility`` is ANNUALISED; a volatility <= 0 gives a multiplier of 1.
    """
    if not _finite(equity, signal, confidence, volatility) or equity <= 0:
        return 0.0
    vol_mult = 1.0 if volatility <= 0 else min(1.0, risk.volatility_reference / volatility)
    amount = equity * risk.base_risk * (abs(signal) / 2.0) * max(confidence, 0.0) * vol_mult
    return min(amount, equity * risk.max_risk_per_trade)


def notional_from_risk(risk_amount: float, stop_distance_frac: float) -> float:
    """Notional whose loss at a stop ``stop_distance_frac`` away equals ``risk_amount``."""
    if not _finite(risk_amount, stop_distance_frac) or stop_distance_frac <= 0 or risk_amount <= 0:
        return 0.0
    return risk_amount / stop_distance_frac


def cap_by_heat(new_risk: float, open_risk: float, equity: float, heat_limit: float) -> float:
    """The part of ``new_risk`` that keeps ``open_risk + risk <= heat_limit * equity``."""
    return max(0.0, min(new_risk, heat_limit * equity - open_risk))


def cap_by_leverage(
    new_notional: float, open_notional: float, equity: float, max_leverage: float
) -> float:
    """The part of ``new_notional`` that keeps gross notional <= ``max_leverage * equity``."""
    return max(0.0, min(new_notional, max_leverage * equity - open_notional))


@dataclass(frozen=True)
class EntrySize:
    risk_amount: float  # currency lost at the stop (before costs)
    notional: float  # currency value of the position at the entry fill
    stop_distance: float  # fraction of the entry price


def size_entry(
    *,
    equity: float,
    signal: float,
    confidence: float,
    volatility: float,
    atr_pct: float,
    open_risk: float,
    open_notional: float,
    risk: RiskConfig,
) -> EntrySize | None:
    """Full sizing of one entry; ``None`` when it must be skipped (NaN input, no room left)."""
    stop_distance = risk.atr_stop_multiple * atr_pct
    if not _finite(equity, stop_distance) or equity <= 0 or not 0 < stop_distance < 1:
        return None
    amount = spec_risk_amount(equity, signal, confidence, volatility, risk)
    notional = notional_from_risk(amount, stop_distance)
    if notional <= 0:
        return None
    heat_ok = cap_by_heat(amount, open_risk, equity, risk.portfolio_heat)
    lev_ok = cap_by_leverage(notional, open_notional, equity, risk.max_leverage)
    scale = min(1.0, heat_ok / amount, lev_ok / notional)
    if notional * scale <= MIN_NOTIONAL_FRACTION * equity:
        return None
    return EntrySize(amount * scale, notional * scale, stop_distance)


@dataclass(frozen=True)
class MLPositionSizer:
    """The spec's sizer, verbatim: ``balance * base * |signal|/2 * confidence *
    min(1, 0.2 / volatility)``, never more than ``cap * balance`` (spec: 2 % base, 5 % cap).

    The simulator reads the result as the RISK amount of a trade (see module docstring) and then
    caps it at ``RiskConfig.max_risk_per_trade`` (2 %) via the ATR stop.
    """

    base_position_size: float = 0.02
    cap: float = 0.05
    volatility_reference: float = 0.2

    def calculate_position_size(
        self, signal: float, confidence: float, account_balance: float, volatility: float
    ) -> float:
        if not _finite(signal, confidence, account_balance, volatility) or account_balance <= 0:
            return 0.0
        base_size = account_balance * self.base_position_size
        signal_multiplier = abs(signal) / 2.0
        vol_mult = 1.0 if volatility <= 0 else min(1.0, self.volatility_reference / volatility)
        size = base_size * signal_multiplier * max(confidence, 0.0) * vol_mult
        return min(size, account_balance * self.cap)
