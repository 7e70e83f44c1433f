"""The daily-partitioned landing assets in Dagster, offline (fake Binance at the HTTP layer)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from cryptoml_pipeline.defs.assets.landing import (
    LANDING_RETRY,
    LandingResource,
    landing_partitions,
    landing_resource_from_env,
    raw_funding_daily,
    raw_ohlcv_daily,
    raw_open_interest_daily,
)
from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.market import ParquetStore
from cryptoml_pipeline_tests.fixtures.market.wire import SPOT, fake_binance


class FakeLanding(LandingResource):
    """Landing resource whose exchange is a real ccxt.binance over the fake HTTP session."""

    negative_close_row: int | None = None

    def client(self):
        exchange, server = fake_binance()
        if self.negative_close_row is not None:
            rows = [list(r) for r in server.routes[(SPOT, "1h")]]
            rows[self.negative_close_row][4] = "-1.0"
            server.routes[(SPOT, "1h")] = rows
        return exchange


def _materialize(tmp_path: Path, day: str, **landing) -> dg.ExecuteInProcessResult:
    resources = {
        "pipeline": PipelineResource(profile="tiny", symbols=["BTC/USDT"]),
        "landing": FakeLanding(data_dir=str(tmp_path), timeframes=["1h"], **landing),
    }
    return dg.materialize(
        [raw_ohlcv_daily, raw_funding_daily, raw_open_interest_daily],
        resources=resources,
        partition_key=day,
        raise_on_error=False,
    )


def test_landing_partition_is_idempotent_with_checks_and_metadata(tmp_path: Path) -> None:
    assert raw_ohlcv_daily.partitions_def == landing_partitions
    assert raw_ohlcv_daily.op.retry_policy == LANDING_RETRY
    store = ParquetStore(tmp_path)
    for _ in range(2):  # the second materialisation replaces the day
        result = _materialize(tmp_path, "2025-03-01")
        assert result.success
    assert len(store.read_candles("BTC/USDT", "1h")) == 24
    assert len(store.read_candles("BTC/USDT:USDT", "1h")) == 24
    assert len(store.read_funding("BTC/USDT:USDT")) == 3
    assert len(store.read_open_interest("BTC/USDT:USDT", "1h")) == 24
    meta = result.asset_materializations_for_node("raw_ohlcv_daily")[0].metadata
    assert meta["rows_written"].value == 48
    assert meta["repair_exact_duplicates_dropped"].value == 0
    assert meta["repair_missing_bars"].value == 0
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "stored_day_valid": True,
        "day_quality": True,
        "stored_funding_valid": True,
        "stored_open_interest_valid": True,
    }


def test_bad_exchange_data_fails_without_retry_and_keeps_the_store(tmp_path: Path) -> None:
    assert _materialize(tmp_path, "2025-03-01").success
    path = ParquetStore(tmp_path).candles_path("BTC/USDT", "1h")
    before = path.read_bytes()
    result = _materialize(tmp_path, "2025-03-01", negative_close_row=5)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "close > 0" in str(failure.step_failure_data.error.message)
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert path.read_bytes() == before


class DuplicatingFundingLanding(FakeLanding):
    """A store whose funding writer appends a duplicate of the first settlement (a buggy writer or
    a file altered on disk between the write and the check)."""

    def store(self) -> ParquetStore:
        import pyarrow as pa
        import pyarrow.parquet as pq

        class RawStore(ParquetStore):
            def replace_funding_range(self, df, perp_symbol, start, end):
                path = self.funding_path(perp_symbol)
                path.parent.mkdir(parents=True, exist_ok=True)
                out = df.assign(symbol=perp_symbol)[["timestamp", "symbol", "funding_rate"]]
                dup = pd.concat([out, out.iloc[[0]]], ignore_index=True)
                pq.write_table(pa.Table.from_pandas(dup, preserve_index=False), path)
                return path

        return RawStore(self.data_dir)


def test_funding_check_fails_when_the_stored_day_needed_a_read_repair(tmp_path: Path) -> None:
    """The read drops the exact duplicate (recorded in ``attrs["input_repairs"]``) instead of
    raising; the blocking check still fails on that repair, naming it."""
    result = dg.materialize(
        [raw_funding_daily],
        resources={
            "pipeline": PipelineResource(profile="tiny", symbols=["BTC/USDT"]),
            "landing": DuplicatingFundingLanding(data_dir=str(tmp_path), timeframes=["1h"]),
        },
        partition_key="2025-03-01",
        raise_on_error=False,
    )
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "stored_funding_valid" and not check.passed
    (problem,) = check.metadata["problems"].value.values()
    assert "needed repairs on read" in problem and "exact_duplicates_dropped=1" in problem
    assert not result.success  # blocking


def test_landing_resource_takes_keys_only_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRYPTOML_EXCHANGE_API_KEY", raising=False)
    monkeypatch.delenv("CRYPTOML_EXCHANGE_SECRET", raising=False)
    assert landing_resource_from_env().api_key is None
    monkeypatch.setenv("CRYPTOML_EXCHANGE_API_KEY", "from-env-key")
    monkeypatch.setenv("CRYPTOML_EXCHANGE_SECRET", "from-env-secret")
    monkeypatch.setenv("CRYPTOML_INGEST_TIMEFRAMES", "5m,1h")
    resource = landing_resource_from_env()
    assert isinstance(resource.api_key, dg.EnvVar)  # resolved by Dagster, never stored in config
    assert resource.timeframes == ["5m", "1h"]


def test_ohlcv_asset_records_repairs_and_runs_its_checks(tmp_path: Path) -> None:
    """The main pipeline's ohlcv on real data: counts in metadata, hard + soft checks, report."""
    from cryptoml_pipeline.defs.assets.ingestion import (
        funding,
        market_snapshot,
        ohlcv,
        ohlcv_hard_rules,
        ohlcv_soft_rules,
    )
    from cryptoml_pipeline.defs.assets.run_settings import run_settings
    from cryptoml_pipeline.defs.io_manager import ArtifactIOManager
    from cryptoml_pipeline.defs.resources import MarketDataResource
    from cryptoml_pipeline_tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "market").is_dir():
        pytest.skip("no shared data")
    real, store = ParquetStore(SHARED_DATA), ParquetStore(tmp_path / "data")
    start, end = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC")
    candles = real.read_candles("BTC/USDT:USDT", "1h", start, end)
    store.write_candles(candles.drop(index=[100, 101, 500]), "BTC/USDT:USDT", "1h")  # 2 gaps
    store.write_funding(real.read_funding("BTC/USDT:USDT", start, end), "BTC/USDT:USDT")
    pipeline = PipelineResource(
        profile="tiny",
        symbols=["BTC/USDT"],
        start="2024-01-01",
        end="2024-03-01",
        output_dir=str(tmp_path),
    )
    result = dg.materialize(
        [run_settings, market_snapshot, ohlcv, funding, ohlcv_hard_rules, ohlcv_soft_rules],
        resources={
            "pipeline": pipeline,
            "market": MarketDataResource(kind="parquet", data_dir=str(store.root)),
            "io_manager": ArtifactIOManager(base_dir=str(tmp_path)),
        },
    )
    assert result.success
    meta = result.asset_materializations_for_node("ohlcv")[0].metadata
    assert meta["missing_bars"].value == {"BTC/USDT": 3}
    assert meta["filled_bars"].value == 0 and meta["exact_duplicates_dropped"].value == 0
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["ohlcv_hard_rules"].passed
    soft = checks["ohlcv_soft_rules"]  # a WARN: the run still succeeded
    assert not soft.passed and soft.severity == dg.AssetCheckSeverity.WARN
    assert soft.metadata["missing_bars"].value == 3 and soft.metadata["gap_events"].value == 2
    info = result.output_for_node("market_snapshot", "dataset_info")
    assert info["data_quality"]["missing_bars"] == 3
    assert info["data_quality"]["longest_gap_bars"] == 2
