"""``compute_features``: the causal feature table of long candles (+ funding).

Per symbol (rows ordered by time) the technical block is computed, then written back to the
input row positions, so the result has one row per input row in the INPUT order. Column names
carry their parameters from :class:`FeatureConfig`. With the default config::

    ret_1, ret_4, ret_24, rv_24, rv_168, rsi_14, cci_20, wt1, wt2, wt_cross, atr_pct_14,
    hour_sin, hour_cos, dow_sin, dow_cos, session_asian, session_european, session_us,
    funding_rate, funding_zscore_90          (the last two only when funding is given)

``rsi/cci/wt*`` (the spec's "existing features") are present when ``use_existing_features``;
the temporal block when ``temporal_enabled``; the funding block when funding is given and
``funding_enabled``. Rows are stamped with the candle's open time; row ``t`` uses candles up to
and including ``t`` and funding settlements stamped ``<= t``.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features import technical as ta
from cryptoml_pipeline.features.flow import funding_feature_names, funding_features
from cryptoml_pipeline.features.temporal import SESSION_NAMES, temporal_features
from cryptoml_pipeline.settings import FeatureConfig
from cryptoml_pipeline.timing import timeframe_to_timedelta

__all__ = [
    "KEY_COLUMNS",
    "compute_features",
    "feature_columns",
    "feature_names",
    "technical_features",
    "warmup_bars",
]

logger = logging.getLogger(__name__)

KEY_COLUMNS: tuple[str, ...] = ("timestamp", "symbol")
_CANDLE_COLUMNS = ("timestamp", "symbol", "high", "low", "close")


def feature_names(config: FeatureConfig, *, with_funding: bool) -> list[str]:
    """The feature columns ``compute_features`` produces for ``config``, in order."""
    names = [f"ret_{h}" for h in config.return_horizons]
    names += [f"rv_{w}" for w in config.volatility_windows]
    if config.use_existing_features:
        names += [f"rsi_{config.rsi_period}", f"cci_{config.cci_period}", "wt1", "wt2", "wt_cross"]
    names.append(f"atr_pct_{config.atr_period}")
    if config.temporal_enabled:
        names += ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]
        names += [f"session_{s}" for s in SESSION_NAMES]
    if with_funding and config.funding_enabled:
        names += funding_feature_names(config.funding_zscore_window)
    return names


def warmup_bars(config: FeatureConfig) -> int:
    """Rows of a symbol's history before every candle-based feature is defined (the longest
    lookback): row index ``warmup_bars(config)`` (0-based) is the first fully valid row.

    Funding z-scores need ``funding_zscore_window`` settlements instead; not counted here.
    """
    lookbacks = [max(config.return_horizons, default=0), max(config.volatility_windows, default=0)]
    lookbacks.append(config.atr_period - 1)
    if config.use_existing_features:
        wt2_first = 2 * config.wavetrend_channel + config.wavetrend_average - 3
        wt2_first += config.wavetrend_signal - 1
        lookbacks += [config.rsi_period, config.cci_period - 1, wt2_first + 1]  # +1: wt_cross
    return int(max(lookbacks))


def technical_features(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, config: FeatureConfig
) -> dict[str, np.ndarray]:
    """The candle-based block of ONE symbol's time-ordered arrays."""
    out: dict[str, np.ndarray] = {}
    for h in config.return_horizons:
        out[f"ret_{h}"] = ta.log_returns(close, h).to_numpy()
    for w in config.volatility_windows:
        out[f"rv_{w}"] = ta.rolling_volatility(close, w).to_numpy()
    if config.use_existing_features:
        out[f"rsi_{config.rsi_period}"] = ta.rsi(close, config.rsi_period).to_numpy()
        out[f"cci_{config.cci_period}"] = ta.cci(high, low, close, config.cci_period).to_numpy()
        wt1, wt2 = ta.wavetrend(
            high,
            low,
            close,
            channel=config.wavetrend_channel,
            average=config.wavetrend_average,
            signal=config.wavetrend_signal,
        )
        out["wt1"] = wt1.to_numpy()
        out["wt2"] = wt2.to_numpy()
        out["wt_cross"] = ta.wavetrend_cross(wt1, wt2).to_numpy()
    atr = ta.atr(high, low, close, config.atr_period).to_numpy()
    out[f"atr_pct_{config.atr_period}"] = atr / close
    return out


def _symbol_groups(symbol_codes: np.ndarray, ts_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order sorted by (symbol, time) and the group boundaries in that order."""
    order = np.lexsort((ts_ns, symbol_codes))
    codes_sorted = symbol_codes[order]
    bounds = np.flatnonzero(codes_sorted[1:] != codes_sorted[:-1]) + 1
    return order, np.r_[0, bounds, len(order)]


def compute_features(
    candles: pd.DataFrame,
    funding: pd.DataFrame | None = None,
    config: FeatureConfig | None = None,
    timeframe: str = "1h",
) -> pd.DataFrame:
    """Causal feature table: RangeIndex, ``timestamp``, ``symbol``, then float64 features only,
    one row per input row in input order; NaN during warm-up.

    Raises :class:`InputError` on missing columns, unknown timeframe or duplicate
    ``(symbol, timestamp)`` rows.
    """
    config = config or FeatureConfig()
    missing = [c for c in _CANDLE_COLUMNS if c not in candles.columns]
    if missing:
        raise InputError(f"compute_features: candles lack column(s) {missing}")
    try:
        timeframe_to_timedelta(timeframe)
    except ValueError as err:
        raise InputError(str(err)) from None
    n = len(candles)
    timestamps = candles["timestamp"].astype("datetime64[ns, UTC]").reset_index(drop=True)
    symbols = candles["symbol"].astype(str).reset_index(drop=True)
    with_funding = funding is not None and config.funding_enabled
    names = feature_names(config, with_funding=with_funding)
    columns: dict[str, np.ndarray] = {name: np.full(n, np.nan) for name in names}

    codes, uniques = pd.factorize(symbols)
    ts_ns = timestamps.array.asi8
    order, bounds = _symbol_groups(codes, ts_ns)
    ts_sorted = ts_ns[order]
    dup = (codes[order][1:] == codes[order][:-1]) & (ts_sorted[1:] == ts_sorted[:-1])
    if dup.any():
        row = int(order[np.flatnonzero(dup)[0]])
        raise InputError(
            f"compute_features: duplicate candle for {symbols.iloc[row]} at {timestamps.iloc[row]}"
        )
    high = candles["high"].to_numpy(dtype=np.float64)
    low = candles["low"].to_numpy(dtype=np.float64)
    close = candles["close"].to_numpy(dtype=np.float64)
    for lo, hi in itertools.pairwise(bounds):
        rows = order[lo:hi]
        block = technical_features(high[rows], low[rows], close[rows], config)
        for name, values in block.items():
            columns[name][rows] = values
    if config.temporal_enabled:
        columns.update(temporal_features(timestamps, config))
    if funding is not None and config.funding_enabled:
        columns.update(
            funding_features(
                timestamps, symbols, funding, zscore_window=config.funding_zscore_window
            )
        )
    logger.debug("computed %d features for %d rows of %d symbols", len(names), n, len(uniques))
    frame = pd.DataFrame({"timestamp": timestamps.array, "symbol": symbols.array})
    features = pd.DataFrame({name: columns[name].astype(np.float64) for name in names})
    return pd.concat([frame, features], axis=1)


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Every column of a feature table except ``timestamp`` and ``symbol``."""
    return [c for c in df.columns if c not in KEY_COLUMNS]
