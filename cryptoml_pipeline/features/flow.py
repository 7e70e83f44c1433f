"""Funding-rate features (spec SentimentFlowFeatures ``funding_rate_zscore``), aligned causally.

A settlement stamped ``s`` is known from ``s`` on. A candle row stamped ``t`` therefore sees the
last settlement with ``s <= t`` (``merge_asof`` backward, per symbol): the rate is carried forward
from the past only, never filled backwards, and rows before a symbol's first settlement are NaN.
Carry is measured PER HOUR: ``funding_rate_per_hour`` = the settlement's rate / the hours since
the symbol's previous settlement (:func:`market.settlements.rate_per_hour`), so that a symbol
moving from 8 h to 4 h settlements at the same carry keeps the same value (the per-settlement
rate halves). A symbol's first settlement has no known interval (reading the next one would look
ahead): its value is NaN. The z-score is computed on the per-hour series itself (last ``window``
settlements, including the current one) and then as-of merged the same way.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import DataValidationError
from cryptoml_pipeline.features.technical import rolling_mean, rolling_std
from cryptoml_pipeline.market.settlements import rate_per_hour

__all__ = [
    "funding_extreme",
    "funding_feature_names",
    "funding_features",
    "funding_settlement_features",
    "liquidation_cascade_proxy",
    "open_interest_change",
]

logger = logging.getLogger(__name__)

# A window of identical rates has std 0 up to float noise (~1e-20); below this its z-score is 0.
_STD_FLOOR = 1e-12


def funding_feature_names(zscore_window: int) -> list[str]:
    return ["funding_rate_per_hour", f"funding_zscore_{zscore_window}"]


def _clean_funding(funding: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("timestamp", "symbol", "funding_rate") if c not in funding.columns]
    if missing:
        raise DataValidationError(f"funding frame lacks column(s) {missing}")
    out = pd.DataFrame(
        {
            "timestamp": funding["timestamp"].astype("datetime64[ns, UTC]").array,
            "symbol": funding["symbol"].astype(str).array,
            "funding_rate": funding["funding_rate"].to_numpy(dtype=np.float64),
        }
    )
    out = out.sort_values(["symbol", "timestamp"], kind="stable", ignore_index=True)
    dup = out.duplicated(["symbol", "timestamp"])
    if dup.any():
        row = out.loc[dup.idxmax()]
        raise DataValidationError(
            f"duplicate funding settlement for {row['symbol']} at {row['timestamp']}"
        )
    return out


def funding_settlement_features(funding: pd.DataFrame, *, zscore_window: int) -> pd.DataFrame:
    """Per settlement: ``timestamp, symbol, funding_rate, funding_rate_per_hour,
    funding_zscore_{w}``, sorted by symbol then time. z = (r - mean) / std (ddof=1) of the
    per-hour rate ``r`` over the last ``w`` settlements; NaN until ``w`` per-hour rates exist
    (the first settlement has none); 0 when the window is constant."""
    clean = _clean_funding(funding)
    zname = f"funding_zscore_{zscore_window}"
    z = np.full(len(clean), np.nan)
    bounds = np.flatnonzero(clean["symbol"].to_numpy()[1:] != clean["symbol"].to_numpy()[:-1]) + 1
    stamps = clean["timestamp"].array.as_unit("ns").asi8
    hourly = np.empty(len(clean))
    rate = clean["funding_rate"].to_numpy()
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(clean)], strict=True):
        r = rate_per_hour(stamps[lo:hi], rate[lo:hi])
        hourly[lo:hi] = r
        mean = rolling_mean(r, zscore_window).to_numpy()
        std = rolling_std(r, zscore_window, ddof=1).to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            zz = np.where(std > _STD_FLOOR, (r - mean) / std, 0.0)
        zz[np.isnan(std)] = np.nan
        z[lo:hi] = zz
    clean["funding_rate_per_hour"] = hourly
    clean[zname] = z
    return clean


def funding_features(
    timestamps: pd.Series, symbols: pd.Series, funding: pd.DataFrame, *, zscore_window: int
) -> dict[str, np.ndarray]:
    """Funding features for rows ``(timestamps[i], symbols[i])``, aligned 1:1 with the rows.

    Each row takes the last settlement of its symbol with settlement time ``<= timestamp``.
    """
    settled = funding_settlement_features(funding, zscore_window=zscore_window)
    names = funding_feature_names(zscore_window)
    n = len(timestamps)
    left = pd.DataFrame(
        {
            "timestamp": pd.Series(timestamps).astype("datetime64[ns, UTC]").array,
            "symbol": pd.Series(symbols).astype(str).array,
            "_pos": np.arange(n),
        }
    ).sort_values("timestamp", kind="stable")
    unknown = sorted(set(left["symbol"].unique()) - set(settled["symbol"].unique()))
    if unknown:
        logger.warning("no funding settlements for symbol(s) %s: funding features are NaN", unknown)
    right = settled.sort_values("timestamp", kind="stable")
    merged = pd.merge_asof(
        left,
        right,
        on="timestamp",
        by="symbol",
        direction="backward",
        allow_exact_matches=True,
    )
    pos = merged["_pos"].to_numpy()
    result: dict[str, np.ndarray] = {}
    for name in names:
        values = np.empty(n)
        values[pos] = merged[name].to_numpy(dtype=np.float64)
        result[name] = values
    return result


def funding_extreme(zscore: np.ndarray, threshold: float) -> np.ndarray:
    """Funding pressure extremes: +1 when ``z > threshold`` (longs pay heavily), -1 when
    ``z < -threshold``, else 0; NaN where the z-score is."""
    out = np.where(zscore > threshold, 1.0, np.where(zscore < -threshold, -1.0, 0.0))
    out[np.isnan(zscore)] = np.nan
    return out


def open_interest_change(open_interest: np.ndarray, horizon: int) -> np.ndarray:
    """``log(OI_t / OI_{t-h})`` of ONE symbol's as-of aligned open interest (time-ordered)."""
    out = np.full(open_interest.shape[0], np.nan)
    if open_interest.shape[0] > horizon:
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = open_interest[horizon:] / open_interest[:-horizon]
        out[horizon:] = np.where(ratio > 0, np.log(np.where(ratio > 0, ratio, 1.0)), np.nan)
    return out


def liquidation_cascade_proxy(
    ret: np.ndarray, sigma: np.ndarray, volume_z: np.ndarray, funding_z: np.ndarray, k: float
) -> np.ndarray:
    """Liquidation-cascade probability proxy (uncalibrated heuristic) of ONE symbol's bar:

    ``p = 1 / (1 + exp(-x))``, ``x = (|r| / sigma - k) + (z_vol - k) + (-sign(r) * z_f - k)``,

    where ``r`` is the bar's log return, ``sigma`` the trailing std of returns, ``z_vol`` the
    causal volume z-score and ``z_f`` the funding z-score: a large move *against* the crowded side
    (price falls while funding is high -> longs are liquidated; rises while it is low -> shorts),
    on unusual volume. Each term is 0 at the extreme threshold ``k``, so p = 0.5 when all three
    sit exactly at it. NaN where an input is NaN; a zero ``sigma`` counts as no move.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        move = np.where(sigma > 0, np.abs(ret) / sigma, 0.0)
    move[np.isnan(sigma) | np.isnan(ret)] = np.nan
    x = (move - k) + (volume_z - k) + (-np.sign(ret) * funding_z - k)
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))
