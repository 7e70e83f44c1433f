"""Features and labels. Labels are the only place allowed to look forward."""

import dagster as dg
import pandas as pd

from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.features import compute_features, feature_columns
from cryptoml_pipeline.features.causality import find_lookahead
from cryptoml_pipeline.features.schemas import validate_feature_table
from cryptoml_pipeline.modeling.labels import make_labels

GROUP = "features"
CAUSALITY_ROWS_PER_SYMBOL = 1500
CAUSALITY_CUTS = 3


@dg.asset(group_name=GROUP)
def feature_table(
    context: dg.AssetExecutionContext,
    ohlcv: pd.DataFrame,
    funding: pd.DataFrame,
    dataset_info: dict,
    pipeline: PipelineResource,
) -> pd.DataFrame:
    """Causal features (value at t uses data up to t only), validated by pandera."""
    settings = pipeline.settings()
    table = compute_features(ohlcv, funding, settings.features, timeframe=dataset_info["timeframe"])
    table = validate_feature_table(table)
    cols = feature_columns(table)
    context.add_output_metadata(
        {
            "rows": len(table),
            "n_features": len(cols),
            "features": ", ".join(cols),
            "warmup_nan_rows": int(table[cols].isna().any(axis=1).sum()),
        }
    )
    return table


def _recent_slice(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    return frame.groupby("symbol", group_keys=False).tail(rows).reset_index(drop=True)


@dg.asset_check(
    asset=feature_table,
    blocking=True,
    description="Recompute features on data truncated at several cut times; any change is a leak",
    additional_ins={k: dg.AssetIn(k) for k in ("ohlcv", "funding", "dataset_info")},
)
def feature_causality(
    ohlcv: pd.DataFrame, funding: pd.DataFrame, dataset_info: dict, pipeline: PipelineResource
) -> dg.AssetCheckResult:
    settings = pipeline.settings()
    candles = _recent_slice(ohlcv, CAUSALITY_ROWS_PER_SYMBOL)
    stamps = candles["timestamp"].sort_values().unique()
    cuts = [stamps[int(len(stamps) * q)] for q in (0.5, 0.7, 0.9)][:CAUSALITY_CUTS]
    tf = dataset_info["timeframe"]
    leaks = find_lookahead(
        lambda c, f: compute_features(c, f, settings.features, timeframe=tf),
        candles,
        funding[funding["timestamp"] >= candles["timestamp"].min() - pd.Timedelta(days=60)],
        [pd.Timestamp(c) for c in cuts],
    )
    first = leaks[0] if leaks else None
    return dg.AssetCheckResult(
        passed=not leaks,
        metadata={
            "cut_times": ", ".join(str(c) for c in cuts),
            "leaks": len(leaks),
            "first_leak": f"{first.column} at {first.timestamp}" if first else "-",
        },
    )


@dg.asset(group_name=GROUP)
def label_table(
    context: dg.AssetExecutionContext,
    ohlcv: pd.DataFrame,
    dataset_info: dict,
    pipeline: PipelineResource,
) -> pd.DataFrame:
    """Spec's 5 classes on the forward return over ``prediction_horizon`` bars."""
    labels = make_labels(ohlcv, pipeline.settings().labels, timeframe=dataset_info["timeframe"])
    dist = labels["label"].value_counts(normalize=True).sort_index()
    context.add_output_metadata(
        {
            "class_distribution": dg.MetadataValue.json(
                {str(int(k)): round(float(v), 4) for k, v in dist.items()}
            )
        }
    )
    return labels
