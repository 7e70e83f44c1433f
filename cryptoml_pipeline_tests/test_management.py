from dataclasses import replace

import numpy as np
import pytest

from cryptoml_pipeline.management.gate import (
    ValidationScore,
    evaluate_gate,
    expected_calibration_error,
    outputs_are_sane,
    score_predictions,
)
from cryptoml_pipeline.management.retrain_policy import should_retrain
from cryptoml_pipeline.settings import GateConfig


def test_sanity_rejects_nan_and_non_distributions() -> None:
    ok = np.full((4, 5), 0.2)
    assert outputs_are_sane(ok)[0]
    bad = ok.copy()
    bad[1, 2] = np.nan
    assert not outputs_are_sane(bad)[0]
    assert not outputs_are_sane(np.full((4, 5), 0.5))[0]
    assert not outputs_are_sane(np.empty((0, 5)))[0]


CFG = {"timeframe": "1h", "symbols": ["BTC/USDT"], "feature_cols": ["a"], "label_config": {}}
GOOD = ValidationScore(n_rows=100, accuracy=0.40, calibration_error=0.05, latency_ms_per_row=0.1)


def gate(**kw):
    args = {
        "sane": True,
        "sanity_reason": "ok",
        "candidate": GOOD,
        "deployed": None,
        "candidate_manifest": CFG,
        "deployed_manifest": None,
        "config": GateConfig(margin=0.01),
    }
    return evaluate_gate(**(args | kw))


def test_gate_first_deploy_needs_only_sanity() -> None:
    d = gate()
    assert d.deploy and "no model deployed" in d.reason
    d = gate(sane=False, sanity_reason="nan")
    assert not d.deploy and d.blocking and "nan" in d.reason


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"calibration_error": 0.5}, "calibration error"),
        ({"latency_ms_per_row": 500.0}, "latency"),
        ({"n_rows": 3}, "labelled validation rows"),
    ],
)
def test_gate_sanity_bounds_block(change, words) -> None:
    d = gate(candidate=replace(GOOD, **change))
    assert not d.deploy and d.blocking and words in d.reason


def test_gate_needs_the_margin_on_the_validation_window() -> None:
    current = CFG | {"version": "old"}
    deployed = replace(GOOD, accuracy=0.395)
    worse = gate(deployed_manifest=current, deployed=deployed)  # +0.005 < margin 0.01
    assert not worse.deploy and not worse.blocking and "kept as candidate" in worse.reason
    better = gate(deployed_manifest=current, deployed=replace(GOOD, accuracy=0.38))
    assert better.deploy and "validation rows" in better.reason
    no_margin = gate(deployed_manifest=current, deployed=deployed, config=GateConfig(margin=0))
    assert no_margin.deploy


def test_gate_does_not_compare_models_of_other_configurations() -> None:
    other = CFG | {"timeframe": "4h"}
    d = gate(deployed_manifest=other, deployed=replace(GOOD, accuracy=0.9))
    assert d.deploy and "timeframe" in d.reason and "not comparable" in d.reason


def test_calibration_error_and_scores() -> None:
    probs = np.tile([0.1, 0.1, 0.6, 0.1, 0.1], (10, 1))
    labels = np.array([2] * 6 + [0] * 4)  # 60 % right at confidence 0.6 -> calibrated
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.zeros(10)) == pytest.approx(0.6)
    score = score_predictions(probs, np.r_[labels[:9], np.nan], seconds=0.01)
    assert score.n_rows == 9 and score.accuracy == pytest.approx(6 / 9)
    assert score.latency_ms_per_row == pytest.approx(1.0)


def test_should_retrain_spec_threshold() -> None:
    assert should_retrain(0.35, 0.40, 0.10)  # 0.35 < 0.36
    assert not should_retrain(0.37, 0.40, 0.10)
    assert not should_retrain(None, 0.40, 0.10)
    assert not should_retrain(0.1, None, 0.10)


def test_missing_settlements_found_per_symbol() -> None:
    import pandas as pd

    from cryptoml_pipeline.defs.assets.ingestion import missing_settlements

    t = pd.Timestamp("2025-01-01", tz="UTC")
    funding = pd.DataFrame(
        {
            "timestamp": [
                t,
                t + pd.Timedelta(hours=16),
                t,
                t + pd.Timedelta(hours=8),
                t + pd.Timedelta(hours=16),
            ],
            "symbol": ["A", "A", "B", "B", "B"],
            "funding_rate": 0.0001,
        }
    )
    missing = missing_settlements(funding, ["A", "B", "C"], t, t + pd.Timedelta(days=1), 8)
    assert missing["A"] == [t + pd.Timedelta(hours=8)]
    assert "B" not in missing
    assert len(missing["C"]) == 3


def test_off_schedule_funding_rows_are_found() -> None:
    import pandas as pd

    from cryptoml_pipeline.defs.assets.ingestion import off_schedule_settlements

    t = pd.Timestamp("2025-01-01", tz="UTC")
    funding = pd.DataFrame(
        {
            "timestamp": [
                t,
                t + pd.Timedelta(hours=4),
                t + pd.Timedelta(hours=8),
                t - pd.Timedelta(hours=4),
            ],  # the last one is before the window
            "symbol": "A",
            "funding_rate": 0.0001,
        }
    )
    off = off_schedule_settlements(funding, t, t + pd.Timedelta(days=1), 8)
    assert list(off["timestamp"]) == [t + pd.Timedelta(hours=4)]
    assert off_schedule_settlements(funding, t, t + pd.Timedelta(days=1), 4).empty
