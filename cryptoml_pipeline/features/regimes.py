"""Regime features of ONE symbol's closes (spec TemporalFeatures ``volatility_regime`` and
``trend_strength_decay``). All windows are trailing, so the features are causal and, once their
windows are full, independent of how much history precedes them.

* ``vol_regime_{W}`` — 0 / 1 / 2 (low / medium / high): the realised volatility ``rv_v`` (std of
  the last ``v`` one-bar log returns) against its own causal rolling quantiles ``q_lo, q_hi`` over
  the last ``W`` values (current included): low if ``rv < q_lo``, high if ``rv > q_hi``.
* ``vol_rank_{W}`` — percentile rank of ``rv_v`` within that window, in ``(0, 1]``.
* ``trend_strength_{w}`` — signed Kaufman efficiency ratio ``(c_t - c_{t-w}) / sum |c_i - c_{i-1}|``
  over ``w`` bars, in ``[-1, 1]`` (0 when prices did not move).
* ``trend_decay_{w}`` — ``|ER_t| / max |ER|`` over the last ``w`` bars: 1 at the trend's peak
  strength, falling toward 0 as the trend decays (0 when no trend in the window).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.features.technical import rolling_mean, rolling_volatility
from cryptoml_pipeline.settings import TemporalConfig

__all__ = ["regime_features", "regime_names", "regime_warmup", "trend_strength", "vol_regime"]


def regime_names(config: TemporalConfig) -> list[str]:
    w, t = config.regime_window, config.trend_window
    return [f"vol_regime_{w}", f"vol_rank_{w}", f"trend_strength_{t}", f"trend_decay_{t}"]


def regime_warmup(config: TemporalConfig) -> int:
    return max(config.regime_vol_window + config.regime_window - 1, 2 * config.trend_window - 1)


def vol_regime(
    close: np.ndarray, *, vol_window: int, window: int, quantiles: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """``(regime 0/1/2, percentile rank)`` of realised volatility in its trailing window."""
    rv = rolling_volatility(close, vol_window)
    roll = rv.rolling(window, min_periods=window)
    q_lo = roll.quantile(quantiles[0]).to_numpy()
    q_hi = roll.quantile(quantiles[1]).to_numpy()
    rank = roll.rank(pct=True).to_numpy()
    v = rv.to_numpy()
    regime = np.where(v < q_lo, 0.0, np.where(v > q_hi, 2.0, 1.0))
    regime[np.isnan(q_lo) | np.isnan(q_hi) | np.isnan(v)] = np.nan
    return regime, rank


def trend_strength(close: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(signed efficiency ratio, decay = |ER| / trailing max |ER|)`` over ``window`` bars."""
    n = close.shape[0]
    er = np.full(n, np.nan)
    if n > window:
        path = rolling_mean(np.abs(np.diff(close)), window).to_numpy()[window - 1 :] * window
        net = close[window:] - close[:-window]
        with np.errstate(invalid="ignore", divide="ignore"):
            er[window:] = np.where(path > 0, net / path, 0.0)
    strength = np.abs(pd.Series(er))
    peak = strength.rolling(window, min_periods=window).max().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        decay = np.where(peak > 0, strength.to_numpy() / peak, 0.0)
    decay[np.isnan(peak)] = np.nan
    return er, decay


def regime_features(close: np.ndarray, config: TemporalConfig) -> dict[str, np.ndarray]:
    regime, rank = vol_regime(
        close,
        vol_window=config.regime_vol_window,
        window=config.regime_window,
        quantiles=config.regime_quantiles,
    )
    er, decay = trend_strength(close, config.trend_window)
    return dict(zip(regime_names(config), [regime, rank, er, decay], strict=True))
