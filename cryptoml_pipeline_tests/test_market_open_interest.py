"""Open interest: the pandera schema of stored rows, and the blocking check of its landing asset.

The open-interest fixture follows Binance's wire format but its VALUES ARE MADE UP (its
``_comment`` says so): these tests check validation and plumbing, never market facts.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cryptoml_pipeline.defs.assets.landing import LandingResource, raw_open_interest_daily
from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.errors import DataValidationError
from cryptoml_pipeline.market import OPEN_INTEREST_COLUMNS, ParquetStore, validate_open_interest
from cryptoml_pipeline.market.ingest import land_open_interest_day
from cryptoml_pipeline.market.open_interest import fetch_open_interest_history
from cryptoml_pipeline.settings import IngestConfig
from cryptoml_pipeline_tests.fixtures.market.wire import (
    OPEN_INTEREST,
    default_routes,
    fake_binance,
    reply,
)

PERP, DAY = "BTC/USDT:USDT", "2025-03-01"
CONFIG = IngestConfig(symbols=("BTC/USDT",), timeframes=("1h",))
START, END = pd.Timestamp(DAY, tz="UTC"), pd.Timestamp("2025-03-02", tz="UTC")
WIRE = reply("binance_open_interest_btcusdt.json")


def _fixture_frame() -> pd.DataFrame:
    """The fixture's rows of DAY as a stored-format frame (made-up values)."""
    rows = [r for r in WIRE if START.value // 10**6 <= r["timestamp"] < END.value // 10**6]
    return pd.DataFrame(
        {
            "timestamp": pd.to_datetime([r["timestamp"] for r in rows], unit="ms", utc=True),
            "symbol": PERP,
            "open_interest": [float(r["sumOpenInterest"]) for r in rows],
            "open_interest_value": [float(r["sumOpenInterestValue"]) for r in rows],
        }
    )


def _corrupt_routes(row: int, field: str, value: str) -> dict:
    routes = default_routes()
    rows = [dict(r) for r in routes[(OPEN_INTEREST, "")]]
    rows[row][field] = value
    routes[(OPEN_INTEREST, "")] = rows
    return routes


# --- the schema ------------------------------------------------------------------------------
def test_fixture_rows_validate_as_ns_utc() -> None:
    frame = _fixture_frame()
    assert len(frame) == 24
    out = validate_open_interest(frame, source="fixture")
    assert list(out.columns) == list(OPEN_INTEREST_COLUMNS)
    assert str(out["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert out["open_interest"].iloc[0] == 80000.0


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (
            lambda f: f.assign(open_interest=f["open_interest"].mask(f.index == 3, -1.0)),
            "'open_interest >= 0' in column 'open_interest' (1 row), first at 2025-03-01 03:00",
        ),
        (
            lambda f: f.assign(
                open_interest_value=f["open_interest_value"].mask(f.index == 5, np.inf)
            ),
            "'open_interest_value is finite' in column 'open_interest_value' (1 row), "
            "first at 2025-03-01 05:00",
        ),
        (
            lambda f: pd.concat([f, f.iloc[[7]]]).sort_values("timestamp", kind="stable"),
            "(symbol, timestamp) unique",
        ),
        (lambda f: f.iloc[::-1], "timestamps strictly increasing within each symbol"),
        (
            lambda f: f.assign(open_interest=np.nan, open_interest_value=np.nan),
            "open_interest or open_interest_value present",
        ),
    ],
    ids=["negative", "infinite", "duplicate", "unsorted", "no-value"],
)
def test_schema_rejects_corrupted_rows_in_one_line(corrupt, expected: str) -> None:
    with pytest.raises(DataValidationError, match="open interest fail check") as info:
        validate_open_interest(corrupt(_fixture_frame()), source="oi.parquet")
    message = str(info.value)
    assert expected in message and message.startswith("oi.parquet: ") and "\n" not in message


def test_schema_rejects_naive_timestamps_and_allows_one_missing_value() -> None:
    frame = _fixture_frame()
    with pytest.raises(DataValidationError, match="naive timestamps"):
        validate_open_interest(
            frame.assign(timestamp=frame["timestamp"].dt.tz_localize(None)), source="x"
        )
    # an exchange that reports only the base amount: the quote value may be missing
    only_amount = frame.assign(open_interest_value=np.nan)
    assert validate_open_interest(only_amount, source="x")["open_interest_value"].isna().all()


# --- fetching / landing a corrupted reply ----------------------------------------------------
def test_corrupted_reply_fails_before_anything_is_stored(tmp_path: Path) -> None:
    routes = _corrupt_routes(2, "sumOpenInterest", "-80020.00000000")
    exchange, _ = fake_binance(routes)
    with pytest.raises(DataValidationError) as info:
        fetch_open_interest_history(exchange, PERP, "1h", START, END)
    assert str(info.value).startswith("binance BTC/USDT:USDT open interest: open interest fail")
    assert "first at 2025-03-01 02:00:00+00:00" in str(info.value)
    store = ParquetStore(tmp_path)
    land_open_interest_day(store, fake_binance()[0], DAY, CONFIG)  # a good day first
    path = store.open_interest_path(PERP, "1h")
    before = path.read_bytes()
    with pytest.raises(DataValidationError):
        land_open_interest_day(store, fake_binance(routes)[0], DAY, CONFIG)
    assert path.read_bytes() == before  # the stored day is untouched


def test_store_rejects_bad_rows_on_write_and_on_read(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    bad = _fixture_frame().assign(open_interest=-1.0)
    with pytest.raises(DataValidationError, match="new BTC/USDT:USDT open interest"):
        store.replace_open_interest_range(bad, PERP, "1h", START, END)
    assert not store.open_interest_path(PERP, "1h").exists()
    # a file corrupted outside the store's writer is caught when it is read back
    path = store.open_interest_path(PERP, "1h")
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), path)
    with pytest.raises(DataValidationError, match=f"{path}: open interest fail check"):
        store.read_open_interest(PERP, "1h")


# --- the Dagster asset and its blocking check --------------------------------------------------
class OILanding(LandingResource):
    """Real ccxt.binance over the fake HTTP session; optionally one corrupted reply field."""

    corrupt: str = ""  # JSON [row, field, value]

    def client(self):
        routes = _corrupt_routes(*json.loads(self.corrupt)) if self.corrupt else None
        return fake_binance(routes)[0]


class UnvalidatedWriteLanding(OILanding):
    """A store whose open-interest writer skips validation, standing in for a buggy writer or a
    file altered on disk between the write and the check."""

    def store(self) -> ParquetStore:
        class RawStore(ParquetStore):
            def replace_open_interest_range(self, df, perp_symbol, period, start, end):
                path = self.open_interest_path(perp_symbol, period)
                path.parent.mkdir(parents=True, exist_ok=True)
                dup = pd.concat([df, df.iloc[[0]]], ignore_index=True)  # a duplicated row
                pq.write_table(pa.Table.from_pandas(dup, preserve_index=False), path)
                return path

        return RawStore(self.data_dir)


def _materialize(landing: LandingResource) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_open_interest_daily],
        resources={
            "pipeline": PipelineResource(profile="tiny", symbols=["BTC/USDT"]),
            "landing": landing,
        },
        partition_key=DAY,
        raise_on_error=False,
    )


def test_asset_check_passes_on_the_fixture(tmp_path: Path) -> None:
    result = _materialize(OILanding(data_dir=str(tmp_path), timeframes=["1h"]))
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "stored_open_interest_valid" and check.passed
    assert check.metadata["series_checked"].value == 1
    meta = result.asset_materializations_for_node("raw_open_interest_daily")[0].metadata
    assert meta["status"].value == "ok" and meta["rows_written"].value == 24


def test_asset_fails_on_a_corrupted_reply_without_retry(tmp_path: Path) -> None:
    assert _materialize(OILanding(data_dir=str(tmp_path), timeframes=["1h"])).success
    path = ParquetStore(tmp_path).open_interest_path(PERP, "1h")
    before = path.read_bytes()
    corrupt = json.dumps([4, "sumOpenInterestValue", "-1"])
    result = _materialize(OILanding(data_dir=str(tmp_path), timeframes=["1h"], corrupt=corrupt))
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "open_interest_value >= 0" in str(failure.step_failure_data.error.message)
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    assert path.read_bytes() == before


def test_blocking_check_fails_when_the_stored_day_is_invalid(tmp_path: Path) -> None:
    result = _materialize(UnvalidatedWriteLanding(data_dir=str(tmp_path), timeframes=["1h"]))
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "stored_open_interest_valid" and not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    problem = check.metadata["problems"].value["BTC/USDT:USDT open interest 1h"]
    # the read drops the exact duplicate (and records it); the check fails on that repair
    assert "needed repairs on read" in problem and "exact_duplicates_dropped=1" in problem
    assert not result.success  # blocking: the run fails, downstream would not run
