"""Candidate model on the most recent training window, and the gated deployment."""

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.management.deployment_store import deploy, read_deployed_manifest
from cryptoml_pipeline.management.gate import evaluate_gate, outputs_are_sane
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


@dg.asset(group_name=GROUP)
def candidate_model(
    context: dg.AssetExecutionContext,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    dataset_info: dict,
    pipeline: PipelineResource,
) -> FoldModel:
    """The same model trained on the most recent training window (ending at the data's end)."""
    settings = pipeline.settings()
    fold = final_training_fold(
        to_utc(dataset_info["end"]), settings.walk_forward, timeframe=dataset_info["timeframe"]
    )
    model = train_fold(feature_table, label_table, fold, settings, dataset_info["timeframe"])
    created = datetime.now(UTC)
    digest = hashlib.sha256(repr(sorted(model.manifest.get("model_config", {}).items())).encode())
    model.manifest["created_at"] = created.isoformat(timespec="seconds")
    model.manifest["version"] = f"{created:%Y%m%dT%H%M%SZ}-{digest.hexdigest()[:8]}"
    model.manifest["data"] = {k: dataset_info[k] for k in ("source", "symbols", "timeframe")} | {
        "train_start": fold.train_start.isoformat(),
        "train_end": fold.test_start.isoformat(),
    }
    context.add_output_metadata(
        {"version": model.manifest["version"], "val_accuracy": model.manifest.get("val_accuracy")}
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


@dg.asset(group_name=GROUP)
def deployed_model(
    context: dg.AssetExecutionContext,
    candidate_model: FoldModel,
    backtest: dict[str, Any],
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    pipeline: PipelineResource,
) -> dict[str, Any]:
    """Deploy gate: outputs finite, walk-forward net Sharpe not worse than the deployed one's."""
    settings = pipeline.settings()
    output = Path(pipeline.output_dir)
    probs = sanity_probabilities(
        candidate_model,
        feature_table,
        label_table,
        to_utc(dataset_info["end"]),
        settings,
        dataset_info["timeframe"],
    )
    sane, sanity_reason = outputs_are_sane(probs)
    folds = [f["key"] for f in fold_plan]
    sharpe = backtest["strategy"]["sharpe"]
    current = read_deployed_manifest(output)
    evaluated = [f["fold"] for f in backtest["folds"]]
    current_eval = (
        evaluated == folds and fold_plan[-1]["test_end"] == to_utc(dataset_info["end"]).isoformat()
    )
    decision = evaluate_gate(
        sane=sane,
        sanity_reason=sanity_reason,
        evaluation_current=current_eval,
        candidate_sharpe=sharpe,
        candidate_folds=folds,
        candidate_manifest=candidate_model.manifest,
        deployed_manifest=current,
    )
    version = candidate_model.manifest["version"]
    result: dict[str, Any] = {"deployed": decision.deploy, "reason": decision.reason}
    if decision.deploy:
        manifest = dict(candidate_model.manifest)
        manifest["walk_forward"] = {"sharpe": sharpe, "folds": folds, "kpis": backtest["strategy"]}
        path = deploy(output, candidate_model.model, manifest)
        result |= {"version": version, "path": str(path)}
        context.log.info(f"deployed {version}: {decision.reason}")
    else:
        result |= {"version": current.get("version") if current else None, "candidate": version}
        context.log.warning(f"candidate {version} not deployed: {decision.reason}")
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
