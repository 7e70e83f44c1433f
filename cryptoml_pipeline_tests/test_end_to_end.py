"""The whole graph materialized through a persistent Dagster instance with the tiny profile, on a
slice of the real data (and once on the synthetic market)."""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from cryptoml_pipeline.cli import build_parser
from cryptoml_pipeline.cli.run import execute_pipeline, prepare_run
from cryptoml_pipeline.defs.partitions import FOLDS
from cryptoml_pipeline.modeling.models import load_saved
from cryptoml_pipeline.reporting.report import validate_report


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    out = tmp_path / "output"
    args = build_parser().parse_args(
        ["run", "--profile", "tiny", "--symbols", "BTC/USDT", "--output-dir", str(out), *extra]
    )
    pipeline, market = prepare_run(args)
    return execute_pipeline(pipeline, market), out, (pipeline, market)


# Deployment for trading needs walk-forward evidence (deflated Sharpe, rank-IC t, trades) that a
# tiny model on a few months never has, and its expected moves never clear the default cost
# filter. The graph test runs with the filter off and the evidence thresholds lowered (their rule:
# test_management.py), so the deployment path and the nightly job run end to end. The
# calibration bound is opened too: on a ~300-row validation window a tiny model's "low- minus
# high-confidence hit rate" is noise of about +-0.06 and decides nothing here (the bound's rule is
# tested in test_management.py).
E2E_CONFIG = """\
risk:
  edge_cost_multiple: null
gate:
  max_calibration_error: 1.0
  min_dsr: 0.0
  min_rank_ic_t: -100.0
  min_trades: 0
# as a sweep's selected.yaml writes it (cryptoml experiment): the run counts the sweep's trials
controls:
  n_trials: 9
experiment:
  grid: e2e_grid
  configuration: edge_cost_multiple=none
  selection_rule: best_walk_forward_net_sharpe
  leaderboard: /nowhere/leaderboard.json
  n_configurations: 9
  pbo: 0.25
  dsr: 0.4
  dsr_trials: 9
"""


@pytest.fixture(scope="module")
def real_run(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("e2e")
    config = tmp / "e2e.yaml"
    config.write_text(E2E_CONFIG, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        report, out, resources = _run(
            tmp, mp, "--data-dir", str(shared_data), "--config", str(config)
        )
        yield report, out, tmp / "dagster_home", resources


def test_report_is_valid_and_honest(real_run) -> None:
    report, out, _, _ = real_run
    validate_report(report)
    assert json.loads((out / "reports" / "report.json").read_text()) == report
    assert (out / "reports" / "report.html").read_text().count("<img") >= 1
    data = report["data"]
    assert data["source"] == "parquet" and data["synthetic"] is False
    assert data["price_source"] == "perpetual"
    assert data["end"].startswith("2025-10-01")  # last shared bar 2025-09-30 23:00 + 1 bar
    assert len(report["folds"]) == 2
    assert report["strategy"]["fees_paid"] >= 0
    for key in ("buy_and_hold", "rule_based"):
        assert report["baselines"][key]["n_trades"] >= 0
    for target in report["targets"].values():
        assert target["met"] is None or isinstance(target["met"], bool)
    # the run's own decisions re-priced at 1x and 2x the fee: the same trades, no better return
    fees = {row["fee_multiple"]: row for row in report["fee_sensitivity"]}
    assert fees[1.0]["n_trades"] == fees[2.0]["n_trades"] == report["strategy"]["n_trades"]
    if fees[1.0]["n_trades"]:
        assert fees[2.0]["total_return"] < fees[1.0]["total_return"]
    for period in report["periods"]:
        assert {row["fee_multiple"] for row in period["fee_sensitivity"]} == set(fees)


def test_predictions_are_out_of_sample(real_run) -> None:
    report, out, _, _ = real_run
    preds = pd.read_parquet(out / "assets" / "oos_predictions.parquet")
    assert len(preds) > 0
    windows = {
        f["fold"]: (pd.Timestamp(f["test_start"]), pd.Timestamp(f["test_end"]))
        for f in report["folds"]
    }
    for fold, grp in preds.groupby("fold"):
        lo, hi = windows[fold]
        assert grp["timestamp"].min() >= lo and grp["timestamp"].max() < hi
    train_starts = {f["fold"]: pd.Timestamp(f["train_start"]) for f in report["folds"]}
    assert all(train_starts[k] < windows[k][0] for k in windows)


def test_deployed_model_loads_safely(real_run) -> None:
    report, out, _, _ = real_run
    assert report["deployment"]["deployed"] is True, report["deployment"]["reason"]
    assert "walk-forward evidence" in report["deployment"]["reason"]
    # the strategy's own model (LightGBM by default), loaded after its checksum verification
    model = load_saved(out / "models" / "deployed")
    assert model.name == "gbm"
    manifest = model.manifest
    keys = ("version", "created_at", "feature_cols", "gbm_config", "model_sha256", "walk_forward")
    for key in keys:
        assert key in manifest, key
    assert manifest["model_kind"] == "gbm" and manifest["symbols"] == ["BTC/USDT"]
    assert manifest["version"] == report["deployment"]["version"]


def test_the_registry_records_the_sweep_that_chose_the_configuration(real_run) -> None:
    from cryptoml_pipeline.defs.resources import DatabaseResource

    report, out, _, _ = real_run
    registry = DatabaseResource.for_output_dir(out).registry()
    entry = registry.require(report["deployment"]["version"])
    sweep = entry.metrics["sweep"]
    assert sweep["grid"] == "e2e_grid" and sweep["dsr_trials"] == 9 and sweep["pbo"] == 0.25
    # the headline deflated Sharpe counts the sweep's 9 trials plus the models compared here
    assert report["strategy"]["dsr_trials"] >= 9 + 1


def test_runs_are_recorded_in_the_instance(real_run) -> None:
    report, _, home, _ = real_run
    # the persistent instance was seeded from the project's dagster.yaml (telemetry off, logs)
    assert "managed_python_loggers" in (home / "dagster.yaml").read_text()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        names = sorted(r.job_name for r in runs)
        assert names == ["evaluate_job", "prepare_job", "train_folds_job", "train_folds_job"]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert sorted(instance.get_dynamic_partitions(FOLDS)) == sorted(
            f["fold"] for f in report["folds"]
        )


def test_synthetic_market_is_labelled(tmp_path, monkeypatch) -> None:
    report, _, _ = _run(tmp_path, monkeypatch, "--synthetic")
    assert report["data"]["synthetic"] is True
    assert "SYNTHETIC" in report["title"]
    assert any("SYNTHETIC" in w for w in report["warnings"])


def test_nightly_job_signals_from_the_deployed_model(real_run) -> None:
    from cryptoml_pipeline.definitions import build_definitions

    report, out, home, (pipeline, market) = real_run
    defs = build_definitions(pipeline, market)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = defs.resolve_job_def("nightly_job").execute_in_process(instance=instance)
    assert result.success
    signals = pd.read_parquet(out / "assets" / "latest_signals.parquet")
    assert list(signals["symbol"]) == ["BTC/USDT"]
    # the latest closed bar: the window's last bar (end is exclusive)
    assert signals["timestamp"].iloc[0] == pd.Timestamp(report["data"]["end"]) - pd.Timedelta("1h")
    assert signals["signal"].between(-2, 2).all() and signals["confidence"].between(0, 1).all()


def test_every_model_of_the_zoo_is_compared_on_the_same_folds(real_run) -> None:
    report, out, _, _ = real_run
    models = report["models"]
    assert set(models["models"]) == {"transformer", "gbm", "lstm_cnn", "ppo", "ensemble", "engine"}
    assert models["prediction_engine"]["available"]
    folds = {f["fold"]: f for f in report["folds"]}
    for name in ("transformer", "gbm", "ppo", "engine"):
        entry = models["models"][name]
        assert entry["available"], (name, entry)
        assert set(entry["folds"]) == set(folds)
        assert entry["strategy"]["n_trades"] is not None
    # the LightGBM was tuned: configurations tried counts its trials
    assert models["configurations_tried"] >= 2 + 4
    for row in models["per_fold"]:
        assert row["fold"] in folds and 0 <= row["accuracy"] <= 1
    # zoo predictions stay inside their fold's test window
    for name in ("gbm_predictions", "ppo_predictions", "lstm_cnn_predictions"):
        for path in (out / "assets" / name).glob("*.parquet"):
            preds = pd.read_parquet(path)
            if preds.empty:
                continue
            f = folds[path.stem]
            assert preds["timestamp"].min() >= pd.Timestamp(f["test_start"])
            assert preds["timestamp"].max() < pd.Timestamp(f["test_end"])
    # the ensemble stacks earlier folds' out-of-fold predictions: none for the first fold
    first = min(folds)
    ens = pd.read_parquet(out / "assets" / "ensemble_predictions.parquet")
    assert not (ens["fold"] == first).any()
    # every trained model has a card whose checksum matches its artifact
    from cryptoml_pipeline.modeling.persistence import file_sha256

    cards = list((out / "models").glob("*/*/card.json"))
    assert {c.parent.parent.name for c in cards} >= {"gbm", "ppo"}
    for card_path in cards:
        card = json.loads(card_path.read_text())
        if card["status"] != "trained":
            continue
        artifact = Path(card["artifact"])
        weights = next(p for p in artifact.iterdir() if p.suffix in (".txt", ".pt"))
        assert file_sha256(weights) == card["artifact_sha256"]
        assert card["train_seconds"] > 0 and card["device"]
    html = (out / "reports" / "report.html").read_text()
    assert "Model comparison" in html
