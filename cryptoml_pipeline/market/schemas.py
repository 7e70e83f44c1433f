"""pandera schemas of the long candles, funding and open-interest frames, and their one-line
validators.

``validate_candles`` / ``validate_funding`` / ``validate_open_interest`` normalise the timestamp
column to ``datetime64[ns, UTC]`` (naive timestamps are an error, never silently localised), run
the schema lazily and turn any failure into a :class:`DataValidationError` whose one-line message
names the source, the failing check and the first offending timestamp.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from cryptoml_pipeline.errors import DataValidationError
from cryptoml_pipeline.timing import timeframe_to_timedelta

TS_DTYPE = pd.DatetimeTZDtype("ns", "UTC")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
CANDLE_COLUMNS: tuple[str, ...] = ("timestamp", "symbol", *PRICE_COLUMNS, "volume")
FUNDING_COLUMNS: tuple[str, ...] = ("timestamp", "symbol", "funding_rate")
OPEN_INTEREST_VALUES: tuple[str, ...] = ("open_interest", "open_interest_value")
OPEN_INTEREST_COLUMNS: tuple[str, ...] = ("timestamp", "symbol", *OPEN_INTEREST_VALUES)


def _finite(s: pd.Series) -> pd.Series:
    return pd.Series(np.isfinite(s.to_numpy(dtype="float64", na_value=np.nan)), index=s.index)


def _sorted_within_symbol(df: pd.DataFrame) -> pd.Series:
    """Element-wise: True where the row's timestamp is later than the previous row of its symbol."""
    step = df.groupby("symbol", sort=False)["timestamp"].diff()
    return step.isna() | (step > pd.Timedelta(0))


def _high_ok(df: pd.DataFrame) -> pd.Series:
    return df["high"] >= np.maximum(df["open"], df["close"])


def _low_ok(df: pd.DataFrame) -> pd.Series:
    return df["low"] <= np.minimum(df["open"], df["close"])


def _finite_check(name: str) -> pa.Check:
    return pa.Check(_finite, name=f"{name}_finite", error=f"{name} is finite")


def _price(name: str) -> pa.Column:
    return pa.Column(
        "float64",
        checks=[pa.Check.gt(0, error=f"{name} > 0"), _finite_check(name)],
        nullable=False,
    )


_TIMESTAMP = pa.Column(TS_DTYPE, nullable=False)
_SYMBOL = pa.Column(
    str,
    checks=pa.Check(lambda s: s.str.len() > 0, name="symbol_nonempty", error="symbol is not empty"),
    nullable=False,
)
_SORTED = pa.Check(
    _sorted_within_symbol,
    name="sorted_by_timestamp",
    error="timestamps strictly increasing within each symbol (sorted, no duplicates)",
)

CANDLES_SCHEMA = pa.DataFrameSchema(
    {
        "timestamp": _TIMESTAMP,
        "symbol": _SYMBOL,
        **{name: _price(name) for name in PRICE_COLUMNS},
        "volume": pa.Column(
            "float64",
            checks=[pa.Check.ge(0, error="volume >= 0"), _finite_check("volume")],
            nullable=False,
        ),
    },
    checks=[
        pa.Check(_high_ok, name="high_ge_open_close", error="high >= max(open, close)"),
        pa.Check(_low_ok, name="low_le_open_close", error="low <= min(open, close)"),
        _SORTED,
    ],
    unique=["symbol", "timestamp"],
    strict=False,
    name="candles",
)

FUNDING_SCHEMA = pa.DataFrameSchema(
    {
        "timestamp": _TIMESTAMP,
        "symbol": _SYMBOL,
        "funding_rate": pa.Column("float64", checks=_finite_check("funding_rate"), nullable=False),
    },
    checks=[_SORTED],
    unique=["symbol", "timestamp"],
    strict=False,
    name="funding",
)


def _open_interest_value(name: str) -> pa.Column:
    # nullable: an exchange may report only the base amount or only the quote value (at least one
    # of the two is required per row, see _OI_PRESENT); a value that is there is finite and >= 0
    return pa.Column(
        "float64",
        checks=[pa.Check.ge(0, error=f"{name} >= 0"), _finite_check(name)],
        nullable=True,
    )


_OI_PRESENT = pa.Check(
    lambda df: df["open_interest"].notna() | df["open_interest_value"].notna(),
    name="open_interest_present",
    error="open_interest or open_interest_value present",
)

OPEN_INTEREST_SCHEMA = pa.DataFrameSchema(
    {
        "timestamp": _TIMESTAMP,
        "symbol": _SYMBOL,
        **{name: _open_interest_value(name) for name in OPEN_INTEREST_VALUES},
    },
    checks=[_OI_PRESENT, _SORTED],
    unique=["symbol", "timestamp"],
    strict=False,
    name="open_interest",
)


def validate_candles(df: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Validated copy of a long candles frame (timestamps normalised to ns UTC)."""
    return _validate(df, CANDLES_SCHEMA, CANDLE_COLUMNS, "candles", source)


def validate_funding(df: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Validated copy of a long funding frame (timestamps normalised to ns UTC)."""
    return _validate(df, FUNDING_SCHEMA, FUNDING_COLUMNS, "funding", source)


def validate_open_interest(df: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Validated copy of a long open-interest frame (timestamps normalised to ns UTC): unique and
    strictly increasing per symbol, values finite and >= 0 (one of the two may be missing)."""
    return _validate(df, OPEN_INTEREST_SCHEMA, OPEN_INTEREST_COLUMNS, "open interest", source)


def off_grid(timestamps: pd.Series, timeframe: str) -> pd.Series:
    """True where a timestamp is not a multiple of the bar since the epoch (00:00 UTC anchored;
    weekly bars are anchored on Mondays, as exchanges do)."""
    bar = timeframe_to_timedelta(timeframe).value
    anchor = pd.Timestamp("1970-01-05", tz="UTC") if timeframe.endswith("w") else _EPOCH
    stamps = timestamps.dt.tz_convert("UTC").astype(TS_DTYPE).array.asi8
    bad = ((stamps - anchor.value) % bar != 0) | (stamps == np.iinfo(np.int64).min)  # NaT: off
    return pd.Series(bad, index=timestamps.index)


def validate_grid(df: pd.DataFrame, timeframe: str, *, source: str) -> None:
    """One-line :class:`DataValidationError` when an open time is off the timeframe's grid."""
    bad = off_grid(df["timestamp"], timeframe)
    if bad.any():
        first = df.loc[bad].iloc[0]
        raise DataValidationError(
            f"{source}: candles fail check 'timestamps on the {timeframe} grid' "
            f"({int(bad.sum())} rows), first {first['symbol']} at {first['timestamp']}"
        )


_EPOCH = pd.Timestamp(0, tz="UTC")


_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu", "Etc/Zulu", "+00:00"})
_OFFSET_SUFFIX = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_UTC_SUFFIX = r"(?:[Zz]|[+-]00(?::?00)?)$"
_NAIVE = "naive timestamps (no timezone) in column 'timestamp'"


def _is_utc(dtype: pd.DatetimeTZDtype) -> bool:
    return str(dtype.tz) in _UTC_NAMES


def utc_timestamps(values: pd.Series, *, source: str) -> tuple[pd.Series, int]:
    """``(datetime64[ns, UTC] timestamps, rows converted to UTC)``: one rule for every input.

    * tz-aware UTC: kept (0 converted);
    * tz-aware in another zone (``Europe/Berlin``, ``+02:00``): every instant is exact, so the
      column is converted to UTC and all its rows count as converted;
    * text (or ``datetime`` objects) with UTC offsets, even mixed ones (``...+01:00``,
      ``...+02:00``): parsed and converted to UTC; rows whose offset was not zero count;
    * naive (datetime without zone, or text without an offset), anywhere in the column: a
      :class:`DataValidationError` — a naive time is never guessed to be UTC;
    * anything else (numbers, unparsable text): a :class:`DataValidationError`.
    """
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        converted = 0 if _is_utc(dtype) else len(values)
        return values.dt.tz_convert("UTC").astype(TS_DTYPE), converted
    if pd.api.types.is_datetime64_dtype(dtype):
        raise DataValidationError(f"{source}: {_NAIVE}; market data must be tz-aware UTC")
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return _parse_zoned(values, source=source)
    raise DataValidationError(f"{source}: column 'timestamp' is not datetime ({dtype})")


def _parse_zoned(values: pd.Series, *, source: str) -> tuple[pd.Series, int]:
    """UTC timestamps of text / ``datetime`` objects that each carry a zone (naive ones raise)
    and the number of rows whose offset was not already zero."""
    if pd.api.types.is_string_dtype(values):  # text: vectorised suffix checks
        text = values.astype("str")
        aware = text.str.contains(_OFFSET_SUFFIX, regex=True) | values.isna()
        at_utc = text.str.contains(_UTC_SUFFIX, regex=True) | values.isna()
    else:  # datetime objects (or a mixture): a rare, already broken column
        kinds = values.map(lambda v: isinstance(v, str | dt.datetime), na_action="ignore")
        if not kinds.fillna(True).astype(bool).all():
            first = values[~kinds.fillna(True).astype(bool)].iloc[0]
            raise DataValidationError(
                f"{source}: column 'timestamp' is not datetime (object value {first!r})"
            )
        offsets = values.map(_utcoffset, na_action="ignore")
        aware = offsets.notna() | values.isna()
        at_utc = offsets.eq(dt.timedelta(0)) | values.isna()
    if not aware.all():
        first = values[~aware].iloc[0]
        raise DataValidationError(
            f"{source}: {_NAIVE} ({int((~aware).sum())} rows, first {first!s}); "
            "market data must be tz-aware UTC"
        )
    try:
        parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    except (TypeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataValidationError(
            f"{source}: column 'timestamp' is not datetime ({values.dtype}): {reason}"
        ) from None
    return parsed.astype(TS_DTYPE), int((~at_utc).sum())


def _utcoffset(value: str | dt.datetime) -> dt.timedelta | None:
    if isinstance(value, str):
        try:
            value = pd.Timestamp(value)
        except ValueError:
            return dt.timedelta(0)  # unparsable: left to pd.to_datetime, which names it
    return value.utcoffset()


def normalise_timestamps(values: pd.Series, *, source: str) -> pd.Series:
    """``datetime64[ns, UTC]`` timestamps by the rules of :func:`utc_timestamps`."""
    return utc_timestamps(values, source=source)[0]


def numeric_values(df: pd.DataFrame, col: str, *, source: str) -> tuple[pd.Series, int]:
    """``(float64 column, values parsed from text)``: numbers stay numbers, numeric text
    (``"12.5"``) is parsed and counted, any other text (``"abc"``, ``"12,5"``) is a
    :class:`DataValidationError` naming the column, the symbol and the timestamp."""
    values = df[col]
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataValidationError(f"{source}: column '{col}' holds booleans, not numbers")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype("float64"), 0
    parsed = pd.to_numeric(values, errors="coerce")
    bad = parsed.isna() & values.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        where = f"{df['symbol'].iloc[i]} at " if "symbol" in df.columns else ""
        raise DataValidationError(
            f"{source}: non-numeric value {values.iloc[i]!r} in column '{col}' "
            f"({where}{df['timestamp'].iloc[i]}; {int(bad.sum())} such rows)"
        )
    return parsed.astype("float64"), int(values.notna().sum())


def _validate(
    df: pd.DataFrame,
    schema: pa.DataFrameSchema,
    columns: tuple[str, ...],
    kind: str,
    source: str,
) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataValidationError(f"{source}: {kind} frame lacks column(s) {missing}")
    out = df.reset_index(drop=True)  # failure indices are then row positions
    out["timestamp"] = normalise_timestamps(out["timestamp"], source=source)
    out["symbol"] = out["symbol"].astype("str")
    for col in columns[2:]:
        if pd.api.types.is_integer_dtype(out[col].dtype):
            out[col] = out[col].astype("float64")
    try:
        validated = schema.validate(out, lazy=True)
    except SchemaErrors as exc:
        raise DataValidationError(_one_line(exc, out, kind, source)) from None
    validated.index = df.index
    return validated


_CHECK_LABELS = {
    "not_nullable": "no NaN/missing values",
    "multiple_fields_uniqueness": "(symbol, timestamp) unique",
    "column_in_dataframe": "column present",
}


def _one_line(exc: SchemaErrors, df: pd.DataFrame, kind: str, source: str) -> str:
    """``source: candles fail check 'X' (n rows), first at <timestamp>[; also fails: ...]``."""
    cases = exc.failure_cases
    frame_level = cases["schema_context"] == "DataFrameSchema"
    column = cases["column"].where(~frame_level, "").fillna("").astype(str)
    positions = pd.to_numeric(cases["index"], errors="coerce")
    described: list[tuple[float, int, str]] = []
    for (col, check), idx in cases.groupby(
        [column, cases["check"].astype(str)], sort=False
    ).groups.items():
        label = _CHECK_LABELS.get(check, check)
        label = f"'{label}' in column '{col}'" if col else f"'{label}'"
        rows = positions.loc[idx].dropna().astype(int).unique()
        if len(rows) == 0:
            preview = ", ".join(str(v) for v in cases.loc[idx, "failure_case"].head(3))
            described.append((-1.0, 0, f"{label} ({preview})"))
            continue
        first = int(rows.min())
        when = df["timestamp"].iloc[first]
        n_rows = f"{len(rows)} row{'s' if len(rows) > 1 else ''}"
        described.append((float(first), 0 if col else 1, f"{label} ({n_rows}), first at {when}"))
    described.sort(key=lambda item: item[:2])
    head, *rest = [item[2] for item in described]
    also = f"; also fails {'; '.join(rest)}" if rest else ""
    return f"{source}: {kind} fail check {head}{also}".replace("\n", " ")
