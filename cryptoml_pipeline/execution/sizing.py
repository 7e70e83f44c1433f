"""The spec's ``MLPositionSizer`` interface over the kernel's sizer.

The formula lives once, in the kernel: :func:`~cryptoml_pipeline.execution.kernel.risk_amount`
(the spec's amount, read by the simulator as the RISK of a trade) and
:func:`~cryptoml_pipeline.execution.kernel.size_entry` (notional = risk / stop distance, scaled
to the portfolio heat and leverage limits), which the simulator and the real-time decision
(:func:`cryptoml_pipeline.live.decision.decide`) call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cryptoml_pipeline.execution import kernel as K


@dataclass(frozen=True)
class MLPositionSizer:
    """The spec's sizer: ``balance * base * |signal|/2 * confidence * min(1, 0.2 / volatility)``,
    never more than ``cap * balance`` (spec: 2 % base, 5 % cap).

    The simulator reads the result as the RISK amount of a trade and caps it at
    ``RiskConfig.max_risk_per_trade`` (2 %) via the ATR stop.
    """

    base_position_size: float = 0.02
    cap: float = 0.05
    volatility_reference: float = 0.2

    def calculate_position_size(
        self, signal: float, confidence: float, account_balance: float, volatility: float
    ) -> float:
        values = (signal, confidence, account_balance, volatility)
        if not all(math.isfinite(v) for v in values) or account_balance <= 0:
            return 0.0
        return float(
            K.risk_amount(
                float(account_balance),
                float(signal),
                float(confidence),
                float(volatility),
                self.base_position_size,
                self.volatility_reference,
                self.cap,
            )
        )
