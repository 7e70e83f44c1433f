"""Ingestion: raw candles/funding from the MarketDataResource, then repaired, validated copies.

``ohlcv`` applies the explicit repair rules of :mod:`cryptoml_pipeline.market.repair` (every count
in its metadata); a blocking check re-verifies the hard rules, a WARN check reports gaps,
zero-volume bars and spikes."""

from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from cryptoml_pipeline.defs.assets.run_settings import RUN_SETTINGS
from cryptoml_pipeline.defs.resources import MarketDataResource
from cryptoml_pipeline.market import CANDLE_COLUMNS, validate_funding
from cryptoml_pipeline.market.repair import hard_rule_violations, repair_candles
from cryptoml_pipeline.market.settlements import missing_settlements as settlement_gaps
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import timeframe_to_timedelta, to_utc

GROUP = "ingestion"


@dg.multi_asset(
    outs={
        "ohlcv_raw": dg.AssetOut(group_name=GROUP, description="Candles of the traded instrument"),
        "funding_raw": dg.AssetOut(group_name=GROUP, description="Perpetual funding settlements"),
        "dataset_info": dg.AssetOut(group_name=GROUP, description="Source, window, price source"),
    }
)
def market_snapshot(
    context: dg.AssetExecutionContext, run_settings: PipelineSettings, market: MarketDataResource
):
    settings = run_settings
    data = market.load(settings)
    info: dict[str, Any] = {
        "source": data.source,
        "synthetic": data.synthetic,
        "price_source": data.price_source,
        "price_sources": data.price_sources,
        "symbols": list(data.traded_symbols),
        "universe": list(data.universe_symbols),
        "timeframe": data.timeframe,
        "start": data.start.isoformat(),
        "end": data.end.isoformat(),
        # ragged window: where each traded symbol enters, and the first loaded bar (the
        # training origin of an expanding walk-forward over all history)
        "symbol_starts": {s: t.isoformat() for s, t in data.symbol_starts().items()},
        "train_from": data.candles["timestamp"].min().isoformat() if len(data.candles) else None,
        "data_quality": _quality(data.candles, data.start, data.timeframe, settings),
    }
    yield dg.Output(data.candles, "ohlcv_raw", metadata={"rows": len(data.candles), **_brief(info)})
    yield dg.Output(data.funding, "funding_raw", metadata={"rows": len(data.funding)})
    yield dg.Output(info, "dataset_info", metadata=_brief(info))


def _quality(
    candles: pd.DataFrame, start: pd.Timestamp, timeframe: str, settings: PipelineSettings
) -> dict[str, int]:
    """Repair counts of the window's candles (the report's data-quality section)."""
    window = candles[candles["timestamp"] >= start]
    _, report = repair_candles(
        window,
        timeframe,
        source="market data",
        max_fill_bars=settings.ingest.max_fill_bars,
        outlier_k=settings.ingest.outlier_k_sigma,
        outlier_window=settings.ingest.outlier_window,
    )
    return report.as_metadata()


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
    context: dg.AssetExecutionContext,
    ohlcv_raw: pd.DataFrame,
    dataset_info: dict,
    run_settings: PipelineSettings,
) -> pd.DataFrame:
    """Repaired, validated candles: exact duplicates dropped, rows sorted, conflicting duplicates /
    off-grid / NaN / non-positive prices / OHLC violations rejected, gaps counted (filled only up
    to ``ingest.max_fill_bars`` bars, marked ``is_filled``), zero-volume bars and spikes counted."""
    ingest = run_settings.ingest
    timeframe = dataset_info["timeframe"]
    candles, report = repair_candles(
        ohlcv_raw,
        timeframe,
        source="ohlcv_raw",
        max_fill_bars=ingest.max_fill_bars,
        outlier_k=ingest.outlier_k_sigma,
        outlier_window=ingest.outlier_window,
    )
    window = candles[candles["timestamp"] >= to_utc(dataset_info["start"])]
    real = window[~window["is_filled"]]
    context.add_output_metadata(
        {
            "rows": len(window),
            "warmup_rows_before_start": len(candles) - len(window),
            "rows_per_symbol": dg.MetadataValue.json(
                window.groupby("symbol").size().astype(int).to_dict()
            ),
            "missing_bars": dg.MetadataValue.json(gap_report(real, timeframe)),
            "zero_volume_bars": int(window["is_zero_volume"].sum()),
            "spike_bars": int(window["is_spike"].sum()),
            "filled_bars": int(window["is_filled"].sum()),
            "exact_duplicates_dropped": report.exact_duplicates_dropped,
            "rows_reordered": report.rows_reordered,
            "repairs_incl_warmup": dg.MetadataValue.json(report.as_metadata()),
        }
    )
    columns = [*CANDLE_COLUMNS, "is_filled"] if ingest.max_fill_bars else list(CANDLE_COLUMNS)
    return candles[columns]


@dg.asset_check(
    asset=ohlcv,
    blocking=True,
    description="Hard rules: on the timeframe grid, unique sorted stamps, no NaN, prices > 0, "
    "volume >= 0, low <= min(open, close), high >= max(open, close)",
    additional_ins={"dataset_info": dg.AssetIn("dataset_info")},
)
def ohlcv_hard_rules(ohlcv: pd.DataFrame, dataset_info: dict) -> dg.AssetCheckResult:
    violations = hard_rule_violations(ohlcv, dataset_info["timeframe"])
    return dg.AssetCheckResult(passed=not any(violations.values()), metadata=violations)


@dg.asset_check(
    asset=ohlcv,
    blocking=False,
    description="WARN (soft): missing bars (gaps), zero-volume bars, spikes that reverse",
    additional_ins={k: dg.AssetIn(k) for k in ("dataset_info", RUN_SETTINGS)},
)
def ohlcv_soft_rules(
    ohlcv: pd.DataFrame, dataset_info: dict, run_settings: PipelineSettings
) -> dg.AssetCheckResult:
    ingest = run_settings.ingest
    window = ohlcv[ohlcv["timestamp"] >= to_utc(dataset_info["start"])]
    _, report = repair_candles(
        window[list(CANDLE_COLUMNS)],
        dataset_info["timeframe"],
        source="ohlcv",
        outlier_k=ingest.outlier_k_sigma,
        outlier_window=ingest.outlier_window,
    )
    filled = int(window["is_filled"].sum()) if "is_filled" in window.columns else 0
    return dg.AssetCheckResult(
        passed=not any(report.warnings.values()),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            **report.warnings,
            "gap_events": report.gap_events,
            "longest_gap_bars": report.longest_gap_bars,
            "filled_bars": filled,
        },
    )


@dg.asset(group_name=GROUP)
def funding(context: dg.AssetExecutionContext, funding_raw: pd.DataFrame) -> pd.DataFrame:
    """Validated funding settlements."""
    validated = validate_funding(funding_raw, source="funding_raw")
    context.add_output_metadata({"rows": len(validated)})
    return validated


def missing_settlements(
    funding: pd.DataFrame,
    symbols: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    interval_hours: int,
) -> dict[str, list[pd.Timestamp]]:
    """Per symbol, the settlements in ``[start, end)`` its funding data skips: inside a gap
    longer than both neighbouring intervals, or before / after its data
    (:func:`market.settlements.missing_settlements`; the symbol's own intervals, whatever they
    are and however they change; ``interval_hours`` only where it has fewer than two)."""
    lo, hi = int(start.value), int(end.value)
    hint = int(pd.Timedelta(hours=interval_hours).value)
    stamps = pd.DatetimeIndex(funding["timestamp"]).as_unit("ns").asi8
    names = funding["symbol"].astype(str).to_numpy()
    out = {}
    for symbol in symbols:
        own = np.unique(stamps[names == symbol])
        gone = settlement_gaps(own, lo, hi, hint)
        if len(gone):
            out[symbol] = list(pd.DatetimeIndex(gone, tz="UTC"))
    return out


def off_schedule_settlements(
    funding: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Funding rows inside ``[start, end)`` not on a whole hour (the exchange settles on the
    hour, whatever the interval: such a row is clock jitter or a corrupt timestamp)."""
    inside = (funding["timestamp"] >= start) & (funding["timestamp"] < end)
    on_hour = funding["timestamp"] == funding["timestamp"].dt.floor("1h")
    return funding.loc[inside & ~on_hour, ["timestamp", "symbol"]]


@dg.asset_check(
    asset=funding,
    blocking=True,
    description="No funding settlement in the window is missing (a gap longer than both "
    "neighbouring intervals, each symbol's own, changing intervals allowed) and every one is on "
    "the hour",
    additional_ins={k: dg.AssetIn(k) for k in ("dataset_info", RUN_SETTINGS)},
)
def funding_complete(
    funding: pd.DataFrame, dataset_info: dict, run_settings: PipelineSettings
) -> dg.AssetCheckResult:
    start, end = to_utc(dataset_info["start"]), to_utc(dataset_info["end"])
    interval = run_settings.data.funding_interval_hours
    # ragged window: a symbol's settlements are due from where it enters the window
    entries = dataset_info.get("symbol_starts") or {}
    missing: dict[str, list[pd.Timestamp]] = {}
    for symbol in dataset_info["symbols"]:
        since = max(start, to_utc(entries.get(symbol, start)))
        missing |= missing_settlements(funding, [symbol], since, end, interval)
    off = off_schedule_settlements(funding, start, end)
    first = {s: str(v[0]) for s, v in missing.items()}
    return dg.AssetCheckResult(
        passed=not missing and off.empty,
        metadata={
            "missing_settlements": sum(len(v) for v in missing.values()),
            "first_missing": dg.MetadataValue.json(first),
            "off_schedule_rows": len(off),
            "first_off_schedule": (
                f"{off.iloc[0]['symbol']} {off.iloc[0]['timestamp']}" if len(off) else "-"
            ),
        },
    )
