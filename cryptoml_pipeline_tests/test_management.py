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


def test_gate_first_deploy_needs_only_sanity() -> None:
    d = evaluate_gate(
        sane=True,
        sanity_reason="ok",
        candidate_sharpe=-1.0,
        candidate_folds=["a"],
        deployed_manifest=None,
    )
    assert d.deploy and "no model deployed" in d.reason
    d = evaluate_gate(
        sane=False,
        sanity_reason="nan",
        candidate_sharpe=3.0,
        candidate_folds=["a"],
        deployed_manifest=None,
    )
    assert not d.deploy and "nan" in d.reason


def test_gate_compares_walk_forward_sharpe() -> None:
    current = {"walk_forward": {"sharpe": 1.0, "folds": ["a", "b"]}}
    worse = evaluate_gate(
        sane=True,
        sanity_reason="ok",
        candidate_sharpe=0.9,
        candidate_folds=["a", "b"],
        deployed_manifest=current,
    )
    assert not worse.deploy and "same folds" in worse.reason
    equal = evaluate_gate(
        sane=True,
        sanity_reason="ok",
        candidate_sharpe=1.0,
        candidate_folds=["b", "a"],
        deployed_manifest=current,
    )
    assert equal.deploy
    margin = evaluate_gate(
        sane=True,
        sanity_reason="ok",
        candidate_sharpe=1.05,
        candidate_folds=["a", "b"],
        deployed_manifest=current,
        margin=0.1,
    )
    assert not margin.deploy
    undefined = evaluate_gate(
        sane=True,
        sanity_reason="ok",
        candidate_sharpe=None,
        candidate_folds=["a"],
        deployed_manifest=current,
    )
    assert not undefined.deploy


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
