"""Candidate model on the most recent training window, the deploy gate (a blocking asset check)
and the gated deployment, all through the model registry (management/registry.py)."""

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.management.db import open_database
from cryptoml_pipeline.management.deployment_store import deploy
from cryptoml_pipeline.management.gate import GateDecision, evaluate_gate, outputs_are_sane
from cryptoml_pipeline.management.registry import ArtifactIntegrityError, ModelRegistry
from cryptoml_pipeline.management.serving import (
    feature_importance,
    load_verified,
    save_and_register,
    score_on_window,
    validation_mask,
)
from cryptoml_pipeline.modeling.fold_training import (
    FoldModel,
    fold_model_from_saved,
    predict_rows,
    train_fold,
)
from cryptoml_pipeline.modeling.folds import final_training_fold
from cryptoml_pipeline.modeling.persistence import load_model
from cryptoml_pipeline.timing import to_utc

GROUP = "deployment"
SANITY_DAYS = 7
PROB_COLS = ["p_m2", "p_m1", "p_0", "p_p1", "p_p2"]


def registry_for(pipeline: PipelineResource) -> ModelRegistry:
    return ModelRegistry(open_database(pipeline.output_dir))


@dg.asset(group_name=GROUP)
def candidate_model(
    context: dg.AssetExecutionContext,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    dataset_info: dict,
    pipeline: PipelineResource,
) -> FoldModel:
    """The model trained on the most recent training window, registered as a candidate."""
    settings = pipeline.settings()
    fold = final_training_fold(
        to_utc(dataset_info["end"]), settings.walk_forward, timeframe=dataset_info["timeframe"]
    )
    model = train_fold(feature_table, label_table, fold, settings, dataset_info["timeframe"])
    created = datetime.now(UTC)
    digest = hashlib.sha256(repr(sorted(model.manifest.get("model_config", {}).items())).encode())
    digest.update(str(dataset_info["end"]).encode())
    model.manifest["created_at"] = created.isoformat(timespec="seconds")
    model.manifest["version"] = f"{created:%Y%m%dT%H%M%S%fZ}-{digest.hexdigest()[:8]}"
    model.manifest["data"] = {k: dataset_info[k] for k in ("source", "symbols", "timeframe")} | {
        "train_start": fold.train_start.isoformat(),
        "train_end": fold.test_start.isoformat(),
    }
    registry = registry_for(pipeline)
    importance = feature_importance(model)
    entry = save_and_register(
        registry,
        Path(pipeline.output_dir),
        model,
        {"val_accuracy": model.manifest.get("val_accuracy"), "feature_importance": importance},
    )
    context.add_output_metadata(
        {
            "version": entry.version,
            "val_accuracy": model.manifest.get("val_accuracy"),
            "artifact": dg.MetadataValue.path(str(entry.artifact_dir)),
            "feature_hash": entry.feature_hash[:16],
            "code_version": entry.code_version,
        }
    )
    return model


def sanity_probabilities(
    model: FoldModel,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    end: pd.Timestamp,
    settings,
    timeframe: str,
) -> np.ndarray:
    recent = (features["timestamp"] >= end - pd.Timedelta(days=SANITY_DAYS)).to_numpy()
    preds = predict_rows(model, features, labels, recent, settings, timeframe, tag="sanity")
    return preds[PROB_COLS].to_numpy(dtype=float)


def gate_candidate(
    registry: ModelRegistry,
    version: str,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    dataset_info: dict,
    pipeline: PipelineResource,
) -> tuple[GateDecision, dict[str, Any]]:
    """Run the deploy gate on the registered ``version`` against the deployed model."""
    settings = pipeline.settings()
    timeframe = dataset_info["timeframe"]
    try:
        candidate = load_verified(registry, version)  # the artifact that would be deployed
    except ArtifactIntegrityError as exc:
        return GateDecision(False, f"rejected: {exc}", blocking=True), {}
    sane, sanity_reason = outputs_are_sane(
        sanity_probabilities(
            candidate, feature_table, label_table, to_utc(dataset_info["end"]), settings, timeframe
        )
    )
    mask = validation_mask(candidate, feature_table, settings, timeframe)
    cand_score = score_on_window(candidate, feature_table, label_table, mask, settings, timeframe)
    current = registry.deployed()
    dep_score, dep_manifest, note = None, None, ""
    if current is not None:
        try:
            deployed = load_verified(registry, current.version)
            dep_manifest = deployed.manifest
            dep_score = score_on_window(
                deployed, feature_table, label_table, mask, settings, timeframe
            )
        except ArtifactIntegrityError as exc:
            note = f" (deployed {current.version} failed verification: {exc})"
        except InputError as exc:  # e.g. the deployed model's features are not in the table
            note = f" (deployed {current.version} cannot score the window: {exc})"
            dep_manifest = {"incomparable": True}
    decision = evaluate_gate(
        sane=sane,
        sanity_reason=sanity_reason,
        candidate=cand_score,
        deployed=dep_score,
        candidate_manifest=candidate.manifest,
        deployed_manifest=dep_manifest,
        config=settings.gate,
    )
    if note:
        decision = GateDecision(decision.deploy, decision.reason + note, decision.blocking)
    evidence = {
        "candidate": cand_score.__dict__,
        "deployed": None if dep_score is None else dep_score.__dict__,
        "deployed_version": None if current is None else current.version,
    }
    return decision, evidence


@dg.asset_check(
    asset=candidate_model,
    blocking=True,
    additional_ins={
        "feature_table": dg.AssetIn("feature_table"),
        "label_table": dg.AssetIn("label_table"),
        "dataset_info": dg.AssetIn("dataset_info"),
    },
    description=(
        "Deploy gate: verified checksums, finite outputs, calibration and latency bounds (a "
        "failure blocks deployment); beats the deployed model on the recent purged validation "
        "window by the configured margin, else the candidate stays a candidate (WARN)"
    ),
)
def deploy_gate(
    candidate_model: FoldModel,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    dataset_info: dict,
    pipeline: PipelineResource,
) -> dg.AssetCheckResult:
    registry = registry_for(pipeline)
    version = str(candidate_model.manifest["version"])
    decision, evidence = gate_candidate(
        registry, version, feature_table, label_table, dataset_info, pipeline
    )
    gate_record = {"deploy": decision.deploy, "reason": decision.reason} | evidence
    registry.update_metrics(version, {"gate": gate_record})
    if not decision.deploy:
        registry.reject(version, decision.reason)
    return dg.AssetCheckResult(
        passed=decision.deploy,
        severity=dg.AssetCheckSeverity.ERROR if decision.blocking else dg.AssetCheckSeverity.WARN,
        description=decision.reason,
        metadata={"version": version, "reason": decision.reason} | _flat(evidence),
    )


def _flat(evidence: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for who in ("candidate", "deployed"):
        for key, value in (evidence.get(who) or {}).items():
            if value is not None:
                out[f"{who}_{key}"] = float(value)
    return out


@dg.asset(group_name=GROUP)
def deployed_model(
    context: dg.AssetExecutionContext,
    candidate_model: FoldModel,
    backtest: dict[str, Any],
    fold_plan: list[dict[str, Any]],
    pipeline: PipelineResource,
) -> dict[str, Any]:
    """Promote the candidate when the deploy gate passed it; otherwise keep the deployed one.

    The weights served from ``models/deployed`` are the registry artifact re-loaded after its
    checksums verified, never the in-memory candidate."""
    output = Path(pipeline.output_dir)
    registry = registry_for(pipeline)
    version = str(candidate_model.manifest["version"])
    entry = registry.require(version)
    gate = entry.metrics.get("gate")
    if gate is None:
        raise dg.Failure(f"candidate {version} has no deploy-gate decision: run deploy_gate")
    current = registry.deployed()
    result: dict[str, Any] = {"deployed": bool(gate["deploy"]), "reason": gate["reason"]}
    if gate["deploy"]:
        verified = load_verified(registry, version)
        registry.promote(version, gate["reason"])
        folds = [f["key"] for f in fold_plan]
        manifest = dict(verified.manifest)
        manifest["walk_forward"] = {
            "sharpe": backtest["strategy"]["sharpe"],
            "folds": folds,
            "kpis": backtest["strategy"],
        }
        path = deploy(output, verified.model, manifest)
        result |= {"version": version, "path": str(path)}
        context.log.info(f"deployed {version}: {gate['reason']}")
    else:
        result |= {"version": current.version if current else None, "candidate": version}
        context.log.warning(f"candidate {version} not deployed: {gate['reason']}")
    context.add_output_metadata({k: str(v) for k, v in result.items()})
    return result


@dg.asset(group_name=GROUP)
def latest_signals(
    context: dg.AssetExecutionContext,
    deployed_model: dict[str, Any],
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    dataset_info: dict,
    pipeline: PipelineResource,
) -> pd.DataFrame:
    """The deployed model's signal for the latest closed bar of each symbol (nightly)."""
    path = deployed_model.get("path") or str(Path(pipeline.output_dir) / "models" / "deployed")
    if not Path(path, "manifest.json").exists():
        raise dg.Failure(f"no deployed model at {path}: run the main job first")
    model = fold_model_from_saved(*load_model(Path(path)))
    if model.manifest.get("timeframe") != dataset_info["timeframe"]:
        raise dg.Failure(
            f"the deployed model is for {model.manifest.get('timeframe')} bars, the data is "
            f"{dataset_info['timeframe']}: deploy a model for this timeframe first"
        )
    last = feature_table.groupby("symbol")["timestamp"].transform("max")
    mask = (feature_table["timestamp"] == last).to_numpy()
    latest = predict_rows(
        model,
        feature_table,
        None,
        mask,
        pipeline.settings(),
        dataset_info["timeframe"],
        tag="latest",
    )
    rows = latest[["timestamp", "symbol", "signal", "confidence"]].astype(str)
    table = "| timestamp | symbol | signal | confidence |\n|---|---|---|---|\n" + "\n".join(
        "| " + " | ".join(r) + " |" for r in rows.itertuples(index=False)
    )
    context.add_output_metadata({"signals": dg.MetadataValue.md(table)})
    return latest
