"""The trading sections of the report (gross vs net, controls, calibration, monthly returns,
trades, verdict, the extra KPIs) are checked by the report schema."""

from __future__ import annotations

import copy
from dataclasses import replace

import jsonschema
import pandas as pd
import pytest

from cryptoml_pipeline.reporting.report import build_report, validate_report
from cryptoml_pipeline.settings import profile_settings
from cryptoml_pipeline_tests.test_report import DEPLOY, INFO, _evaluation

EXTRA_KPIS = {
    "precision": 0.4,
    "recall": 0.35,
    "avg_return_per_trade": 0.002,
    "calmar": 1.1,
    "turnover": 12.5,
    "turnover_annual": 50.0,
    "time_in_market": 0.6,
    "model_stability": 0.05,
    "psr": 0.8,
    "dsr": 0.4,
    "sharpe_ci": [-0.5, 2.5],
    "avg_daily_return_ci": [-0.001, 0.003],
}


def full_report() -> dict:
    ev = _evaluation()
    trades = pd.DataFrame(
        {
            "symbol": ["BTC/USDT"],
            "side": ["long"],
            "entry_time": [pd.Timestamp("2025-01-01 01:00", tz="UTC")],
            "exit_time": [pd.Timestamp("2025-01-01 05:00", tz="UTC")],
            "pnl": [12.5],
            "exit_reason": ["time"],
        }
    )
    ev = replace(
        ev,
        strategy={**ev.strategy, **EXTRA_KPIS},
        trades=trades,
        costs={
            "gross_total_return": 0.12,
            "net_total_return": 0.1,
            "cost_drag": 0.02,
            "fees_paid": 0.015,
            "funding_paid": 0.005,
            "turnover": 12.5,
            "gross_sharpe": 1.4,
            "net_sharpe": 1.2,
        },
        controls={
            "random_same_turnover": {
                "n_paths": 200,
                "sharpe_p5_p50_p95": [-1.0, 0.0, 1.0],
                "total_return_median": -0.01,
                "turnover_median": 12.0,
                "strategy_sharpe": 1.2,
                "strategy_percentile": 0.9,
                "p_value": 0.1,
                "method": "circular time shift",
            },
            "shuffled_labels": {
                "available": True,
                "leak": False,
                "psr": 0.5,
                "directional_accuracy": 0.5,
                "directional_z": 0.1,
                "n_directional": 100,
                "reason": "no edge (as expected)",
            },
        },
        calibration=[
            {
                "bin": 0,
                "n": 10,
                "confidence_min": 0.2,
                "confidence_mean": 0.3,
                "accuracy": 0.3,
                "hit_rate": None,
                "n_directional": 0,
            }
        ],
        monthly=[{"year": 2025, "month": 1, "return": 0.01}],
    )
    return build_report(
        evaluation=ev, data_info=INFO, deployment=DEPLOY, settings=profile_settings("tiny")
    )


def test_report_with_every_trading_section_validates() -> None:
    report = full_report()
    validate_report(report)
    assert report["trades"][0]["entry_time"] == "2025-01-01T01:00:00+00:00"
    assert report["verdict"].startswith("The strategy met")
    assert report["costs_gross_net"]["cost_drag"] == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("strategy", "psr"), 1.5),
        (("strategy", "time_in_market"), -0.1),
        (("strategy", "sharpe_ci"), [1.0]),
        (("costs_gross_net", "turnover"), -1.0),
        (("controls", "random_same_turnover", "p_value"), 0.0),
        (("controls", "random_same_turnover", "sharpe_p5_p50_p95"), [0.0, 1.0]),
        (("controls", "shuffled_labels", "leak"), "no"),
        (("calibration", 0, "accuracy"), 2.0),
        (("monthly_returns", 0, "month"), 13),
        (("trades", 0, "side"), "up"),
        (("verdict",), ""),
    ],
)
def test_malformed_trading_sections_are_rejected(path, value) -> None:
    broken = copy.deepcopy(full_report())
    target = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)


@pytest.mark.parametrize(
    "section", ["costs_gross_net", "controls", "calibration", "monthly_returns", "verdict"]
)
def test_trading_sections_are_required(section) -> None:
    broken = copy.deepcopy(full_report())
    del broken[section]
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)
