"""Walk-forward plan and the transformer's per-fold model and predictions (fold partitions).

The transformer implements the zoo's model interface
(:class:`~cryptoml_pipeline.modeling.models.transformer.TransformerModel`) but keeps two
hand-written assets instead of one factory-built asset: ``fold_model`` (its ``fit``) stores the
trained model as an asset of its own — ``feature_importance`` consumes it and a retried run
resumes its training from the per-epoch checkpoint — and ``fold_predictions`` (its ``predict`` and
``card``) predicts the fold's test window from that stored model and emits the card as
``transformer_model_card`` (the zoo's ``<model>_model_card``, read by ``model_comparison``).
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from cryptoml_pipeline.defs.partitions import FOLDS, fold_partitions
from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.modeling.fold_training import fold_from_dict, fold_to_dict
from cryptoml_pipeline.modeling.folds import Fold, walk_forward_plan
from cryptoml_pipeline.modeling.models import TRANSFORMER, Fitted, FoldInputs
from cryptoml_pipeline.modeling.models.base import heavy_fold, traded_only
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import to_utc

GROUP = "modeling"

__all__ = ["find_fold", "heavy_fold", "plan_folds", "stale_reason", "traded_only"]


def transformer_inputs(
    fold: Fold,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    dataset_info: dict,
    settings: PipelineSettings,
) -> FoldInputs:
    return FoldInputs(
        feature_table,
        label_table,
        fold,
        settings,
        dataset_info["timeframe"],
        traded=tuple(dataset_info["symbols"]),
    )


def transformer_dir(pipeline: PipelineResource, fold_key: str) -> Path:
    return pipeline.output_path / "models" / TRANSFORMER.name / fold_key


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


def stale_reason(model: Fitted, fold: Fold, dataset_info: dict) -> str | None:
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
    context: dg.AssetExecutionContext, dataset_info: dict, run_settings: PipelineSettings
) -> list[dict[str, Any]]:
    """Purged + embargoed walk-forward folds over the run's window; syncs the fold partitions."""
    settings = run_settings
    folds = walk_forward_plan(
        to_utc(dataset_info["start"]),
        to_utc(dataset_info["end"]),
        settings.walk_forward,
        timeframe=dataset_info["timeframe"],
        training_history_days=settings.data.training_history_days,
        train_from=dataset_info.get("train_from"),  # the first loaded bar (all history)
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
    run_settings: PipelineSettings,
    pipeline: PipelineResource,
) -> Fitted:
    """One CryptoTransformer per fold, trained on the fold's purged training window of the
    traded symbols (5 classes; its expected return comes from the class-conditional mean
    realised returns of its training rows)."""
    plan_fold = find_fold(fold_plan, context.partition_key)
    inputs = transformer_inputs(plan_fold, feature_table, label_table, dataset_info, run_settings)
    # a retried or re-launched run resumes from the last finished epoch
    checkpoint = pipeline.output_path / "checkpoints" / "fold_model" / f"{plan_fold.key}.ckpt"
    out_dir = transformer_dir(pipeline, plan_fold.key)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = TRANSFORMER.fit(inputs, out_dir, checkpoint_path=checkpoint)
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


@dg.multi_asset(
    name=TRANSFORMER.asset_name,
    partitions_def=fold_partitions,
    outs={
        TRANSFORMER.asset_name: dg.AssetOut(
            group_name=GROUP,
            description="The fold's transformer predictions of its test window (only)",
        ),
        TRANSFORMER.card_asset_name: dg.AssetOut(
            group_name=GROUP,
            description="The fold's transformer model card, read by model_comparison",
        ),
    },
)
def fold_predictions(
    context: dg.AssetExecutionContext,
    fold_model: Fitted,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    run_settings: PipelineSettings,
    pipeline: PipelineResource,
) -> Iterator[dg.Output]:
    """The fold's model predicts its test window only; its model card is the value of
    ``transformer_model_card`` (a copy goes to ``output/models/transformer/<fold>/card.json``
    for humans) and in the metadata."""
    plan_fold = find_fold(fold_plan, context.partition_key)
    inputs = transformer_inputs(plan_fold, feature_table, label_table, dataset_info, run_settings)
    stale = stale_reason(fold_model, TRANSFORMER.fold(inputs), dataset_info)
    if stale:
        raise dg.Failure(f"fold_model[{plan_fold.key}] is stale ({stale}); re-materialize it")
    out_dir = transformer_dir(pipeline, plan_fold.key)
    fitted = TRANSFORMER.fitted(fold_model.model, out_dir)  # the card names out_dir's weights
    preds = TRANSFORMER.predict(fitted, inputs)
    card = TRANSFORMER.card(fitted, preds)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True))
    known = preds["label"].notna()
    acc = (preds.loc[known, "pred_class"] == preds.loc[known, "label"] + 2).mean()
    meta = {
        "rows": len(preds),
        "accuracy": float(acc) if known.any() else None,
        "model_card": dg.MetadataValue.json(card),
    }
    yield dg.Output(preds, output_name=TRANSFORMER.asset_name, metadata=meta)
    yield dg.Output(
        card, output_name=TRANSFORMER.card_asset_name, metadata={"status": card.get("status")}
    )
