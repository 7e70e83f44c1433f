"""The decisions frame: what the simulator consumes, one row per (timestamp, symbol).

Columns: ``timestamp`` (datetime64[ns, UTC], the candle open time of the row the decision was
computed from), ``symbol`` (str), ``signal`` (int64 in -2..2), ``confidence`` (float, 0..1),
``volatility`` (float, ANNUALISED volatility of 1-bar log returns), ``atr_pct`` (float, ATR as a
fraction of price). A decision from row ``t`` is known at ``t + one bar`` and fills at that
bar's open.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.timing import bars_per_day

DECISION_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "symbol",
    "signal",
    "confidence",
    "volatility",
    "atr_pct",
)

DAYS_PER_YEAR = 365.0  # crypto trades every calendar day


def bars_per_year(timeframe: str) -> float:
    return bars_per_day(timeframe) * DAYS_PER_YEAR


def annualise_volatility(per_bar_volatility: pd.Series | np.ndarray, timeframe: str) -> np.ndarray:
    """Per-bar std of log returns -> annualised: ``x * sqrt(bars per year)`` (365-day year)."""
    return np.asarray(per_bar_volatility, dtype=np.float64) * np.sqrt(bars_per_year(timeframe))


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...] | list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what} is missing column(s) {missing}")


def validate_decisions(decisions: pd.DataFrame) -> pd.DataFrame:
    """A normalised copy: ns UTC timestamps, int64 signal (NaN -> 0), sorted by symbol, timestamp.

    Raises :class:`InputError` on missing columns, signals outside -2..2 or duplicate rows.
    """
    require_columns(decisions, DECISION_COLUMNS, "decisions")
    out = decisions.loc[:, list(DECISION_COLUMNS)].copy()
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    out["symbol"] = out["symbol"].astype(str)
    signal = pd.to_numeric(out["signal"], errors="coerce").fillna(0.0).to_numpy(np.float64)
    bad = (np.abs(signal) > 2) | (signal != np.round(signal))
    if bad.any():
        row = out.loc[bad].iloc[0]
        raise InputError(
            f"decision signal must be an integer in -2..2: {row['symbol']} at {row['timestamp']}"
        )
    out["signal"] = signal.astype(np.int64)
    for col in ("confidence", "volatility", "atr_pct"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(np.float64)
    dup = out.duplicated(["symbol", "timestamp"])
    if dup.any():
        row = out.loc[dup].iloc[0]
        raise InputError(f"duplicate decision for {row['symbol']} at {row['timestamp']}")
    return out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)


def make_decisions(
    timestamps: pd.Series,
    symbols: pd.Series,
    signal: np.ndarray | pd.Series,
    confidence: np.ndarray | pd.Series | float,
    volatility: np.ndarray | pd.Series,
    atr_pct: np.ndarray | pd.Series,
) -> pd.DataFrame:
    """Assemble and validate a decisions frame from aligned columns."""
    frame = pd.DataFrame(
        {
            "timestamp": pd.Series(timestamps).reset_index(drop=True),
            "symbol": pd.Series(symbols).reset_index(drop=True).astype(str),
            "signal": np.asarray(signal, dtype=np.float64),
            "confidence": np.broadcast_to(
                np.asarray(confidence, dtype=np.float64), len(timestamps)
            ),
            "volatility": np.asarray(volatility, dtype=np.float64),
            "atr_pct": np.asarray(atr_pct, dtype=np.float64),
        }
    )
    return validate_decisions(frame)
