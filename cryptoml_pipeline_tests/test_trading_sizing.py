"""Spec MLPositionSizer risk amounts and the portfolio caps, with hand numbers."""

from __future__ import annotations

import math

import pytest

from cryptoml_pipeline.execution.sizing import (
    EntrySize,
    cap_by_heat,
    cap_by_leverage,
    notional_from_risk,
    size_entry,
    spec_risk_amount,
)
from cryptoml_pipeline.settings import RiskConfig

RISK = RiskConfig(base_risk=0.02, max_risk_per_trade=0.02, portfolio_heat=0.06, max_leverage=3.0)


def test_spec_risk_amount_hand_numbers() -> None:
    # 10_000 * 0.02 * (1/2) * 0.5 * min(1, 0.2/0.4) = 25
    assert spec_risk_amount(10_000, 1, 0.5, 0.4, RISK) == pytest.approx(25.0)
    # |signal| counts, not its sign; low volatility -> multiplier 1
    assert spec_risk_amount(10_000, -2, 0.5, 0.1, RISK) == pytest.approx(100.0)


def test_spec_risk_amount_is_capped_at_max_risk_per_trade() -> None:
    generous = RISK.model_copy(update={"base_risk": 0.05})
    # uncapped 10_000 * 0.05 * 1 * 1 * 1 = 500 -> capped at 2 % = 200
    assert spec_risk_amount(10_000, 2, 1.0, 0.1, generous) == pytest.approx(200.0)


def test_spec_risk_amount_nan_input_is_zero() -> None:
    assert spec_risk_amount(10_000, 2, 1.0, math.nan, RISK) == 0.0
    assert spec_risk_amount(10_000, 2, math.nan, 0.2, RISK) == 0.0
    assert spec_risk_amount(-5.0, 2, 1.0, 0.2, RISK) == 0.0


def test_notional_from_risk() -> None:
    assert notional_from_risk(200.0, 0.1) == pytest.approx(2000.0)
    assert notional_from_risk(200.0, 0.0) == 0.0
    assert notional_from_risk(200.0, math.nan) == 0.0


def test_cap_by_heat() -> None:
    # heat 6 % of 10_000 = 600; 450 already open -> only 150 left
    assert cap_by_heat(200.0, 450.0, 10_000.0, 0.06) == pytest.approx(150.0)
    assert cap_by_heat(200.0, 100.0, 10_000.0, 0.06) == pytest.approx(200.0)
    assert cap_by_heat(200.0, 700.0, 10_000.0, 0.06) == 0.0


def test_cap_by_leverage() -> None:
    assert cap_by_leverage(20_000.0, 15_000.0, 10_000.0, 3.0) == pytest.approx(15_000.0)
    assert cap_by_leverage(20_000.0, 31_000.0, 10_000.0, 3.0) == 0.0


def test_size_entry_full_chain_and_scaling() -> None:
    # risk 200, stop 2 x 5 % = 10 % -> notional 2000
    size = size_entry(
        equity=10_000,
        signal=2,
        confidence=1.0,
        volatility=0.1,
        atr_pct=0.05,
        open_risk=0.0,
        open_notional=0.0,
        risk=RISK,
    )
    assert size == EntrySize(risk_amount=200.0, notional=2000.0, stop_distance=0.1)
    # heat: 500 open of 600 -> risk scaled to 100, notional scaled by the same factor
    size = size_entry(
        equity=10_000,
        signal=2,
        confidence=1.0,
        volatility=0.1,
        atr_pct=0.05,
        open_risk=500.0,
        open_notional=0.0,
        risk=RISK,
    )
    assert size is not None
    assert (size.risk_amount, size.notional) == pytest.approx((100.0, 1000.0))
    # leverage: stop 0.4 % -> notional 50_000 > 30_000 allowed -> scale 0.6
    size = size_entry(
        equity=10_000,
        signal=2,
        confidence=1.0,
        volatility=0.1,
        atr_pct=0.002,
        open_risk=0.0,
        open_notional=0.0,
        risk=RISK,
    )
    assert size is not None
    assert (size.risk_amount, size.notional) == pytest.approx((120.0, 30_000.0))


def test_size_entry_skips_when_nothing_fits_or_input_is_nan() -> None:
    kwargs = {
        "equity": 10_000,
        "signal": 2,
        "confidence": 1.0,
        "volatility": 0.1,
        "open_notional": 0.0,
        "risk": RISK,
    }
    assert size_entry(atr_pct=0.05, open_risk=600.0, **kwargs) is None
    assert size_entry(atr_pct=math.nan, open_risk=0.0, **kwargs) is None
    assert size_entry(atr_pct=0.0, open_risk=0.0, **kwargs) is None
