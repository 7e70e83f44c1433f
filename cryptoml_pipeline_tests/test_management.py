import numpy as np

from cryptoml_pipeline.management.gate import evaluate_gate, outputs_are_sane
from cryptoml_pipeline.management.retrain_policy import should_retrain


def test_sanity_rejects_nan_and_non_distributions() -> None:
    ok = np.full((4, 5), 0.2)
    assert outputs_are_sane(ok)[0]
    bad = ok.copy()
    bad[1, 2] = np.nan
    assert not outputs_are_sane(bad)[0]
    assert not outputs_are_sane(np.full((4, 5), 0.5))[0]
    assert not outputs_are_sane(np.empty((0, 5)))[0]


CFG = {"timeframe": "1h", "symbols": ["BTC/USDT"], "feature_cols": ["a"], "label_config": {}}


def gate(**kw):
    args = {
        "sane": True,
        "sanity_reason": "ok",
        "evaluation_current": True,
        "candidate_sharpe": 1.0,
        "candidate_folds": ["a", "b"],
        "candidate_manifest": CFG,
        "deployed_manifest": None,
    }
    return evaluate_gate(**(args | kw))


def test_gate_first_deploy_needs_only_sanity() -> None:
    d = gate(candidate_sharpe=-1.0)
    assert d.deploy and "no model deployed" in d.reason
    d = gate(sane=False, sanity_reason="nan")
    assert not d.deploy and "nan" in d.reason


def test_gate_refuses_a_stale_walk_forward_evaluation() -> None:
    d = gate(evaluation_current=False, candidate_sharpe=9.0)
    assert not d.deploy and "not for the current window" in d.reason


def test_gate_compares_walk_forward_sharpe() -> None:
    current = CFG | {"walk_forward": {"sharpe": 1.0, "folds": ["a", "b"]}}
    worse = gate(candidate_sharpe=0.9, deployed_manifest=current)
    assert not worse.deploy and "same folds" in worse.reason
    equal = gate(candidate_sharpe=1.0, candidate_folds=["b", "a"], deployed_manifest=current)
    assert equal.deploy
    margin = gate(candidate_sharpe=1.05, deployed_manifest=current, margin=0.1)
    assert not margin.deploy
    undefined = gate(candidate_sharpe=None, deployed_manifest=current)
    assert not undefined.deploy


def test_gate_does_not_compare_models_of_other_configurations() -> None:
    other = CFG | {"timeframe": "4h", "walk_forward": {"sharpe": 5.0, "folds": ["a", "b"]}}
    d = gate(candidate_sharpe=0.1, deployed_manifest=other)
    assert d.deploy and "timeframe" in d.reason and "not comparable" in d.reason


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
