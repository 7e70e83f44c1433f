"""Landing: daily-partitioned raw exchange data (ccxt) written into the parquet store.

One partition = one UTC day for every configured symbol / market / timeframe. Materialising a
partition again replaces that day (never duplicates a row); a failed series leaves the stored data
unchanged. Transient exchange errors are retried inside the asset (bounded backoff) and then by
the Dagster ``RetryPolicy``; data errors and permanent exchange errors fail at once (no retry).
Group ``landing`` is separate from the unpartitioned ``ingestion`` group of the main pipeline,
which keeps reading the store offline.
"""

import os
from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg

from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.errors import CryptoMLError, DataValidationError, InputError
from cryptoml_pipeline.market import ParquetStore
from cryptoml_pipeline.market.ccxt_source import make_exchange
from cryptoml_pipeline.market.ingest import (
    SeriesResult,
    backoff_from,
    check_exchange,
    day_window,
    land_funding_day,
    land_ohlcv_day,
    land_open_interest_day,
    summarise,
)
from cryptoml_pipeline.market.repair import INPUT_REPAIRS, RepairReport, repair_candles
from cryptoml_pipeline.market.schemas import validate_funding
from cryptoml_pipeline.settings import IngestConfig, PipelineSettings

GROUP = "landing"
API_KEY_ENV, SECRET_ENV = "CRYPTOML_EXCHANGE_API_KEY", "CRYPTOML_EXCHANGE_SECRET"

landing_partitions = dg.DailyPartitionsDefinition(
    start_date=IngestConfig().partitions_start, timezone="UTC"
)
LANDING_RETRY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
T = TypeVar("T")


class LandingResource(dg.ConfigurableResource):
    """Where landed data goes and which exchange it comes from. Keys only via ``dg.EnvVar``."""

    exchange: str = "binance"
    data_dir: str = "data"
    api_key: str | None = None
    secret: str | None = None
    symbols: list[str] = []  # noqa: RUF012 (pydantic copies defaults); empty = the run's symbols
    timeframes: list[str] = []  # noqa: RUF012 (copied); empty = settings.ingest.timeframes

    def ingest_config(self, settings: PipelineSettings) -> IngestConfig:
        """``settings.ingest`` with this resource's exchange, symbols and timeframes."""
        update: dict[str, Any] = {
            "exchange": self.exchange,
            "symbols": tuple(self.symbols) or settings.data.symbols,
        }
        if self.timeframes:
            update["timeframes"] = tuple(self.timeframes)
        return settings.ingest.model_copy(update=update)

    def client(self) -> Any:
        return make_exchange(self.exchange, api_key=self.api_key, secret=self.secret)

    def store(self) -> ParquetStore:
        return ParquetStore(self.data_dir)


def landing_resource_from_env() -> LandingResource:
    """``$CRYPTOML_EXCHANGE`` (binance), ``$CRYPTOML_LANDING_DIR`` (else ``$CRYPTOML_DATA_DIR``,
    else ``./data``), ``$CRYPTOML_INGEST_TIMEFRAMES`` (comma-separated; default: settings); keys
    from ``$CRYPTOML_EXCHANGE_API_KEY`` / ``$CRYPTOML_EXCHANGE_SECRET`` via ``dg.EnvVar``."""
    keys = {
        field: dg.EnvVar(env)
        for field, env in (("api_key", API_KEY_ENV), ("secret", SECRET_ENV))
        if os.environ.get(env)
    }
    data_dir = os.environ.get("CRYPTOML_LANDING_DIR") or os.environ.get("CRYPTOML_DATA_DIR")
    timeframes = os.environ.get("CRYPTOML_INGEST_TIMEFRAMES", "")
    return LandingResource(
        exchange=os.environ.get("CRYPTOML_EXCHANGE", "binance"),
        data_dir=os.path.abspath(data_dir or "data"),
        timeframes=[t.strip() for t in timeframes.split(",") if t.strip()],
        **keys,
    )


def _land(fn: Callable[[], T]) -> T:
    """Data and permanent errors fail without retries; transient ones go to the RetryPolicy."""
    try:
        return fn()
    except (DataValidationError, InputError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def _metadata(results: list[SeriesResult]) -> dict[str, Any]:
    summary = summarise(results)
    return {
        "rows_written": summary["rows_written"],
        "rows_per_series": dg.MetadataValue.json(summary["rows_per_series"]),
        "unavailable": dg.MetadataValue.json(summary["unavailable"]),
        **{f"repair_{k}": v for k, v in summary["repairs"].items()},
    }


@dg.asset(
    group_name=GROUP,
    partitions_def=landing_partitions,
    retry_policy=LANDING_RETRY,
    check_specs=[
        dg.AssetCheckSpec(
            "stored_day_valid",
            asset="raw_ohlcv_daily",
            blocking=True,
            description="Stored day re-read: on grid, unique, sorted, OHLC-consistent, no NaN",
        ),
        dg.AssetCheckSpec(
            "day_quality", asset="raw_ohlcv_daily", description="WARN: gaps, zero volume, spikes"
        ),
    ],
)
def raw_ohlcv_daily(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, landing: LandingResource
):
    """Spot and USDT-M perpetual candles of one UTC day for every configured timeframe."""
    config = landing.ingest_config(pipeline.settings())
    exchange, store = landing.client(), landing.store()
    backoff = backoff_from(config)
    day = context.partition_key
    _land(lambda: check_exchange(exchange, config, backoff))
    results = _land(lambda: land_ohlcv_day(store, exchange, day, config, backoff=backoff))
    report = RepairReport.combine(r.report for r in results if r.report is not None)
    problems = _stored_day_problems(store, results, config, day)
    yield dg.MaterializeResult(
        metadata=_metadata(results),
        check_results=[
            dg.AssetCheckResult(
                check_name="stored_day_valid",
                passed=not problems,
                metadata={"problems": dg.MetadataValue.json(problems)},
            ),
            dg.AssetCheckResult(
                check_name="day_quality",
                passed=not any(report.warnings.values()),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={**report.warnings, "gap_events": report.gap_events},
            ),
        ],
    )


def _stored_day_problems(
    store: ParquetStore, results: list[SeriesResult], config: IngestConfig, day: str
) -> dict[str, str]:
    start, end = day_window(day)
    problems = {}
    for result in results:
        symbol, timeframe = result.series.rsplit(" ", 1)
        if result.status != "written" or not store.has_candles(symbol, timeframe):
            continue
        try:
            stored = store.read_candles(symbol, timeframe, start, end)
            _, rep = repair_candles(stored, timeframe, source=result.series)
            if rep.exact_duplicates_dropped or rep.rows_reordered:
                problems[result.series] = "duplicates or unsorted rows in the store"
        except CryptoMLError as exc:
            problems[result.series] = str(exc)
    return problems


@dg.asset(
    group_name=GROUP,
    partitions_def=landing_partitions,
    retry_policy=LANDING_RETRY,
    check_specs=[
        dg.AssetCheckSpec("stored_funding_valid", asset="raw_funding_daily", blocking=True)
    ],
)
def raw_funding_daily(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, landing: LandingResource
):
    """Funding settlements of every configured perpetual for one UTC day."""
    config = landing.ingest_config(pipeline.settings())
    exchange, store = landing.client(), landing.store()
    backoff = backoff_from(config)
    day = context.partition_key
    _land(lambda: check_exchange(exchange, config, backoff))
    results = _land(lambda: land_funding_day(store, exchange, day, config, backoff=backoff))
    start, end = day_window(day)
    problems = {}
    for result in results:
        symbol = result.series.removesuffix(" funding")
        try:
            stored = store.read_funding(symbol, start, end)
            validate_funding(stored, source=result.series)
        except CryptoMLError as exc:
            problems[result.series] = str(exc)
            continue
        if repaired := _read_repairs(stored):
            problems[result.series] = repaired
    yield dg.MaterializeResult(
        metadata=_metadata(results),
        check_results=[
            dg.AssetCheckResult(
                check_name="stored_funding_valid",
                passed=not problems,
                metadata={"problems": dg.MetadataValue.json(problems)},
            )
        ],
    )


def _read_repairs(stored: Any) -> str | None:
    """What the store had to repair when re-reading a day just written (exact duplicates,
    unsorted rows, ...), as one line; ``None`` when nothing. A writer never produces such a file,
    so any repair is a problem of the stored day."""
    counts: dict[str, int] = {}
    for file_counts in (stored.attrs.get(INPUT_REPAIRS) or {}).values():
        for name, n in file_counts.items():
            counts[name] = counts.get(name, 0) + int(n)
    if not any(counts.values()):
        return None
    found = ", ".join(f"{name}={n}" for name, n in counts.items() if n)
    return f"stored day needed repairs on read ({found}): the writer should never produce them"


def _stored_open_interest_check(problems: dict[str, str], checked: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="stored_open_interest_valid",
        passed=not problems,
        metadata={"series_checked": checked, "problems": dg.MetadataValue.json(problems)},
    )


@dg.asset(
    group_name=GROUP,
    partitions_def=landing_partitions,
    retry_policy=LANDING_RETRY,
    check_specs=[
        dg.AssetCheckSpec(
            "stored_open_interest_valid",
            asset="raw_open_interest_daily",
            blocking=True,
            description="Stored day re-read: tz-aware UTC, unique and sorted per symbol, values "
            "finite and >= 0",
        )
    ],
)
def raw_open_interest_daily(
    context: dg.AssetExecutionContext, pipeline: PipelineResource, landing: LandingResource
):
    """Open interest of every configured perpetual for one UTC day, where the exchange offers it
    (metadata ``unavailable`` says where and why it does not)."""
    config = landing.ingest_config(pipeline.settings())
    if not config.open_interest:
        yield dg.MaterializeResult(
            metadata={"status": "disabled in settings"},
            check_results=[_stored_open_interest_check({}, 0)],
        )
        return
    exchange, store = landing.client(), landing.store()
    backoff = backoff_from(config)
    day = context.partition_key
    results = _land(lambda: land_open_interest_day(store, exchange, day, config, backoff=backoff))
    start, end = day_window(day)
    problems, checked = {}, 0
    for result in results:
        if result.status != "written":
            continue
        symbol = result.series.split(" open interest", 1)[0]  # "BTC/USDT:USDT open interest 1h"
        checked += 1
        try:  # the re-read validates the stored day against OPEN_INTEREST_SCHEMA
            stored = store.read_open_interest(symbol, config.open_interest_period, start, end)
        except CryptoMLError as exc:
            problems[result.series] = str(exc)
            continue
        if repaired := _read_repairs(stored):
            problems[result.series] = repaired
    status = "unavailable" if all(r.status == "unavailable" for r in results) else "ok"
    yield dg.MaterializeResult(
        metadata={"status": status, **_metadata(results)},
        check_results=[_stored_open_interest_check(problems, checked)],
    )
