"""Every input file kind (spot and perpetual candles, funding, open interest) passes the same read
rules: each corrupted case is either one :class:`InputError` line naming the file and the problem,
or a repair that is recorded (``ParquetStore.read_repairs``, ``frame.attrs["input_repairs"]`` and,
for candles, the :class:`RepairReport` behind ``report.json -> data.quality``). Never a traceback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market.repair import INPUT_REPAIRS, repair_candles
from cryptoml_pipeline.market.source import load_market_data, resolve_window
from cryptoml_pipeline.market.store import ParquetStore

T0 = pd.Timestamp("2025-03-01", tz="UTC")
START, END = T0, T0 + pd.Timedelta(hours=48)
READ_WINDOW = (T0 - pd.Timedelta(hours=8), END)  # tz-aware bounds: the filtered read
TRADED, MEMBER = "BTC/USDT", "ETH/USDT"  # the universe member is read from its spot file


def candles(symbol: str) -> pd.DataFrame:
    ts = pd.date_range(T0, periods=48, freq="h", tz="UTC", unit="ns")
    open_ = 100.0 + np.arange(48)
    return pd.DataFrame(
        {
            "timestamp": ts,
            "open": open_,
            "high": open_ + 2.0,
            "low": open_ - 2.0,
            "close": open_ + 1.0,
            "volume": 5.0,
            "symbol": symbol,
            "timeframe": "1h",
        }
    )


def funding() -> pd.DataFrame:
    ts = pd.date_range(T0 - pd.Timedelta(hours=8), periods=7, freq="8h", tz="UTC", unit="ns")
    return pd.DataFrame(
        {"timestamp": ts, "symbol": "BTC/USDT:USDT", "funding_rate": 1e-4 * (1 + np.arange(7))}
    )


def open_interest() -> pd.DataFrame:
    ts = pd.date_range(T0, periods=48, freq="h", tz="UTC", unit="ns")
    return pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "BTC/USDT:USDT",
            "open_interest": 1000.0 + np.arange(48),
            "open_interest_value": 9e7 + np.arange(48),
        }
    )


@dataclass(frozen=True)
class Kind:
    name: str
    good: Callable[[], pd.DataFrame]
    path: Callable[[ParquetStore], Path]
    read: Callable[[ParquetStore], pd.DataFrame]
    value: str  # the numeric column the cases corrupt
    candles: bool = False


KINDS = {
    k.name: k
    for k in (
        Kind(
            "spot",
            lambda: candles(MEMBER),
            lambda s: s.candles_path(MEMBER, "1h"),
            lambda s: s.read_candles(MEMBER, "1h", *READ_WINDOW),
            "close",
            candles=True,
        ),
        Kind(
            "perp",
            lambda: candles("BTC/USDT:USDT"),
            lambda s: s.candles_path("BTC/USDT:USDT", "1h"),
            lambda s: s.read_candles("BTC/USDT:USDT", "1h", *READ_WINDOW),
            "close",
            candles=True,
        ),
        Kind(
            "funding",
            funding,
            lambda s: s.funding_path("BTC/USDT:USDT"),
            lambda s: s.read_funding("BTC/USDT:USDT", *READ_WINDOW),
            "funding_rate",
        ),
        Kind(
            "open_interest",
            open_interest,
            lambda s: s.open_interest_path("BTC/USDT:USDT", "1h"),
            lambda s: s.read_open_interest("BTC/USDT:USDT", "1h", *READ_WINDOW),
            "open_interest",
        ),
    )
}


def _set(df: pd.DataFrame, row: int, col: str, value: object) -> pd.DataFrame:
    out = df.copy()
    if not isinstance(value, float):
        out[col] = out[col].astype(object)
    out.loc[row, col] = value
    return out


def _mixed_offsets(df: pd.DataFrame) -> pd.DataFrame:
    zones = [dt.timezone(dt.timedelta(hours=1 + i % 2)) for i in range(len(df))]
    text = [t.tz_convert(z).isoformat() for t, z in zip(df["timestamp"], zones, strict=True)]
    return df.assign(timestamp=pd.Series(text, dtype="str"))


def _conflict(df: pd.DataFrame, kind: Kind) -> pd.DataFrame:
    clash = df.iloc[[2]].copy()
    clash[kind.value] = clash[kind.value] * 1.5
    return pd.concat([df, clash], ignore_index=True)


def _non_positive(df: pd.DataFrame, kind: Kind) -> pd.DataFrame:
    return _set(df, 3, kind.value, -5.0)


def _nan(df: pd.DataFrame, kind: Kind) -> pd.DataFrame:
    out = _set(df, 1, kind.value, float("nan"))
    if kind.name == "open_interest":  # one of the two values may be missing, not both
        out = _set(out, 1, "open_interest_value", float("nan"))
    return out


@dataclass(frozen=True)
class Case:
    """A corruption: ``error`` (a word the one-line message must hold) or ``repair`` (the count
    the read must record); ``skip`` names kinds the case does not apply to, and why."""

    name: str
    corrupt: Callable[[pd.DataFrame, Kind], pd.DataFrame | bytes]
    error: Callable[[Kind], str] | None = None
    repair: str | None = None
    skip: dict[str, str] | None = None


CASES = [
    Case(
        "naive_timestamps",
        lambda df, k: df.assign(timestamp=df["timestamp"].dt.tz_localize(None)),
        error=lambda k: "naive timestamps",
    ),
    Case(
        "naive_text_timestamps",
        lambda df, k: df.assign(
            timestamp=df["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S").astype("str")
        ),
        error=lambda k: "naive timestamps",
    ),
    Case(
        "europe_berlin",
        lambda df, k: df.assign(timestamp=df["timestamp"].dt.tz_convert("Europe/Berlin")),
        repair="timestamps_converted_to_utc",
    ),
    Case("mixed_offsets", lambda df, k: _mixed_offsets(df), repair="timestamps_converted_to_utc"),
    Case(
        "exact_duplicates",
        lambda df, k: pd.concat([df, df.iloc[[1, 3]]], ignore_index=True),
        repair="exact_duplicates_dropped",
    ),
    Case(
        "unsorted",
        lambda df, k: df.iloc[::-1].reset_index(drop=True),
        repair="rows_reordered",
    ),
    Case(
        "conflicting_duplicates",
        _conflict,
        error=lambda k: "conflicting duplicate",
    ),
    Case(
        "nan",
        _nan,
        error=lambda k: "present" if k.name == "open_interest" else "no NaN",
    ),
    Case(
        "non_positive",
        _non_positive,
        error=lambda k: f"{k.value} > 0" if k.candles else f"{k.value} >= 0",
        skip={"funding": "a funding rate may be negative or zero (it is checked finite)"},
    ),
    Case(
        "ohlc_violation",
        lambda df, k: _set(df, 4, "high", float(df.loc[4, "open"]) - 1.0),
        error=lambda k: "high >= max(open, close)",
        skip={
            "funding": "funding has no OHLC columns",
            "open_interest": "open interest has no OHLC columns",
        },
    ),
    Case(
        "string_in_numeric_column",
        lambda df, k: _set(df, 2, k.value, "abc").astype({k.value: "str"}),
        error=lambda k: f"non-numeric value 'abc' in column '{k.value}'",
    ),
    Case(
        "numeric_text",
        lambda df, k: df.astype({k.value: "str"}),
        repair="numeric_strings_parsed",
    ),
    Case(
        "missing_column",
        lambda df, k: df.drop(columns=[k.value]),
        error=lambda k: "lacks column(s)",
    ),
    Case("corrupt_file", lambda df, k: b"PAR1 this is not parquet", error=lambda k: "cannot read"),
]


def _write(path: Path, frame: pd.DataFrame | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(frame, bytes):
        path.write_bytes(frame)
    else:
        frame.to_parquet(path, index=False)


@pytest.fixture
def store(tmp_path: Path) -> ParquetStore:
    """Clean files of every kind: the traded BTC/USDT (perp, spot, funding, open interest) and
    the universe member ETH/USDT (spot)."""
    store = ParquetStore(tmp_path / "data")
    for kind in KINDS.values():
        _write(kind.path(store), kind.good())
    _write(store.candles_path(TRADED, "1h"), candles(TRADED))
    return store


def _load(store: ParquetStore, kind: Kind):
    """The run's path for the kinds it reads: window resolution (coverage), then the load."""
    universe = [MEMBER] if kind.name == "spot" else None
    resolve_window(store, [TRADED], "1h", START, END, 30)
    return load_market_data(store, [TRADED], "1h", START, END, universe=universe)


# every (kind, case) pair the case applies to (``Case.skip`` says why the others do not)
APPLICABLE = [
    (kind, case)
    for case in CASES
    for kind in KINDS.values()
    if not (case.skip and kind.name in case.skip)
]


@pytest.mark.parametrize(
    ("kind", "case"), APPLICABLE, ids=[f"{k.name}-{c.name}" for k, c in APPLICABLE]
)
def test_every_corrupted_case_is_one_line_or_a_recorded_repair(
    store: ParquetStore, kind: Kind, case: Case
) -> None:
    path = kind.path(store)
    clean = kind.read(store)
    _write(path, case.corrupt(kind.good(), kind))
    readers = [("store", kind.read)]
    if kind.name != "open_interest":  # the run does not load open interest through the source
        readers.append(("load_market_data", lambda s: _load(s, kind)))

    for via, read in readers:
        fresh = ParquetStore(store.root)  # each path records its own repairs
        if case.error is not None:
            with pytest.raises(InputError) as info:
                read(fresh)
            message = str(info.value)
            assert "\n" not in message, (via, message)
            assert path.name in message, (via, message)
            assert case.error(kind) in message, (via, message)
            continue
        out = read(fresh)
        counts = fresh.read_repairs[str(path)]
        assert counts[case.repair] > 0, (via, counts)
        if via == "store":
            assert out.attrs[INPUT_REPAIRS] == {str(path): counts}
            pd.testing.assert_frame_equal(out.reset_index(drop=True), clean, check_like=True)


def test_filtered_read_of_a_naive_perpetual_is_one_line_not_an_arrow_traceback(store) -> None:
    """The review finding: a naive perp file read with tz-aware bounds crashed in pyarrow."""
    path = store.candles_path("BTC/USDT:USDT", "1h")
    naive = candles("BTC/USDT:USDT")
    naive["timestamp"] = naive["timestamp"].dt.tz_localize(None)
    _write(path, naive)
    for read in (
        lambda: store.read_candles("BTC/USDT:USDT", "1h", START, END),
        lambda: store.candle_coverage("BTC/USDT:USDT", "1h"),
        lambda: store.count_rows(path, START, END),
    ):
        with pytest.raises(InputError, match=rf"{path.name}: naive timestamps"):
            read()


def test_a_read_repair_reaches_the_data_quality_counts(store) -> None:
    """Repairs of a read travel with the candles into ``repair_candles``'s report (the counts
    that ``report.json -> data.quality`` shows)."""
    path = store.candles_path("BTC/USDT:USDT", "1h")
    good = candles("BTC/USDT:USDT")
    _write(
        path,
        pd.concat([good, good.iloc[[5, 6, 7]]]).assign(
            timestamp=lambda f: f["timestamp"].dt.tz_convert("Asia/Tokyo")
        ),
    )
    data = load_market_data(store, [TRADED], "1h", START, END)
    _, report = repair_candles(data.candles, "1h", source="market data")
    quality = report.as_metadata()
    assert quality["exact_duplicates_dropped"] == 3
    assert quality["timestamps_converted_to_utc"] == 51
    assert quality["rows_in"] - quality["exact_duplicates_dropped"] == quality["rows_out"] == 48
    # a clean file records nothing
    _write(path, good)
    clean = load_market_data(store, [TRADED], "1h", START, END)
    assert not clean.candles.attrs.get(INPUT_REPAIRS)  # no file recorded (at most an empty map)
    _, report = repair_candles(clean.candles, "1h", source="market data")
    assert report.exact_duplicates_dropped == report.timestamps_converted_to_utc == 0
