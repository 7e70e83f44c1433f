"""The shuffled-label control: per fold, the strategy's own model and training code (LightGBM
pooled over the universe, or the transformer) with every forward-looking column permuted
together inside the fold's training window only; it must show no edge."""

import dagster as dg
import numpy as np
import pandas as pd

from cryptoml_pipeline.defs.assets.modeling import find_fold
from cryptoml_pipeline.defs.partitions import fold_partitions
from cryptoml_pipeline.evaluation.shuffle import shuffle_training_labels
from cryptoml_pipeline.modeling.models import ZOO, FoldInputs
from cryptoml_pipeline.modeling.predictions import empty_predictions
from cryptoml_pipeline.settings import PipelineSettings

GROUP = "controls"


@dg.asset(group_name=GROUP, partitions_def=fold_partitions)
def shuffled_label_predictions(
    context: dg.AssetExecutionContext,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list,
    dataset_info: dict,
    run_settings: PipelineSettings,
) -> pd.DataFrame:
    """Test-window predictions of a model trained on shuffled labels (empty when switched off
    by ``controls.shuffled_label_model``)."""
    settings = run_settings
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
    # the strategy model trained as the candidate is (exactly this fold's window), on the
    # shuffled labels; its test window scored against the true ones
    member = settings.strategy.model
    zoo = ZOO[member]
    traded = tuple(dataset_info["symbols"])
    inputs = FoldInputs(feature_table, shuffled, fold, settings, timeframe, traded=traded)
    fitted = zoo.fit_window(inputs)
    preds = zoo.predict(
        fitted, FoldInputs(feature_table, label_table, fold, settings, timeframe, traded=traded)
    )
    known = preds["label"].notna()
    acc = (preds.loc[known, "pred_class"] == preds.loc[known, "label"] + 2).mean()
    context.add_output_metadata(
        {"rows": len(preds), "model": member, "accuracy": float(acc) if known.any() else None}
    )
    return preds.astype({"pred_class": np.int64})
