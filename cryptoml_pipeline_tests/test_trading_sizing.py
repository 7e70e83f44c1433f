"""The kernel's sizer (spec MLPositionSizer risk amounts and the portfolio caps), with hand
numbers: the compiled helpers the simulator and the real-time decision both call."""

from __future__ import annotations

import math

import pytest

from cryptoml_pipeline.execution import kernel as K
from cryptoml_pipeline.execution.backtest import kernel_params
from cryptoml_pipeline.settings import CostConfig, RiskConfig

RISK = RiskConfig(base_risk=0.02, max_risk_per_trade=0.02, portfolio_heat=0.06, max_leverage=3.0)


def fparams(risk: RiskConfig = RISK):
    return kernel_params(CostConfig(), risk, 1, None)[1]


def risk_amount(equity, signal, confidence, volatility, risk: RiskConfig = RISK) -> float:
    return K.risk_amount(
        equity,
        signal,
        confidence,
        volatility,
        risk.base_risk,
        risk.volatility_reference,
        risk.max_risk_per_trade,
    )


def size(stop_distance, open_risk=0.0, gross=0.0, *, equity=10_000.0, vol=0.1, conf=1.0):
    return K.size_entry(equity, 2.0, conf, vol, stop_distance, open_risk, gross, fparams())


def test_risk_amount_hand_numbers() -> None:
    # 10_000 * 0.02 * (1/2) * 0.5 * min(1, 0.2/0.4) = 25
    assert risk_amount(10_000.0, 1.0, 0.5, 0.4) == pytest.approx(25.0)
    # |signal| counts, not its sign; low volatility -> multiplier 1; volatility <= 0 -> 1
    assert risk_amount(10_000.0, -2.0, 0.5, 0.1) == pytest.approx(100.0)
    assert risk_amount(10_000.0, -2.0, 0.5, 0.0) == pytest.approx(100.0)


def test_risk_amount_is_capped_at_max_risk_per_trade() -> None:
    generous = RISK.model_copy(update={"base_risk": 0.05})
    # uncapped 10_000 * 0.05 * 1 * 1 * 1 = 500 -> capped at 2 % = 200
    assert risk_amount(10_000.0, 2.0, 1.0, 0.1, generous) == pytest.approx(200.0)


def test_size_entry_notional_is_risk_over_stop_distance() -> None:
    # risk 200, stop 2 x 5 % = 10 % -> notional 2000
    assert size(0.1) == pytest.approx((200.0, 2000.0))


def test_size_entry_scales_risk_and_notional_to_the_heat_limit() -> None:
    # heat 6 % of 10_000 = 600; 450 already open -> only 150 left: scale 0.75
    assert size(0.1, open_risk=450.0) == pytest.approx((150.0, 1500.0))
    assert size(0.1, open_risk=100.0) == pytest.approx((200.0, 2000.0))


def test_size_entry_scales_to_the_leverage_limit() -> None:
    # stop 0.4 % -> notional 50_000 > 30_000 allowed -> scale 0.6
    assert size(0.004) == pytest.approx((120.0, 30_000.0))
    # 15_000 already open -> 15_000 left -> scale 0.3
    assert size(0.004, gross=15_000.0) == pytest.approx((60.0, 15_000.0))


def test_size_entry_skips_when_nothing_fits_or_input_is_nan() -> None:
    assert size(0.1, open_risk=600.0) == (0.0, 0.0)  # no heat left
    assert size(0.1, gross=31_000.0) == (0.0, 0.0)  # no leverage left
    assert size(math.nan) == (0.0, 0.0)
    assert size(0.0) == (0.0, 0.0)
    assert size(1.0) == (0.0, 0.0)  # a stop distance of 100 %
    assert size(0.1, vol=math.nan) == (0.0, 0.0)
    assert size(0.1, conf=math.nan) == (0.0, 0.0)
    assert size(0.1, equity=-5.0) == (0.0, 0.0)
    assert size(0.1, conf=0.0) == (0.0, 0.0)  # zero risk
