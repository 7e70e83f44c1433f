"""Candidate model on the most recent training window, the deploy gate (a blocking asset check)
and the gated deployment, all through the model registry (registry/model_registry.py).

The candidate is the strategy's own model (``strategy.model``: LightGBM pooled over the universe
by default, or the transformer), so the report's strategy, the deployed model, the signal, paper
trading and the tracker use the same predictions. A candidate that passes the gate is deployed
for trading only when the walk-forward evidence clears ``gate.min_dsr``, ``gate.min_rank_ic_t``
and ``gate.min_trades``; otherwise it stays a registered candidate with the reason."""

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from cryptoml_pipeline.defs.resources import DatabaseResource, PipelineResource
from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.evaluation.model_comparison import headline_deflation
from cryptoml_pipeline.live.loader import NotDeployedError, load_served
from cryptoml_pipeline.modeling.folds import final_training_fold, training_origin
from cryptoml_pipeline.modeling.models import ZOO, Fitted, FoldInputs
from cryptoml_pipeline.modeling.predictions import PROB_COLUMNS, empty_predictions
from cryptoml_pipeline.monitoring.gate import (
    GateDecision,
    evaluate_gate,
    evidence_failure,
    outputs_are_sane,
)
from cryptoml_pipeline.monitoring.validation import score_on_window, validation_mask
from cryptoml_pipeline.registry.candidates import load_verified, save_and_register
from cryptoml_pipeline.registry.deployment_store import deploy
from cryptoml_pipeline.registry.model_registry import ArtifactIntegrityError, ModelRegistry
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import to_utc

GROUP = "deployment"
SANITY_DAYS = 7


@dg.asset(group_name=GROUP)
def candidate_model(
    context: dg.AssetExecutionContext,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
    pipeline: PipelineResource,
    database: DatabaseResource,
) -> Fitted:
    """The strategy model trained on the most recent training window, registered as a
    candidate; its manifest carries every setting the real-time signal needs (universe
    included)."""
    settings = run_settings
    fold = final_training_fold(
        to_utc(dataset_info["end"]),
        settings.walk_forward,
        timeframe=dataset_info["timeframe"],
        start=training_origin(
            dataset_info["start"],
            settings.data.training_history_days,
            dataset_info.get("train_from"),
        ),
    )
    zoo = ZOO[settings.strategy.model]
    model = zoo.fit_window(
        FoldInputs(
            feature_table,
            label_table,
            fold,
            settings,
            dataset_info["timeframe"],
            traded=tuple(dataset_info["symbols"]),
        )
    )
    created = datetime.now(UTC)
    digest = hashlib.sha256(repr(sorted(model.manifest.get("model_config", {}).items())).encode())
    digest.update(str(dataset_info["end"]).encode())
    model.manifest["created_at"] = created.isoformat(timespec="seconds")
    model.manifest["version"] = f"{created:%Y%m%dT%H%M%S%fZ}-{digest.hexdigest()[:8]}"
    model.manifest["data"] = {
        k: dataset_info.get(k) for k in ("source", "synthetic", "symbols", "universe", "timeframe")
    } | {
        "train_start": fold.train_start.isoformat(),
        "train_end": fold.test_start.isoformat(),
    }
    model.manifest["symbols"] = list(dataset_info["symbols"])
    model.manifest["universe"] = list(dataset_info.get("universe") or dataset_info["symbols"])
    model.manifest["timeframe"] = dataset_info["timeframe"]
    model.manifest["settings"] = settings.model_dump(mode="json")
    registry = database.registry()
    importance = zoo.importance(model)
    entry = save_and_register(
        registry,
        Path(pipeline.output_dir),
        model,
        {
            "val_rank_ic": model.manifest.get("val_rank_ic"),
            "feature_importance": importance,
            # the sweep that chose this configuration (cryptoml experiment's selected.yaml)
            "sweep": settings.experiment.model_dump(mode="json") if settings.experiment else None,
        },
    )
    context.add_output_metadata(
        {
            "version": entry.version,
            "model": settings.strategy.model,
            "val_rank_ic": model.manifest.get("val_rank_ic"),
            "artifact": dg.MetadataValue.path(str(entry.artifact_dir)),
            "feature_hash": entry.feature_hash[:16],
            "code_version": entry.code_version,
        }
    )
    return model


def sanity_outputs(
    model: Fitted,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    end: pd.Timestamp,
    settings,
    timeframe: str,
) -> tuple[bool, str]:
    """The candidate's outputs on the last days (finite, in range)."""
    recent = (features["timestamp"] >= end - pd.Timedelta(days=SANITY_DAYS)).to_numpy()
    preds = ZOO[str(model.name)].predict_rows(
        model, features, labels, recent, settings, timeframe, tag="sanity"
    )
    return outputs_are_sane(
        preds["expected_return"].to_numpy(dtype=float),
        preds["confidence"].to_numpy(dtype=float),
        preds[PROB_COLUMNS].to_numpy(dtype=float),
    )


def gate_candidate(
    registry: ModelRegistry,
    version: str,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    dataset_info: dict,
    settings: PipelineSettings,
) -> tuple[GateDecision, dict[str, Any]]:
    """Run the deploy gate on the registered ``version`` against the deployed model."""
    timeframe = dataset_info["timeframe"]
    try:
        candidate = load_verified(registry, version)  # the artifact that would be deployed
    except ArtifactIntegrityError as exc:
        return GateDecision(False, f"rejected: {exc}", blocking=True), {}
    sane, sanity_reason = sanity_outputs(
        candidate, feature_table, label_table, to_utc(dataset_info["end"]), settings, timeframe
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
        "run_settings": dg.AssetIn("run_settings"),
    },
    description=(
        "Deploy gate: verified checksums, finite outputs, calibration and latency bounds (a "
        "failure blocks deployment); beats the deployed model on the recent purged validation "
        "window by the configured margin, else the candidate stays a candidate (WARN)"
    ),
)
def deploy_gate(
    candidate_model: Fitted,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
    database: DatabaseResource,
) -> dg.AssetCheckResult:
    registry = database.registry()
    version = str(candidate_model.manifest["version"])
    decision, evidence = gate_candidate(
        registry, version, feature_table, label_table, dataset_info, run_settings
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


def walk_forward_evidence(
    backtest: dict[str, Any], model_comparison: dict[str, Any], initial_equity: float
) -> dict[str, Any]:
    """What the deployment decision rests on: the strategy's out-of-sample record, its Sharpe
    deflated by the run's one trial set (selection trials + models compared)."""
    strategy = backtest.get("strategy") or {}
    forecast = backtest.get("forecast") or {}
    deflated = headline_deflation(backtest["equity"], initial_equity, model_comparison["trials"])
    return {
        "sharpe": strategy.get("sharpe"),
        "psr": deflated["psr"],
        "dsr": deflated["dsr"],
        "dsr_trials": deflated["dsr_trials"],
        "n_trades": strategy.get("n_trades"),
        "rank_ic": forecast.get("rank_ic"),
        "rank_ic_t": forecast.get("rank_ic_t"),
    }


@dg.asset(group_name=GROUP)
def deployed_model(
    context: dg.AssetExecutionContext,
    candidate_model: Fitted,
    backtest: dict[str, Any],
    model_comparison: dict[str, Any],
    fold_plan: list[dict[str, Any]],
    run_settings: PipelineSettings,
    pipeline: PipelineResource,
    database: DatabaseResource,
) -> dict[str, Any]:
    """Promote the candidate when the deploy gate passed it AND the walk-forward evidence
    supports trading it; otherwise keep the deployed one and record why.

    The weights served from ``models/deployed`` are the registry artifact re-loaded after its
    checksums verified, never the in-memory candidate."""
    settings = run_settings
    output = Path(pipeline.output_dir)
    registry = database.registry()
    version = str(candidate_model.manifest["version"])
    entry = registry.require(version)
    gate = entry.metrics.get("gate")
    if gate is None:
        raise dg.Failure(f"candidate {version} has no deploy-gate decision: run deploy_gate")
    evidence = walk_forward_evidence(backtest, model_comparison, settings.costs.initial_equity)
    missing = evidence_failure(evidence, settings.gate)
    registry.update_metrics(version, {"walk_forward": evidence})
    current = registry.deployed()
    deploy_it = bool(gate["deploy"]) and missing is None
    if not gate["deploy"]:
        reason = gate["reason"]
    elif missing is not None:
        reason = f"not deployed: no evidence of edge ({missing})"
        registry.reject(version, reason)
    else:
        reason = f"{gate['reason']}; walk-forward evidence: DSR {evidence['dsr']:.3f}, rank-IC t "
        reason += f"{evidence['rank_ic_t']:.2f}, {evidence['n_trades']} trades"
    result: dict[str, Any] = {"deployed": deploy_it, "reason": reason, "evidence": evidence}
    if deploy_it:
        verified = load_verified(registry, version)
        registry.promote(version, reason)
        manifest = dict(verified.manifest)
        manifest["walk_forward"] = evidence | {"folds": [f["key"] for f in fold_plan]}
        path = deploy(output, verified, manifest)
        result |= {"version": version, "path": str(path)}
        context.log.info(f"deployed {version}: {reason}")
    else:
        result |= {"version": current.version if current else None, "candidate": version}
        context.log.warning(f"candidate {version} not deployed: {reason}")
    context.add_output_metadata({k: str(v) for k, v in result.items()})
    return result


@dg.asset(group_name=GROUP)
def latest_signals(
    context: dg.AssetExecutionContext,
    deployed_model: dict[str, Any],
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
    pipeline: PipelineResource,
) -> pd.DataFrame:
    """The deployed model's signal for the latest closed bar of each symbol (nightly)."""
    # the served model, through the one loader `cryptoml signal` / `live` / the dashboard use:
    # this chain's deployment (it wrote the serving copy), else the one deployed before
    try:
        model = load_served(Path(pipeline.output_dir)).model
    except NotDeployedError:
        reason = f"no model deployed for trading ({deployed_model.get('reason')})"
        context.add_output_metadata({"status": reason})
        context.log.warning(reason)
        return empty_predictions()
    except InputError as exc:
        raise dg.Failure(f"the deployed model cannot be served: {exc}") from None
    if model.manifest.get("timeframe") != dataset_info["timeframe"]:
        raise dg.Failure(
            f"the deployed model is for {model.manifest.get('timeframe')} bars, the data is "
            f"{dataset_info['timeframe']}: deploy a model for this timeframe first"
        )
    last = feature_table.groupby("symbol")["timestamp"].transform("max")
    mask = (feature_table["timestamp"] == last).to_numpy()
    traded = feature_table["symbol"].astype(str).isin(list(dataset_info["symbols"])).to_numpy()
    latest = ZOO[str(model.name)].predict_rows(
        model,
        feature_table,
        None,
        mask & traded,
        run_settings,
        dataset_info["timeframe"],
        tag="latest",
    )
    rows = latest[["timestamp", "symbol", "signal", "confidence", "expected_return"]].astype(str)
    table = (
        "| timestamp | symbol | signal | confidence | expected return |\n|---|---|---|---|---|\n"
    )
    table += "\n".join("| " + " | ".join(r) + " |" for r in rows.itertuples(index=False))
    context.add_output_metadata({"signals": dg.MetadataValue.md(table)})
    return latest
