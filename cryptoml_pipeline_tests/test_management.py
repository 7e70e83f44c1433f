from dataclasses import replace

import numpy as np
import pytest

from cryptoml_pipeline.monitoring.gate import (
    ValidationScore,
    evaluate_gate,
    evidence_failure,
    outputs_are_sane,
    score_predictions,
    sign_calibration_error,
)
from cryptoml_pipeline.monitoring.retrain_policy import should_retrain
from cryptoml_pipeline.settings import GateConfig


def test_sanity_rejects_nan_and_non_distributions() -> None:
    er, conf = np.full(4, 0.01), np.full(4, 0.5)
    ok = np.full((4, 5), 0.2)
    assert outputs_are_sane(er, conf, ok)[0]
    # a regression model has NaN probabilities: judged on its expected returns only
    assert outputs_are_sane(er, conf, np.full((4, 5), np.nan))[0]
    bad = ok.copy()
    bad[1, 2] = np.nan
    assert not outputs_are_sane(er, conf, bad)[0]
    assert "probability distributions" in outputs_are_sane(er, conf, np.full((4, 5), 0.5))[1]
    assert not outputs_are_sane(np.empty(0), np.empty(0), np.empty((0, 5)))[0]
    assert "expected returns" in outputs_are_sane(np.r_[er[:3], np.nan], conf, ok)[1]
    assert "expected returns" in outputs_are_sane(np.r_[er[:3], -1.0], conf, ok)[1]
    assert "confidences" in outputs_are_sane(er, np.r_[conf[:3], 1.5], ok)[1]


CFG = {"timeframe": "1h", "symbols": ["BTC/USDT"], "feature_cols": ["a"], "label_config": {}}
GOOD = ValidationScore(
    n_rows=100, rank_ic=0.05, hit_rate=0.52, calibration_error=0.01, latency_ms_per_row=0.1
)


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
        ({"calibration_error": 0.5}, "confidence inverted"),
        ({"calibration_error": float("nan")}, "confidence inverted"),
        ({"latency_ms_per_row": 500.0}, "latency"),
        ({"n_rows": 3}, "labelled validation rows"),
        ({"rank_ic": None}, "labelled validation rows"),
    ],
)
def test_gate_sanity_bounds_block(change, words) -> None:
    d = gate(candidate=replace(GOOD, **change))
    assert not d.deploy and d.blocking and words in d.reason


def test_gate_needs_the_margin_on_the_validation_window() -> None:
    current = CFG | {"version": "old"}
    deployed = replace(GOOD, rank_ic=0.045)
    worse = gate(deployed_manifest=current, deployed=deployed)  # +0.005 < margin 0.01
    assert not worse.deploy and not worse.blocking and "kept as candidate" in worse.reason
    assert "rank IC" in worse.reason
    better = gate(deployed_manifest=current, deployed=replace(GOOD, rank_ic=0.03))
    assert better.deploy and "validation rows" in better.reason
    no_margin = gate(deployed_manifest=current, deployed=deployed, config=GateConfig(margin=0))
    assert no_margin.deploy
    # a deployed model that ranks nothing (constant expected returns: rank IC undefined) never
    # blocks a sane candidate (NaN + margin would compare False)
    flat = gate(deployed_manifest=current, deployed=replace(GOOD, rank_ic=float("nan")))
    assert flat.deploy and "undefined" in flat.reason


def test_gate_does_not_compare_models_of_other_configurations() -> None:
    other = CFG | {"timeframe": "4h"}
    d = gate(deployed_manifest=other, deployed=replace(GOOD, rank_ic=0.9))
    assert d.deploy and "timeframe" in d.reason and "not comparable" in d.reason
    target = CFG | {"target": {"kind": "classes"}}
    d = gate(
        candidate_manifest=CFG | {"target": {"kind": "vol_scaled_return"}},
        deployed_manifest=target,
        deployed=replace(GOOD, rank_ic=0.9),
    )
    assert d.deploy and "target" in d.reason


def test_sign_calibration_error_and_scores() -> None:
    expected = np.array([0.01, -0.01] * 5) * np.arange(1, 11)  # distinct values (no ties)
    realised = 2 * expected  # every call right, same order
    conf = np.linspace(0.0, 1.0, 10)
    assert sign_calibration_error(expected, conf, realised) == pytest.approx(0.0)
    # the confident half always wrong, the other half right: inverted by 1.0, less two
    # standard errors of the difference of two hit rates (p = 0.5, 5 rows each)
    wrong_when_sure = np.where(conf >= np.median(conf), -realised, realised)
    se = np.sqrt(0.25 * (1 / 5 + 1 / 5))
    assert sign_calibration_error(expected, conf, wrong_when_sure) == pytest.approx(1.0 - 2 * se)
    # informative confidence (right when sure) is floored at 0, never negative
    right_when_sure = np.where(conf >= np.median(conf), realised, -realised)
    assert sign_calibration_error(expected, conf, right_when_sure) == 0.0
    assert np.isnan(sign_calibration_error(expected[:3], conf[:3], realised[:3]))
    score = score_predictions(expected, conf, np.r_[realised[:9], np.nan], seconds=0.01)
    assert score.n_rows == 9 and score.hit_rate == pytest.approx(1.0)
    assert score.rank_ic == pytest.approx(1.0)
    assert score.latency_ms_per_row == pytest.approx(1.0)
    half = score_predictions(expected, conf, -np.r_[realised[:9], np.nan], seconds=None)
    assert half.hit_rate == 0.0 and half.rank_ic == pytest.approx(-1.0)
    assert half.latency_ms_per_row is None


def test_walk_forward_evidence_thresholds() -> None:
    config = GateConfig(min_dsr=0.5, min_rank_ic_t=2.0, min_trades=20)
    good = {"dsr": 0.9, "rank_ic_t": 2.5, "n_trades": 40}
    assert evidence_failure(good, config) is None
    why = evidence_failure({"dsr": 0.2, "rank_ic_t": float("nan"), "n_trades": 3}, config)
    assert "deflated Sharpe 0.200 < 0.5" in why
    assert "rank-IC t n/a < 2" in why and "3 trades < 20" in why
    assert "None trades" in evidence_failure(good | {"n_trades": None}, config)


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


def test_off_the_hour_funding_rows_are_found() -> None:
    import pandas as pd

    from cryptoml_pipeline.defs.assets.ingestion import off_schedule_settlements

    t = pd.Timestamp("2025-01-01", tz="UTC")
    funding = pd.DataFrame(
        {
            "timestamp": [
                t,
                t + pd.Timedelta(hours=4),  # a 4h settlement: on the hour, accepted
                t + pd.Timedelta(hours=8, milliseconds=1),  # clock jitter
                t - pd.Timedelta(minutes=30),  # before the window
            ],
            "symbol": "A",
            "funding_rate": 0.0001,
        }
    )
    off = off_schedule_settlements(funding, t, t + pd.Timedelta(days=1))
    assert list(off["timestamp"]) == [t + pd.Timedelta(hours=8, milliseconds=1)]
