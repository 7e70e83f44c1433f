"""Scripted retraining scenario, end to end on the real data with the tiny profile:

1. the main job deploys model v1 through the deploy gate (first deployment);
2. SCRIPTED: the deployed model goes bad — v1's weights with the output bias pushed to one class
   are registered and promoted as v1-degraded — and the tracker holds 200 resolved predictions of
   it whose accuracy drops from 40 % (prior 150) to 10 % (recent 50);
3. the nightly job's model_health (real: reads the tracker) says should_retrain;
4. model_health_sensor launches ONE retrain_job (a second tick and a second degraded report of
   the same model launch nothing);
5. the retrain chain runs on one month of fresher data through the real sensors (retrain_job ->
   one train_folds_job per fold -> evaluate_job); the candidate beats v1-degraded on its purged
   validation window, passes the blocking deploy_gate check and is deployed.

The log is kept as a test artifact (``retrain_scenario.log``)."""

import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import torch

from cryptoml_pipeline.cli import build_parser
from cryptoml_pipeline.cli.run import execute_pipeline, prepare_run
from cryptoml_pipeline.definitions import build_definitions
from cryptoml_pipeline.defs.sensors import (
    model_health_sensor,
    retrain_evaluate_sensor,
    retrain_folds_sensor,
)
from cryptoml_pipeline.modeling.persistence import load_model, save_model
from cryptoml_pipeline.monitoring.tracker import ModelPerformanceTracker
from cryptoml_pipeline.registry.candidates import load_verified, registry_dir
from cryptoml_pipeline.registry.db import open_database
from cryptoml_pipeline.registry.deployment_store import deploy
from cryptoml_pipeline.registry.model_registry import ModelRegistry

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("CRYPTOML_TEST_ARTIFACTS", REPO / "output" / "test-artifacts"))


# The scenario is about the retraining machinery, not about edge: the strategy trades the
# transformer (whose output layer the script can push to one class), the cost filter is off so the
# tiny model trades at all, and the walk-forward evidence thresholds for deployment are lowered
# (the tiny model has none; the thresholds themselves are tested in test_management.py). The
# deploy gate's own sanity checks and its margin over the deployed model stay as configured.
SCENARIO_CONFIG = """\
strategy:
  model: transformer
risk:
  edge_cost_multiple: null
gate:
  min_dsr: 0.0
  min_rank_ic_t: -100.0
  min_trades: 0
"""


def _resources(out: Path, shared_data: Path, end: str):
    config = out.parent / "scenario.yaml"
    config.write_text(SCENARIO_CONFIG, encoding="utf-8")
    args = build_parser().parse_args(
        [
            *("run", "--profile", "tiny", "--symbols", "BTC/USDT", "--output-dir", str(out)),
            *("--data-dir", str(shared_data), "--end", end, "--config", str(config)),
        ]
    )
    return prepare_run(args)


def _degrade(registry: ModelRegistry, out: Path, version: str) -> str:
    """SCRIPTED: v1 with its output bias pushed to class 0 (label -2): a model gone bad."""
    good = load_verified(registry, version)  # a zoo model's Fitted (the transformer)
    net = good.model.model
    with torch.no_grad():
        net.classifier[-1].bias[0] += 50.0
    manifest = dict(good.manifest) | {"version": f"{version}-degraded"}
    target = registry_dir(out) / manifest["version"]
    save_model(target, net, manifest)
    registry.register(version=manifest["version"], artifact_dir=target, manifest=manifest)
    registry.promote(manifest["version"], "SCRIPTED: simulate a deployed model that went bad")
    deploy(out, good, manifest)  # deploy saves it with ZOO[good.name].save
    return manifest["version"]


def _script_outcomes(tracker: ModelPerformanceTracker, version: str) -> None:
    """SCRIPTED tracker history: 150 resolved predictions at 40 %, then 50 at 10 %."""
    n = 200
    ts = pd.date_range("2025-05-01", periods=n, freq="1h", tz="UTC")
    correct = np.r_[np.arange(150) % 5 < 2, np.arange(50) % 10 < 1]
    preds = pd.DataFrame(
        {"timestamp": ts, "symbol": "BTC/USDT", "pred_class": 4, "signal": 2, "confidence": 0.3}
    )
    tracker.record_predictions(version, preds, horizon=5, timeframe="1h")
    label = np.where(correct, 2.0, 0.0)
    labels = pd.DataFrame(
        {"timestamp": ts, "symbol": "BTC/USDT", "label": label, "forward_return": label / 100}
    )
    tracker.fill_outcomes(labels, now=datetime(2030, 1, 1, tzinfo=UTC))


def _status_context(instance, run: dg.DagsterRun):
    event = dg.DagsterEvent(event_type_value="PIPELINE_SUCCESS", job_name=run.job_name)
    return dg.build_run_status_sensor_context(
        sensor_name="s", dagster_event=event, dagster_instance=instance, dagster_run=run
    )


def test_degradation_triggers_one_retrain_that_passes_the_gate(
    tmp_path, shared_data, monkeypatch
) -> None:
    log: list[str] = []

    def say(line: str) -> None:
        log.append(line)
        print(line)  # noqa: T201 - shown with pytest -s

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.delenv("CRYPTOML_DB_URL", raising=False)
    out = tmp_path / "output"
    pipeline, market = _resources(out, shared_data, "2025-06-01")
    assert pipeline.settings().strategy.model == "transformer"
    report = execute_pipeline(pipeline, market)
    registry = ModelRegistry(open_database(out))
    v1 = registry.deployed().version
    assert report["deployment"]["deployed"] and report["deployment"]["version"] == v1
    say(f"1. main job: deployed {v1} ({report['deployment']['reason']})")

    degraded = _degrade(registry, out, v1)
    tracker = ModelPerformanceTracker(registry.engine)
    _script_outcomes(tracker, degraded)
    say(f"2. SCRIPTED: deployed {degraded}; tracker accuracy 0.40 (prior 150) -> 0.10 (recent 50)")

    defs = build_definitions(pipeline, market)
    with dg.DagsterInstance.get() as instance:
        nightly = defs.resolve_job_def("nightly_job").execute_in_process(instance=instance)
        assert nightly.success
        health = nightly.output_for_node("model_health")
        assert health["should_retrain"] and health["version"] == degraded
        say(f"3. nightly model_health: should_retrain=True: {health['summary']}")

        ctx = dg.build_sensor_context(instance=instance)
        request = model_health_sensor(ctx)
        assert isinstance(request, dg.RunRequest) and request.tags["model_version"] == degraded
        again = model_health_sensor(dg.build_sensor_context(instance=instance, cursor=ctx.cursor))
        assert isinstance(again, dg.SkipReason)
        nightly2 = defs.resolve_job_def("nightly_job").execute_in_process(instance=instance)
        assert nightly2.success  # the same degradation reported again the next night
        ctx2 = dg.build_sensor_context(instance=instance, cursor=ctx.cursor)
        third = model_health_sensor(ctx2)
        assert isinstance(third, dg.SkipReason) and "already launched" in third.skip_message
        say(f"4. model_health_sensor: RunRequest {request.run_key}; next ticks: skipped")

        # one month later: the retrain sees fresh data
        fresh, fresh_market = _resources(out, shared_data, "2025-07-01")
        fresh_defs = build_definitions(fresh, fresh_market)
        retrain = fresh_defs.resolve_job_def("retrain_job").execute_in_process(
            instance=instance, tags=request.tags
        )
        assert retrain.success
        fold_requests = retrain_folds_sensor(
            _status_context(instance, instance.get_run_by_id(retrain.run_id))
        )
        assert len(fold_requests) == 2
        last_fold_run = None
        for req in fold_requests:
            res = fresh_defs.resolve_job_def("train_folds_job").execute_in_process(
                instance=instance, partition_key=req.partition_key, tags=req.tags
            )
            assert res.success
            last_fold_run = instance.get_run_by_id(res.run_id)
        say(
            f"5. retrain_job {retrain.run_id[:8]} on data to 2025-07-01; folds trained: "
            f"{[r.partition_key for r in fold_requests]}"
        )
        evaluate_request = retrain_evaluate_sensor(_status_context(instance, last_fold_run))
        assert isinstance(evaluate_request, dg.RunRequest)
        evaluation = fresh_defs.resolve_job_def("evaluate_job").execute_in_process(
            instance=instance, tags=evaluate_request.tags
        )
        assert evaluation.success
        checks = [
            e.event_specific_data
            for e in evaluation.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        ]
        gate = next(c for c in checks if c.check_name == "deploy_gate")
        assert gate.passed
        say(f"6. deploy_gate (blocking asset check) passed: {gate.description}")

    v2 = registry.deployed()
    assert v2.version not in (v1, degraded) and v2.stage == "deployed"
    stages = {m.version: m.stage for m in registry.list_versions()}
    assert stages[v1] == "retired" and stages[degraded] == "retired"
    _, manifest = load_model(out / "models" / "deployed")
    assert manifest["version"] == v2.version
    assert v2.data_end > registry.require(v1).data_end  # trained on fresher data
    say(f"7. deployed {v2.version}; registry stages: {stages}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "retrain_scenario.log").write_text("\n".join(log) + "\n")
