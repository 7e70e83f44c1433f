"""Features and labels. Labels are the only place allowed to look forward."""

import dagster as dg
import pandas as pd

from cryptoml_pipeline.defs.assets.run_settings import RUN_SETTINGS
from cryptoml_pipeline.defs.resources import MarketDataResource
from cryptoml_pipeline.features import build_features, compute_features, feature_columns
from cryptoml_pipeline.features.build import warmup_bars, warmup_period
from cryptoml_pipeline.features.causality import (
    find_lookahead,
    find_warmup_sensitivity,
    sample_cut_times,
)
from cryptoml_pipeline.features.schemas import validate_feature_table
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import timeframe_to_timedelta

GROUP = "features"
CAUSALITY_ROWS_PER_SYMBOL = 2000
CAUSALITY_CUTS = 4
WARMUP_START_OFFSETS_BARS = (97, 233)  # two later history starts, off any daily rhythm
WARMUP_EXTRA_ROWS = 400  # compared rows after the warm-up of the latest start


@dg.asset(group_name=GROUP)
def feature_table(
    context: dg.AssetExecutionContext,
    ohlcv: pd.DataFrame,
    funding: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
    market: MarketDataResource,
) -> pd.DataFrame:
    """Causal features (value at t uses data up to t only), validated by pandera. The metadata
    lists the features by family and every unavailable feature with its reason. Open interest
    landed in the store (``ingest_job``) feeds the open-interest features when present."""
    settings = run_settings
    oi = _open_interest(market, settings, ohlcv)
    built = build_features(
        ohlcv,
        funding,
        settings.features,
        timeframe=dataset_info["timeframe"],
        open_interest=oi,
        spot=_perpetual_spots(market, settings, ohlcv, dataset_info),
    )
    table = validate_feature_table(built.table)
    cols = feature_columns(table)
    plan = built.plan
    context.add_output_metadata(
        {
            "rows": len(table),
            "n_features": len(cols),
            "features": ", ".join(cols),
            "features_by_family": dg.MetadataValue.json(plan.metadata()["families"]),
            "unavailable": dg.MetadataValue.json(plan.unavailable),
            "disabled_families": ", ".join(plan.disabled) or "-",
            "warmup_bars": warmup_bars(settings.features),
            "warmup_nan_rows": int(table[cols].isna().any(axis=1).sum()),
        }
    )
    return table


def _open_interest(
    market: MarketDataResource, settings, candles: pd.DataFrame
) -> pd.DataFrame | None:
    if not settings.features.sentiment_flow.enabled or candles.empty:
        return None
    return market.open_interest(
        sorted(candles["symbol"].astype(str).unique()),
        settings.ingest.open_interest_period,
        candles["timestamp"].min() - pd.Timedelta(days=7),
        candles["timestamp"].max() + pd.Timedelta(days=1),
    )


def _perpetual_spots(
    market: MarketDataResource, settings, candles: pd.DataFrame, dataset_info: dict
) -> pd.DataFrame | None:
    """Spot closes of the symbols whose candles are their perpetual's (the pooled basis)."""
    if not settings.features.pooled.enabled or candles.empty:
        return None
    sources = dataset_info.get("price_sources") or {}
    perps = sorted(s for s, kind in sources.items() if kind == "perpetual")
    if not perps:
        return None
    return market.spot_closes(
        perps,
        dataset_info["timeframe"],
        candles["timestamp"].min(),
        candles["timestamp"].max() + pd.Timedelta(days=1),
    )


def _recent_slice(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    return frame.groupby("symbol", group_keys=False).tail(rows).reset_index(drop=True)


def _funding_near(funding: pd.DataFrame, candles: pd.DataFrame, days: int) -> pd.DataFrame:
    return funding[funding["timestamp"] >= candles["timestamp"].min() - pd.Timedelta(days=days)]


@dg.asset_check(
    asset=feature_table,
    blocking=True,
    description="Recompute features on data truncated at several cut times; any change is a leak",
    additional_ins={k: dg.AssetIn(k) for k in ("ohlcv", "funding", "dataset_info", RUN_SETTINGS)},
)
def feature_causality(
    ohlcv: pd.DataFrame,
    funding: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
    market: MarketDataResource,
) -> dg.AssetCheckResult:
    settings = run_settings
    candles = _recent_slice(ohlcv, CAUSALITY_ROWS_PER_SYMBOL)
    cuts = sample_cut_times(candles["timestamp"], CAUSALITY_CUTS)
    tf = dataset_info["timeframe"]
    oi = _open_interest(market, settings, candles)
    spot = _perpetual_spots(market, settings, candles, dataset_info)

    def compute(c: pd.DataFrame, f: pd.DataFrame | None) -> pd.DataFrame:
        # the spot closes of the basis are cut where the candles are
        cut = None if spot is None else spot[spot["timestamp"] <= c["timestamp"].max()]
        return compute_features(c, f, settings.features, timeframe=tf, open_interest=oi, spot=cut)

    leaks = find_lookahead(
        compute,
        candles,
        _funding_near(funding, candles, 60),
        cuts,
    )
    first = leaks[0] if leaks else None
    return dg.AssetCheckResult(
        passed=not leaks,
        description=f"look-ahead: {first.describe()}" if first else "no value changed",
        metadata={
            "cut_times": ", ".join(str(c) for c in cuts),
            "rows_per_symbol": CAUSALITY_ROWS_PER_SYMBOL,
            "leaks": len(leaks),
            "leaking_columns": ", ".join(sorted({r.column for r in leaks})) or "-",
            "first_leak": f"{first.column} of {first.symbol} at {first.timestamp}"
            if first
            else "-",
        },
    )


@dg.asset_check(
    asset=feature_table,
    blocking=False,
    description=(
        "Warm-up sensitivity: values after the declared warm-up must not depend on how much "
        "history precedes them (recompute with later history starts)"
    ),
    additional_ins={k: dg.AssetIn(k) for k in ("ohlcv", "funding", "dataset_info", RUN_SETTINGS)},
)
def feature_warmup_sensitivity(
    ohlcv: pd.DataFrame,
    funding: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
    market: MarketDataResource,
) -> dg.AssetCheckResult:
    settings = run_settings
    tf = dataset_info["timeframe"]
    bar = timeframe_to_timedelta(tf)
    warmup = warmup_period(settings.features, tf, settings.data.funding_interval_hours)
    rows = int(warmup / bar) + max(WARMUP_START_OFFSETS_BARS) + WARMUP_EXTRA_ROWS
    candles = _recent_slice(ohlcv, rows)
    first = candles["timestamp"].min()
    starts = [first + k * bar for k in WARMUP_START_OFFSETS_BARS]
    oi = _open_interest(market, settings, candles)
    spot = _perpetual_spots(market, settings, candles, dataset_info)
    reports = find_warmup_sensitivity(
        lambda c, f: compute_features(
            c, f, settings.features, timeframe=tf, open_interest=oi, spot=spot
        ),
        candles,
        _funding_near(funding, candles, 0),
        starts,
        warmup,
    )
    top = reports[0] if reports else None
    compared = int((candles["timestamp"] >= max(starts) + warmup).sum())
    return dg.AssetCheckResult(
        passed=not reports,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"history-dependent: {top.describe()}" if top else "warm-up is sufficient",
        metadata={
            "declared_warmup": str(warmup),
            "history_starts": ", ".join(str(s) for s in starts),
            "rows_compared_last_start": compared,
            "differences": len(reports),
            "columns": ", ".join(sorted({r.column for r in reports})) or "-",
        },
    )


@dg.asset(group_name=GROUP)
def label_table(
    context: dg.AssetExecutionContext,
    ohlcv: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
) -> pd.DataFrame:
    """The models' target (``settings.target``: the spec's 5 classes, a volatility-scaled
    forward return from the next bar's open, or triple-barrier labels), the realised return a
    trade would get, and the spec's classes of it (see ``modeling/labels.py``)."""
    settings = run_settings
    labels = make_labels(
        ohlcv, settings.target, settings.labels, timeframe=dataset_info["timeframe"]
    )
    dist = labels["label"].value_counts(normalize=True).sort_index()
    target = labels["target"].dropna()
    context.add_output_metadata(
        {
            "target": settings.target.kind,
            "horizon_bars": settings.target.horizon,
            "labelled_rows": len(target),
            "target_mean": float(target.mean()) if len(target) else None,
            "target_std": float(target.std()) if len(target) > 1 else None,
            "class_distribution": dg.MetadataValue.json(
                {str(int(k)): round(float(v), 4) for k, v in dist.items()}
            ),
        }
    )
    return labels
