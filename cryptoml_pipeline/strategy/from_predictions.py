"""Prediction engine glue: out-of-sample predictions -> the simulator's decisions frame."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.execution.decisions import (
    annualise_volatility,
    make_decisions,
    require_columns,
)
from cryptoml_pipeline.modeling.predictions import PROB_COLUMNS, expected_move

logger = logging.getLogger(__name__)


def _utc_ns(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True).astype("datetime64[ns, UTC]")


def decisions_from_predictions(
    predictions: pd.DataFrame,
    features: pd.DataFrame,
    *,
    timeframe: str,
    vol_col: str = "rv_168",
    atr_col: str = "atr_pct_14",
    returns_by_class: np.ndarray | None = None,
) -> pd.DataFrame:
    """Join OOS predictions (timestamp, symbol, signal, confidence) with the feature row of the
    same (timestamp, symbol): volatility = ``vol_col`` annualised, atr_pct = ``atr_col``.

    With ``returns_by_class`` (see :func:`signals.class_returns`) and the five probability
    columns present, each decision also carries ``expected_return`` (the simulator's cost filter).

    A prediction without a feature row gets NaN volatility/atr (the simulator never enters on it).
    Raises :class:`InputError` on missing columns or duplicate (timestamp, symbol) rows.
    """
    require_columns(predictions, ["timestamp", "symbol", "signal", "confidence"], "predictions")
    require_columns(features, ["timestamp", "symbol", vol_col, atr_col], "features")
    preds = predictions.loc[:, ["timestamp", "symbol", "signal", "confidence"]].copy()
    expected = None
    if "expected_return" in predictions.columns:
        # the prediction schema: every model's own expected return over the horizon
        expected = predictions["expected_return"].to_numpy(np.float64)
    elif returns_by_class is not None and all(c in predictions.columns for c in PROB_COLUMNS):
        expected = expected_move(predictions[PROB_COLUMNS].to_numpy(np.float64), returns_by_class)
    preds["expected_return"] = np.nan if expected is None else expected
    feats = features.loc[:, ["timestamp", "symbol", vol_col, atr_col]].copy()
    for frame, what in ((preds, "predictions"), (feats, "features")):
        frame["timestamp"] = _utc_ns(frame["timestamp"])
        frame["symbol"] = frame["symbol"].astype(str)
        dup = frame.duplicated(["timestamp", "symbol"])
        if dup.any():
            row = frame.loc[dup].iloc[0]
            raise InputError(f"duplicate {what} row for {row['symbol']} at {row['timestamp']}")
    merged = preds.merge(feats, on=["timestamp", "symbol"], how="left", validate="one_to_one")
    unmatched = int(merged[vol_col].isna().sum())
    if unmatched:
        logger.info(
            "%d prediction rows have no volatility (warm-up or missing feature row)", unmatched
        )
    return make_decisions(
        merged["timestamp"],
        merged["symbol"],
        merged["signal"].to_numpy(np.float64),
        merged["confidence"].to_numpy(np.float64),
        annualise_volatility(merged[vol_col], timeframe),
        merged[atr_col].to_numpy(np.float64),
        merged["expected_return"].to_numpy(np.float64) if expected is not None else None,
    )
