"""pandera schema of the feature table: the boundary check between features and modeling.

``timestamp`` is ``datetime64[ns, UTC]``, ``symbol`` a string, every other column float64. Missing
values are allowed only as NaN (warm-up); ``+-inf`` is never allowed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa

from cryptoml_pipeline.errors import DataValidationError

__all__ = ["FEATURE_TABLE_SCHEMA", "validate_feature_table"]

_KEY_COLUMNS = ("timestamp", "symbol")


def _finite_or_nan(series: pd.Series) -> pd.Series:
    return ~np.isinf(series)


FEATURE_TABLE_SCHEMA = pa.DataFrameSchema(
    columns={
        "timestamp": pa.Column(pd.DatetimeTZDtype("ns", "UTC"), nullable=False),
        "symbol": pa.Column(str, nullable=False),
        r"^(?!(timestamp|symbol)$).+$": pa.Column(
            np.float64,
            checks=pa.Check(_finite_or_nan, error="no +-inf (missing values must be NaN)"),
            nullable=True,
            regex=True,
        ),
    },
    strict=False,
    ordered=False,
    name="feature_table",
)


def _first_failure(err: pa.errors.SchemaError) -> str:
    cases = err.failure_cases
    if isinstance(cases, pd.DataFrame) and "failure_case" in cases.columns and len(cases):
        return repr(cases["failure_case"].iloc[0])
    if isinstance(cases, pd.DataFrame | pd.Series) and len(cases):
        return repr(cases.iloc[0])
    return repr(cases)


def validate_feature_table(df: pd.DataFrame) -> pd.DataFrame:
    """Validate ``df`` against :data:`FEATURE_TABLE_SCHEMA`; return it unchanged.

    Raises :class:`DataValidationError` with one line naming the offending column.
    """
    if not isinstance(df.index, pd.RangeIndex):
        raise DataValidationError("feature table: index must be a RangeIndex")
    if list(df.columns[:2]) != list(_KEY_COLUMNS):
        raise DataValidationError(
            f"feature table: first columns must be timestamp, symbol; got {list(df.columns[:2])}"
        )
    try:
        FEATURE_TABLE_SCHEMA.validate(df, lazy=False)
    except pa.errors.SchemaError as err:
        column = getattr(err.schema, "name", None)
        reason = getattr(err.reason_code, "name", str(err.reason_code)).lower()
        detail = f"dtype {df[column].dtype}" if column in df.columns else ""
        if reason != "wrong_datatype":
            detail = f"first failure {_first_failure(err)}"
        raise DataValidationError(
            f"feature table column {column!r} failed {reason}: {detail}".replace("\n", " ")
        ) from None
    return df
