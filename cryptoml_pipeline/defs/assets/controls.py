"""The shuffled-label control: per fold, the strategy's own model and training code (LightGBM
pooled over the universe, or the transformer) with every forward-looking column permuted
together inside the fold's training window only; it must show no edge."""

import dagster as dg
import numpy as np
import pandas as pd

from cryptoml_pipeline.defs.assets.modeling import find_fold, traded_only
from cryptoml_pipeline.defs.partitions import fold_partitions
from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.evaluation.shuffle import shuffle_training_labels
from cryptoml_pipeline.modeling.fold_training import predict_fold, train_fold
from cryptoml_pipeline.modeling.gbm import predict_gbm_fold, train_gbm_fold
from cryptoml_pipeline.modeling.predictions import empty_predictions

GROUP = "modeling"


@dg.asset(group_name=GROUP, partitions_def=fold_partitions)
def shuffled_label_predictions(
    context: dg.AssetExecutionContext,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list,
    dataset_info: dict,
    pipeline: PipelineResource,
) -> pd.DataFrame:
    """Test-window predictions of a model trained on shuffled labels (empty when switched off
    by ``controls.shuffled_label_model``)."""
    settings = pipeline.settings()
    if not settings.controls.shuffled_label_model:
        context.add_output_metadata({"status": "disabled in settings"})
        return empty_predictions()
    fold = find_fold(fold_plan, context.partition_key)
    recent = settings.controls.shuffled_label_folds
    latest = [f["key"] for f in fold_plan][-recent:] if recent else None
    if latest is not None and fold.key not in latest:
        context.add_output_metadata(
            {"status": f"skipped: controls.shuffled_label_folds={recent} (latest folds only)"}
        )
        return empty_predictions()
    timeframe = dataset_info["timeframe"]
    shuffled = shuffle_training_labels(
        label_table, fold.train_start, fold.test_start, seed=settings.controls.seed + fold.index
    )
    if settings.strategy.model == "transformer":
        feats = traded_only(feature_table, dataset_info)
        model = train_fold(feats, traded_only(shuffled, dataset_info), fold, settings, timeframe)
        preds = predict_fold(
            model, feats, traded_only(label_table, dataset_info), fold, settings, timeframe
        )
        member = "transformer"
    else:
        gbm = train_gbm_fold(feature_table, shuffled, fold, settings, timeframe)
        preds = predict_gbm_fold(
            gbm,
            feature_table,
            label_table,
            fold,
            settings,
            timeframe,
            traded=dataset_info["symbols"],
        )
        member = "gbm"
    known = preds["label"].notna()
    acc = (preds.loc[known, "pred_class"] == preds.loc[known, "label"] + 2).mean()
    context.add_output_metadata(
        {"rows": len(preds), "model": member, "accuracy": float(acc) if known.any() else None}
    )
    return preds.astype({"pred_class": np.int64})
