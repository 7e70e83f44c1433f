"""Walk-forward plan and per-fold models/predictions (fold partitions)."""

from typing import Any

import dagster as dg
import pandas as pd

from cryptoml_pipeline.defs.partitions import FOLDS, fold_partitions
from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.modeling.fold_training import (
    FoldModel,
    fold_from_dict,
    fold_to_dict,
    predict_fold,
    train_fold,
)
from cryptoml_pipeline.modeling.folds import Fold, capped_fold, walk_forward_plan
from cryptoml_pipeline.timing import to_utc

GROUP = "modeling"


def heavy_fold(fold: Fold, settings, timeframe: str) -> Fold:
    """The fold the heavier networks (transformer, LSTM-CNN, PPO) train on: a rolling window of
    ``walk_forward.train_days`` even when the pooled LightGBM's walk-forward expands."""
    wf = settings.walk_forward
    return capped_fold(
        fold, wf.train_days, validation_fraction=wf.validation_fraction, timeframe=timeframe
    )


def traded_only(frame: pd.DataFrame, dataset_info: dict) -> pd.DataFrame:
    """Rows of the traded symbols (the heavier networks train and predict on these only; the
    pooled models see the whole universe)."""
    traded = set(dataset_info["symbols"])
    if set(frame["symbol"].astype(str).unique()) <= traded:
        return frame
    return frame[frame["symbol"].astype(str).isin(traded)].reset_index(drop=True)


def plan_folds(plan: list[dict[str, Any]]) -> list[Fold]:
    return [fold_from_dict(f) for f in plan]


def find_fold(plan: list[dict[str, Any]], key: str) -> Fold:
    for raw in plan:
        if raw["key"] == key:
            return fold_from_dict(raw)
    raise dg.Failure(f"fold {key!r} is not in the current fold_plan; re-materialize fold_plan")


def sync_fold_partitions(instance: dg.DagsterInstance, keys: list[str]) -> None:
    """Make the dynamic fold partitions exactly the plan's keys (stale folds of another window are
    removed so downstream assets never mix windows)."""
    existing = set(instance.get_dynamic_partitions(FOLDS))
    for stale in sorted(existing - set(keys)):
        instance.delete_dynamic_partition(FOLDS, stale)
    new = [k for k in keys if k not in existing]
    if new:
        instance.add_dynamic_partitions(FOLDS, new)


def stale_reason(model: FoldModel, fold: Fold, dataset_info: dict) -> str | None:
    """Why a stored fold model does not belong to this fold/run (None when it does)."""
    if model.fold != fold:
        return f"trained for windows {model.fold}, the plan has {fold}"
    manifest = model.manifest
    if manifest.get("timeframe") != dataset_info["timeframe"]:
        return f"timeframe {manifest.get('timeframe')} != {dataset_info['timeframe']}"
    if sorted(manifest.get("symbols", [])) != sorted(dataset_info["symbols"]):
        return f"symbols {manifest.get('symbols')} != {dataset_info['symbols']}"
    return None


@dg.asset(group_name=GROUP)
def fold_plan(
    context: dg.AssetExecutionContext, dataset_info: dict, pipeline: PipelineResource
) -> list[dict[str, Any]]:
    """Purged + embargoed walk-forward folds over the run's window; syncs the fold partitions."""
    settings = pipeline.settings()
    folds = walk_forward_plan(
        to_utc(dataset_info["start"]),
        to_utc(dataset_info["end"]),
        settings.walk_forward,
        timeframe=dataset_info["timeframe"],
        training_history_days=settings.data.training_history_days,
    )
    plan = [fold_to_dict(f) for f in folds]
    sync_fold_partitions(context.instance, [f["key"] for f in plan])
    table = "\n".join(
        [
            "| fold | train start | validation start | test start | test end |",
            "|---|---|---|---|---|",
        ]
        + [
            f"| {f['key']} | {f['train_start']} | {f['val_start']} | {f['test_start']} | "
            f"{f['test_end']} |"
            for f in plan
        ]
    )
    context.add_output_metadata(
        {
            "n_folds": len(plan),
            "folds": dg.MetadataValue.md(table),
            "fold_keys": dg.MetadataValue.json([f["key"] for f in plan]),
        }
    )
    return plan


@dg.asset(group_name=GROUP, partitions_def=fold_partitions)
def fold_model(
    context: dg.AssetExecutionContext,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    pipeline: PipelineResource,
) -> FoldModel:
    """One CryptoTransformer per fold, trained on the fold's purged training window of the
    traded symbols (5 classes; its expected return comes from the class-conditional mean
    realised returns of its training rows)."""
    settings = pipeline.settings()
    fold = heavy_fold(
        find_fold(fold_plan, context.partition_key), settings, dataset_info["timeframe"]
    )
    # a retried or re-launched run resumes from the last finished epoch
    checkpoint = pipeline.output_path / "checkpoints" / "fold_model" / f"{fold.key}.ckpt"
    model = train_fold(
        traded_only(feature_table, dataset_info),
        traded_only(label_table, dataset_info),
        fold,
        settings,
        dataset_info["timeframe"],
        checkpoint_path=checkpoint,
    )
    checkpoint.unlink(missing_ok=True)  # trained: the weights travel with the asset from here
    m = model.manifest
    context.add_output_metadata(
        {
            "device": str(m.get("device")),
            "best_epoch": m.get("best_epoch"),
            "val_accuracy": m.get("val_accuracy"),
            "train_seconds": m.get("train_seconds"),
            "n_train": m.get("n_train_samples"),
            "n_val": m.get("n_val_samples"),
        }
    )
    return model


@dg.asset(group_name=GROUP, partitions_def=fold_partitions)
def fold_predictions(
    context: dg.AssetExecutionContext,
    fold_model: FoldModel,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    pipeline: PipelineResource,
) -> pd.DataFrame:
    """The fold's model predicts its test window only."""
    fold = heavy_fold(
        find_fold(fold_plan, context.partition_key), pipeline.settings(), dataset_info["timeframe"]
    )
    stale = stale_reason(fold_model, fold, dataset_info)
    if stale:
        raise dg.Failure(f"fold_model[{fold.key}] is stale ({stale}); re-materialize it")
    preds = predict_fold(
        fold_model,
        traded_only(feature_table, dataset_info),
        traded_only(label_table, dataset_info),
        fold,
        pipeline.settings(),
        dataset_info["timeframe"],
    )
    known = preds["label"].notna()
    acc = (preds.loc[known, "pred_class"] == preds.loc[known, "label"] + 2).mean()
    context.add_output_metadata(
        {"rows": len(preds), "accuracy": float(acc) if known.any() else None}
    )
    return preds
