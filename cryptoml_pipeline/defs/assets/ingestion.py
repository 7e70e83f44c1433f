"""Ingestion: raw candles/funding from the MarketDataResource, then pandera-validated copies."""

from typing import Any

import dagster as dg
import pandas as pd

from cryptoml_pipeline.defs.resources import MarketDataResource, PipelineResource
from cryptoml_pipeline.market import validate_candles, validate_funding
from cryptoml_pipeline.timing import timeframe_to_timedelta

GROUP = "ingestion"


@dg.multi_asset(
    outs={
        "ohlcv_raw": dg.AssetOut(group_name=GROUP, description="Candles of the traded instrument"),
        "funding_raw": dg.AssetOut(group_name=GROUP, description="Perpetual funding settlements"),
        "dataset_info": dg.AssetOut(group_name=GROUP, description="Source, window, price source"),
    }
)
def market_snapshot(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, market: MarketDataResource
):
    settings = pipeline.settings()
    data = market.load(settings)
    if data.synthetic:
        context.log.warning("SYNTHETIC market data: results say nothing about real markets")
    info: dict[str, Any] = {
        "source": data.source,
        "synthetic": data.synthetic,
        "price_source": data.price_source,
        "price_sources": data.price_sources,
        "symbols": list(settings.data.symbols),
        "timeframe": data.timeframe,
        "start": data.start.isoformat(),
        "end": data.end.isoformat(),
    }
    yield dg.Output(data.candles, "ohlcv_raw", metadata={"rows": len(data.candles), **_brief(info)})
    yield dg.Output(data.funding, "funding_raw", metadata={"rows": len(data.funding)})
    yield dg.Output(info, "dataset_info", metadata=_brief(info))


def _brief(info: dict[str, Any]) -> dict[str, Any]:
    return {k: str(info[k]) for k in ("source", "synthetic", "price_source", "start", "end")}


def gap_report(candles: pd.DataFrame, timeframe: str) -> dict[str, int]:
    """Per symbol: number of missing bars between consecutive rows (never filled)."""
    bar = timeframe_to_timedelta(timeframe)
    out = {}
    for symbol, grp in candles.groupby("symbol", sort=True):
        steps = grp["timestamp"].diff().dropna() / bar
        out[str(symbol)] = int((steps[steps > 1] - 1).sum())
    return out


@dg.asset(group_name=GROUP)
def ohlcv(
    context: dg.AssetExecutionContext, ohlcv_raw: pd.DataFrame, dataset_info: dict
) -> pd.DataFrame:
    """Validated candles (pandera: positive prices, OHLC consistency, unique sorted UTC stamps)."""
    candles = validate_candles(ohlcv_raw, source="ohlcv_raw")
    gaps = gap_report(candles, dataset_info["timeframe"])
    context.add_output_metadata(
        {
            "rows": len(candles),
            "rows_per_symbol": dg.MetadataValue.json(
                candles.groupby("symbol").size().astype(int).to_dict()
            ),
            "missing_bars": dg.MetadataValue.json(gaps),
            "zero_volume_bars": int((candles["volume"] == 0).sum()),
        }
    )
    return candles


@dg.asset(group_name=GROUP)
def funding(context: dg.AssetExecutionContext, funding_raw: pd.DataFrame) -> pd.DataFrame:
    """Validated funding settlements."""
    validated = validate_funding(funding_raw, source="funding_raw")
    context.add_output_metadata({"rows": len(validated)})
    return validated


@dg.asset_check(
    asset=funding,
    blocking=True,
    description="Every symbol has funding data",
    additional_ins={"dataset_info": dg.AssetIn("dataset_info")},
)
def funding_covers_symbols(funding: pd.DataFrame, dataset_info: dict) -> dg.AssetCheckResult:
    have = set(funding["symbol"].unique())
    missing = [s for s in dataset_info["symbols"] if s not in have]
    return dg.AssetCheckResult(passed=not missing, metadata={"missing": ", ".join(missing) or "-"})
