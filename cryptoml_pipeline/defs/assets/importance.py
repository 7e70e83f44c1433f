"""Per-fold permutation feature importance (fold partitions), stored for the report/dashboard."""

from typing import Any

import dagster as dg
import pandas as pd

from cryptoml_pipeline.defs.assets.modeling import find_fold, heavy_fold, stale_reason
from cryptoml_pipeline.defs.partitions import fold_partitions
from cryptoml_pipeline.features.build import plan_features
from cryptoml_pipeline.modeling.importance import IMPORTANCE_COLUMNS, permutation_importance
from cryptoml_pipeline.modeling.models import Fitted
from cryptoml_pipeline.registry.artifact_store import FEATURE_IMPORTANCE_ASSET
from cryptoml_pipeline.settings import PipelineSettings

GROUP = "importance"
FEATURE_IMPORTANCE_KEY = dg.AssetKey(FEATURE_IMPORTANCE_ASSET)
__all__ = ["FEATURE_IMPORTANCE_KEY", "feature_importance"]


@dg.asset(group_name=GROUP, partitions_def=fold_partitions)
def feature_importance(
    context: dg.AssetExecutionContext,
    fold_model: Fitted,
    feature_table: pd.DataFrame,
    label_table: pd.DataFrame,
    fold_plan: list[dict[str, Any]],
    dataset_info: dict,
    run_settings: PipelineSettings,
) -> pd.DataFrame:
    """Permutation importance of every model feature on the fold's test window."""
    settings = run_settings
    fold = find_fold(fold_plan, context.partition_key)
    if not settings.features.importance.enabled:
        context.add_output_metadata({"status": "disabled (features.importance.enabled=False)"})
        return pd.DataFrame(columns=IMPORTANCE_COLUMNS)
    recent = settings.features.importance.recent_folds
    if recent is not None and fold.index < len(fold_plan) - recent:
        context.add_output_metadata(
            {"status": f"skipped: outside the most recent {recent} folds (importance.recent_folds)"}
        )
        return pd.DataFrame(columns=IMPORTANCE_COLUMNS)
    # the transformer trains on the heavy (rolling) fold when the walk-forward expands
    stale = stale_reason(
        fold_model, heavy_fold(fold, settings, dataset_info["timeframe"]), dataset_info
    )
    if stale:
        raise dg.Failure(f"fold_model[{fold.key}] is stale ({stale}); re-materialize it")
    table = permutation_importance(
        fold_model, feature_table, label_table, fold, settings, dataset_info["timeframe"]
    )
    top = table.head(10)
    lines = ["| feature | family | Δ logloss | Δ accuracy |", "|---|---|---|---|"]
    lines += [
        f"| {r.feature} | {r.family} | {r.importance_logloss:+.5f} | {r.importance_accuracy:+.4f} |"
        for r in top.itertuples()
    ]
    context.add_output_metadata(
        {
            "n_features": len(table),
            "n_rows": int(table["n_rows"].iloc[0]) if len(table) else 0,
            "base_logloss": float(table["base_logloss"].iloc[0]) if len(table) else None,
            "top_features": dg.MetadataValue.md("\n".join(lines)),
        }
    )
    return table


def feature_plan_metadata(
    instance: dg.DagsterInstance, settings: PipelineSettings, symbols: list[str]
) -> tuple[dict[str, Any], str]:
    """The latest ``feature_table`` materialization's plan (families, unavailable, disabled);
    if the instance has none, the plan recomputed from the settings (said so in the source)."""
    event = instance.get_latest_materialization_event(dg.AssetKey("feature_table"))
    mat = event.asset_materialization if event is not None else None
    meta = mat.metadata if mat is not None else {}
    if "features_by_family" in meta and "unavailable" in meta:
        disabled = str(getattr(meta.get("disabled_families"), "value", "-") or "-")
        plan = {
            "families": meta["features_by_family"].value,
            "unavailable": meta["unavailable"].value,
            "disabled": [] if disabled == "-" else disabled.split(", "),
        }
        return plan, "feature_table materialization metadata"
    plan = plan_features(settings.features, symbols=symbols, has_volume=True, with_funding=True)
    return plan.metadata(), "recomputed from settings (no feature_table metadata in the instance)"
