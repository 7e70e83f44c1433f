"""The report's features section: importance aggregated over folds, the feature plan, missing
importance partitions degrading to a stated reason (JSON schema-valid, rendered in HTML)."""

from __future__ import annotations

import copy

import dagster as dg
import jsonschema
import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.features.build import plan_features
from cryptoml_pipeline.modeling.importance import IMPORTANCE_COLUMNS
from cryptoml_pipeline.registry.artifact_store import load_importance_partitions, write_value
from cryptoml_pipeline.reporting.features_section import features_html, features_section
from cryptoml_pipeline.reporting.html import render_html
from cryptoml_pipeline.reporting.report import build_report, report_schema, validate_report
from cryptoml_pipeline.settings import FeatureConfig, profile_settings


def _fold_table(fold: str, values: dict[str, float]) -> pd.DataFrame:
    rows = [
        {
            "fold": fold,
            "feature": f,
            "family": "technical" if f.startswith("rsi") else "temporal",
            "importance_logloss": v,
            "importance_logloss_std": 0.0,
            "importance_accuracy": v / 10,
            "base_logloss": 1.5,
            "base_accuracy": 0.3,
            "n_rows": 100,
        }
        for f, v in values.items()
    ]
    return pd.DataFrame(rows, columns=IMPORTANCE_COLUMNS)


PLAN = plan_features(FeatureConfig(), symbols=["BTC/USDT"], has_volume=True, with_funding=True)


def _features_schema() -> dict:
    schema = report_schema()
    return {"$defs": schema["$defs"], **schema["properties"]["features"]}


def test_importance_is_aggregated_over_folds_with_the_spread() -> None:
    per_fold = {
        "f1": _fold_table("f1", {"rsi_14": 0.03, "hour_sin": -0.01}),
        "f2": _fold_table("f2", {"rsi_14": 0.01, "hour_sin": 0.01}),
    }
    section = features_section(
        fold_keys=["f1", "f2"], importance=per_fold, plan=PLAN.metadata(), plan_source="test"
    )
    jsonschema.validate(section, _features_schema())
    imp = section["importance"]
    assert imp["available"] is True and imp["reason"] is None
    assert imp["folds_used"] == ["f1", "f2"] and imp["folds_missing"] == {}
    top, second = imp["table"]
    assert top["feature"] == "rsi_14" and top["family"] == "technical"
    assert top["mean_importance"] == pytest.approx(0.02)
    assert top["std_importance"] == pytest.approx(np.std([0.03, 0.01], ddof=1))
    assert (top["min_importance"], top["max_importance"]) == (pytest.approx(0.01), 0.03)
    assert top["positive_share"] == 1.0 and top["n_folds"] == 2
    assert top["mean_accuracy_drop"] == pytest.approx(0.002)
    assert second["feature"] == "hour_sin" and second["mean_importance"] == pytest.approx(0.0)
    assert second["positive_share"] == 0.5
    # the plan: every feature by family, unavailable ones with their reason
    assert section["families"]["technical"] == PLAN.families["technical"]
    assert section["n_features"] == len(PLAN.names)
    assert section["unavailable"]["oi_change_*"] == "no open-interest data given"
    assert "cross_asset" in section["families"]


def test_a_missing_fold_is_stated_not_fatal() -> None:
    section = features_section(
        fold_keys=["f1", "f2", "f3"],
        importance={"f1": _fold_table("f1", {"rsi_14": 0.02}), "f3": _fold_table("f3", {})},
        missing={"f2": "feature_importance partition not materialized (run train_folds_job)"},
        plan=None,
    )
    jsonschema.validate(section, _features_schema())
    imp = section["importance"]
    assert imp["available"] is True and imp["folds_used"] == ["f1"]
    assert set(imp["folds_missing"]) == {"f2", "f3"}
    assert "1 of 3 folds" in imp["reason"] and "f2: feature_importance partition" in imp["reason"]
    assert imp["table"][0]["n_folds"] == 1 and imp["table"][0]["std_importance"] is None
    assert section["plan_source"] == "feature plan not found" and section["families"] == {}

    none = features_section(fold_keys=["f1"], importance={}, plan=PLAN.metadata())
    assert none["importance"]["available"] is False and none["importance"]["table"] == []
    assert none["importance"]["reason"].startswith("no fold has a permutation-importance table")
    assert "f1: not materialized" in none["importance"]["reason"]
    page = features_html(none)
    assert "f1: not materialized" in page and "<img" not in page
    assert "no open-interest data given" in page


def test_stored_partitions_are_read_and_gaps_reported(tmp_path) -> None:
    root = tmp_path / "assets" / "feature_importance"
    write_value(root / "f1", _fold_table("f1", {"rsi_14": 0.02}))
    write_value(root / "f3", pd.DataFrame({"x": [1.0]}))
    (root / "f4.parquet").write_bytes(b"not a parquet file")
    found, missing = load_importance_partitions(tmp_path, ["f1", "f2", "f3", "f4"])
    assert list(found) == ["f1"] and found["f1"]["feature"].tolist() == ["rsi_14"]
    assert missing["f2"].startswith("feature_importance partition not materialized")
    assert missing["f3"] == "stored value is not an importance table"
    assert missing["f4"].startswith("unreadable:")


def test_importance_reaches_the_report_through_the_io_manager(tmp_path) -> None:
    """``backtest_report`` declares ``feature_importance`` with ``ALLOW_MISSING_PARTITIONS``: the
    IO manager hands it every fold it can load and, for the others, the exception, which sorts
    into the same tables and reasons as reading the store directly (no failed input load)."""
    from cryptoml_pipeline.defs.assets.importance import FEATURE_IMPORTANCE_KEY
    from cryptoml_pipeline.defs.io_manager import ALLOW_MISSING_PARTITIONS, ArtifactIOManager
    from cryptoml_pipeline.registry.artifact_store import importance_tables

    keys = ["f1", "f2", "f3", "f4"]
    folds = dg.StaticPartitionsDefinition(keys)
    tables = {"f1": _fold_table("f1", {"rsi_14": 0.02}), "f3": pd.DataFrame({"x": [1.0]})}

    @dg.asset(key=FEATURE_IMPORTANCE_KEY, partitions_def=folds)
    def importance(context) -> pd.DataFrame:
        return tables[context.partition_key]

    seen: dict[str, object] = {}

    @dg.asset(
        ins={"imp": dg.AssetIn(FEATURE_IMPORTANCE_KEY, metadata={ALLOW_MISSING_PARTITIONS: True})}
    )
    def report(imp: dict) -> dict:
        seen["found"], seen["missing"] = importance_tables(imp, keys)
        return {}

    @dg.asset(ins={"imp": dg.AssetIn(FEATURE_IMPORTANCE_KEY)})
    def strict(imp: dict) -> dict:
        return {}

    resources = {"io_manager": ArtifactIOManager(base_dir=str(tmp_path))}
    instance = dg.DagsterInstance.ephemeral()
    for key in tables:
        dg.materialize([importance], partition_key=key, resources=resources, instance=instance)
    (tmp_path / "assets" / "feature_importance" / "f4.parquet").write_bytes(b"not a parquet file")
    assert dg.materialize(
        [importance, report], selection=[report.key], resources=resources, instance=instance
    ).success
    direct = load_importance_partitions(tmp_path, keys)
    assert list(seen["found"]) == list(direct[0]) == ["f1"]
    assert seen["found"]["f1"].equals(direct[0]["f1"])
    assert seen["missing"] == direct[1] and set(direct[1]) == {"f2", "f3", "f4"}
    # without the metadata a missing partition still fails the input load
    failed = dg.materialize(
        [importance, strict],
        selection=[strict.key],
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not failed.success


def test_report_json_and_html_carry_the_features_section() -> None:
    from cryptoml_pipeline_tests.test_report import INFO, _evaluation

    section = features_section(
        fold_keys=["f1", "f2"],
        importance={
            "f1": _fold_table("f1", {"rsi_14": 0.03, "hour_sin": -0.01}),
            "f2": _fold_table("f2", {"rsi_14": 0.01, "hour_sin": 0.01}),
        },
        plan=PLAN.metadata(),
        plan_source="test",
    )
    settings = profile_settings("tiny")
    ev = _evaluation()
    deployment = {"deployed": False, "version": None, "reason": "gate"}
    report = build_report(
        evaluation=ev, data_info=INFO, deployment=deployment, settings=settings, features=section
    )
    validate_report(report)
    assert report["features"]["importance"]["table"][0]["feature"] == "rsi_14"
    bad = copy.deepcopy(report)
    bad["features"]["importance"]["table"][0]["n_folds"] = 0
    with pytest.raises(jsonschema.ValidationError):
        validate_report(bad)
    page = render_html(report, ev.equity)
    assert "Feature importance (permutation, out-of-sample)" in page
    assert 'alt="feature importance"' in page and "rsi_14 (technical)" not in page  # chart is PNG
    assert "<td>rsi_14</td><td>technical</td><td>+0.02000</td>" in page
    assert "Unavailable features" in page and "no order-book snapshots available" in page
    # without a features section the report is unchanged (other callers)
    plain = build_report(evaluation=ev, data_info=INFO, deployment=deployment, settings=settings)
    assert "features" not in plain and "Feature importance" not in render_html(plain, ev.equity)


def test_pipeline_report_has_importance_and_survives_a_missing_partition(
    tmp_path, monkeypatch
) -> None:
    """Tiny synthetic run: report.json carries every fold's importance and the feature plan; with
    one importance partition deleted, evaluate_job still succeeds and the report says why."""
    import json

    import dagster as dg

    from cryptoml_pipeline.cli import build_parser
    from cryptoml_pipeline.cli.run import execute_pipeline, prepare_run
    from cryptoml_pipeline.definitions import build_definitions

    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    out = tmp_path / "output"
    argv = ["run", "--profile", "tiny", "--synthetic", "--symbols", "BTC/USDT"]
    args = build_parser().parse_args([*argv, "--output-dir", str(out)])
    pipeline, market = prepare_run(args)
    report = execute_pipeline(pipeline, market)
    validate_report(report)
    folds = [f["fold"] for f in report["folds"]]
    section = report["features"]
    assert section["plan_source"] == "feature_table materialization metadata"
    assert section["importance"]["available"] and section["importance"]["folds_used"] == folds
    model_features = {r["feature"] for r in section["importance"]["table"]}
    listed = {n for names in section["families"].values() for n in names}
    assert model_features and model_features <= listed
    assert all(r["n_folds"] == len(folds) for r in section["importance"]["table"])

    (out / "assets" / "feature_importance" / f"{folds[0]}.parquet").unlink()
    defs = build_definitions(pipeline, market)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = defs.resolve_job_def("evaluate_job").execute_in_process(instance=instance)
    assert result.success
    again = json.loads((out / "reports" / "report.json").read_text())
    imp = again["features"]["importance"]
    assert imp["folds_used"] == folds[1:]
    assert imp["folds_missing"] == {
        folds[0]: "feature_importance partition not materialized (run train_folds_job)"
    }
    assert f"{len(folds) - 1} of {len(folds)} folds" in imp["reason"]
    assert folds[0] in (out / "reports" / "report.html").read_text()
