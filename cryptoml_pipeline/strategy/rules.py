"""The traditional rule strategy (RSI / CCI / WaveTrend): a baseline and the integrator's input.

Long (+1) when ``rsi_{p} < oversold`` AND ``cci_{q} < cci_low`` AND ``wt_cross == +1`` (WaveTrend
line 1 crosses above line 2 on this row); short (-1) on the mirror image (``rsi > overbought``,
``cci > cci_high``, ``wt_cross == -1``); else 0. NaN indicators (warm-up) give 0. Every input is a
causal feature of row ``t``, so the signal is known at ``t + one bar`` and fills at that bar's open.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.execution.decisions import (
    annualise_volatility,
    make_decisions,
    require_columns,
)
from cryptoml_pipeline.settings import RuleStrategyConfig


def rule_signals(features: pd.DataFrame, config: RuleStrategyConfig) -> pd.Series:
    """int64 -1/0/+1 per row of ``features`` (same index), named ``rule_signal``."""
    rsi_col, cci_col = f"rsi_{config.rsi_period}", f"cci_{config.cci_period}"
    require_columns(features, [rsi_col, cci_col, "wt_cross"], "features")
    rsi = features[rsi_col].to_numpy(np.float64)
    cci = features[cci_col].to_numpy(np.float64)
    cross = features["wt_cross"].to_numpy(np.float64)
    with np.errstate(invalid="ignore"):
        long = (rsi < config.rsi_oversold) & (cci < config.cci_low) & (cross == 1.0)
        short = (rsi > config.rsi_overbought) & (cci > config.cci_high) & (cross == -1.0)
    signal = long.astype(np.int64) - short.astype(np.int64)
    return pd.Series(signal, index=features.index, name="rule_signal")


def rule_decisions(
    features: pd.DataFrame,
    config: RuleStrategyConfig,
    *,
    timeframe: str | None = None,
    vol_col: str = "rv_168",
    atr_col: str = "atr_pct_14",
) -> pd.DataFrame:
    """Decisions frame of the rule strategy: signal = rule * ``signal_strength``,
    confidence = ``config.confidence``, volatility = ``vol_col`` annualised, atr_pct = ``atr_col``.

    ``timeframe`` (for the annualisation) defaults to the bar spacing of the feature rows: the most
    common step between consecutive timestamps of a symbol. Pass it explicitly when you know it.
    """
    require_columns(features, ["timestamp", "symbol", vol_col, atr_col], "features")
    if timeframe is None:
        timeframe = infer_timeframe(features)
    signal = rule_signals(features, config).to_numpy() * config.signal_strength
    return make_decisions(
        features["timestamp"],
        features["symbol"],
        np.clip(signal, -2, 2),
        float(config.confidence),
        annualise_volatility(features[vol_col], timeframe),
        features[atr_col].to_numpy(np.float64),
    )


def infer_timeframe(features: pd.DataFrame) -> str:
    """The most common step between consecutive timestamps within a symbol, as ``"<n>m"``."""
    ts = pd.to_datetime(features["timestamp"], utc=True)
    frame = pd.DataFrame({"symbol": features["symbol"].to_numpy(), "timestamp": ts.to_numpy()})
    frame = frame.sort_values(["symbol", "timestamp"], kind="stable")
    steps = frame.groupby("symbol", sort=False)["timestamp"].diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]
    if steps.empty:
        raise InputError("cannot infer the timeframe from the features: pass timeframe=")
    minutes = steps.mode().iloc[0] / pd.Timedelta(minutes=1)
    if minutes != int(minutes):
        raise InputError(f"feature rows are {minutes} minutes apart: pass timeframe=")
    return f"{int(minutes)}m"
