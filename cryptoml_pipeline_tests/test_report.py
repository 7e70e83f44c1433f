import copy

import jsonschema
import pandas as pd
import pytest

from cryptoml_pipeline.evaluation.metrics import kpis_vs_targets
from cryptoml_pipeline.evaluation.walk_forward import Evaluation
from cryptoml_pipeline.reporting.html import kpi_markdown, render_html
from cryptoml_pipeline.reporting.report import build_report, validate_report
from cryptoml_pipeline.settings import TargetsConfig, profile_settings

KPIS = {
    "total_return": 0.1,
    "avg_daily_return": 0.001,
    "sharpe": 1.2,
    "sortino": 1.5,
    "max_drawdown": 0.08,
    "win_rate": 0.55,
    "n_trades": 12,
    "accuracy": 0.4,
    "directional_accuracy": 0.52,
    "fees_paid": 0.01,
    "funding_paid": 0.002,
}


def _evaluation(sharpe: float = 1.2) -> Evaluation:
    strategy = dict(KPIS, sharpe=sharpe)
    equity = pd.DataFrame(
        {
            "timestamp": pd.date_range("2025-01-01", periods=48, freq="h", tz="UTC"),
            "strategy": [10_000 + i for i in range(48)],
            "buy_and_hold": [10_000 - i for i in range(48)],
            "rule_based": [10_000.0] * 48,
        }
    )
    baseline = dict(KPIS, sharpe=0.5, accuracy=None, directional_accuracy=None)
    return Evaluation(
        equity=equity,
        trades=pd.DataFrame(),
        strategy=strategy,
        baselines={"buy_and_hold": baseline, "rule_based": dict(baseline, sharpe=2.0)},
        targets=kpis_vs_targets(strategy, TargetsConfig()),
        folds=[
            {
                "fold": "2025-01-01",
                "train_start": "2024-07-05",
                "train_end": "2025-01-01",
                "test_start": "2025-01-01",
                "test_end": "2025-04-01",
                "accuracy": 0.4,
            }
        ],
        acc_recent=0.4,
        acc_prior=0.42,
    )


INFO = {
    "source": "parquet",
    "synthetic": False,
    "price_source": "perpetual",
    "symbols": ["BTC/USDT"],
    "timeframe": "1h",
    "start": "2024-01-01T00:00:00+00:00",
    "end": "2025-10-01T00:00:00+00:00",
}
DEPLOY = {"deployed": True, "version": "v1", "reason": "first"}


def test_report_validates_and_compares_with_baselines() -> None:
    report = build_report(
        evaluation=_evaluation(),
        data_info=INFO,
        deployment=DEPLOY,
        settings=profile_settings("tiny"),
    )
    validate_report(report)
    assert report["comparison"]["beats_buy_and_hold"] is True
    assert report["comparison"]["beats_rule_based"] is False
    assert any("rule-based" in w for w in report["warnings"])
    assert report["targets"]["sharpe"]["met"] is False  # 1.2 < 2
    assert "SYNTHETIC" not in report["title"]


def test_schema_rejects_missing_or_malformed_fields() -> None:
    report = build_report(
        evaluation=_evaluation(),
        data_info=INFO,
        deployment=DEPLOY,
        settings=profile_settings("tiny"),
    )
    broken = copy.deepcopy(report)
    del broken["baselines"]["rule_based"]
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)
    broken = copy.deepcopy(report)
    broken["strategy"]["max_drawdown"] = -0.1  # drawdown is a positive fraction
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)


def test_too_good_sharpe_is_flagged_as_a_possible_leak() -> None:
    report = build_report(
        evaluation=_evaluation(sharpe=6.0),
        data_info=INFO,
        deployment=DEPLOY,
        settings=profile_settings("tiny"),
    )
    assert any("leak" in w for w in report["warnings"])


def test_synthetic_title_and_html() -> None:
    info = dict(INFO, source="synthetic", synthetic=True, price_source="synthetic")
    ev = _evaluation()
    report = build_report(
        evaluation=ev, data_info=info, deployment=DEPLOY, settings=profile_settings("tiny")
    )
    assert report["title"].startswith("SYNTHETIC")
    page = render_html(report, ev.equity)
    assert "SYNTHETIC DATA" in page and "data:image/png;base64," in page
    assert "| Sharpe" in kpi_markdown(report)


def test_target_text_shows_bound_and_verdict() -> None:
    from cryptoml_pipeline.reporting.html import target_text

    assert target_text({"min": 2.0, "max": None, "value": 1.0, "met": False}, "num") == (
        "≥ 2.00 · not met"
    )
    assert target_text({"min": None, "max": 0.15, "value": 0.1, "met": True}, "pct") == (
        "≤ 15.00% · met"
    )
    assert target_text({"min": 0.005, "max": 0.02, "value": None, "met": None}, "pct") == (
        "0.50%–2.00% · n/a"
    )
    assert target_text(None, "pct") == ""
