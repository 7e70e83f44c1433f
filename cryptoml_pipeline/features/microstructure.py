"""Market-microstructure features (spec MarketMicrostructureFeatures) of ONE symbol's bars.

Without trade or order-book data these are *estimators* from OHLCV bars:

* ``ofi_bvc_{w}`` — order-flow imbalance by **bulk volume classification** (Easley, López de Prado
  and O'Hara 2012): a bar's buy fraction is ``Phi(r / sigma)`` (``r`` the bar's log return,
  ``sigma`` the trailing std of returns over ``w`` bars), imbalance ``2 * Phi - 1`` volume-weighted
  over the last ``w`` bars; in ``[-1, 1]``.
* ``ofi_tick_{w}`` — order-flow imbalance by the **tick rule** on bar closes: ``sum(sign * v) /
  sum(v)`` over ``w`` bars, ``sign`` = sign of the close change, a zero change repeating the last
  non-zero sign (carried at most ``w`` bars).
* ``tick_imbalance_{w}`` — mean tick-rule sign over ``w`` bars (tick-rule indicator).
* ``spread_cs_{w}`` — **Corwin–Schultz (2012)** high-low bid-ask spread estimator, as a fraction
  of price (normalised), two-bar estimates clipped at 0 and averaged over ``w`` bars.
* ``spread_ar_{w}`` — **Abdi–Ranaldo (2017)** close/high-low estimator, fraction of price. Its
  two-bar term for bar ``t-1`` needs bar ``t``'s mid-range, so the term enters at row ``t``
  (causal by one bar of delay); ``sqrt(max(mean, 0))`` over ``w`` bars.
* ``vw_pressure_{w}`` — volume-weighted price pressure ``log(close / VWAP_w)`` with
  ``VWAP_w = sum(hlc3 * v) / sum(v)`` over the last ``w`` bars (0 when the window has no volume).
* ``volume_z_{W}`` / ``large_volume_{W}`` — large-trade indicator: z-score of ``log1p(volume)``
  against the *previous* ``W`` bars (a causal rolling distribution) and the flag ``z > z_max``.

With trade-level data see :mod:`cryptoml_pipeline.features.trades` for the exact versions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtr

from cryptoml_pipeline.features.technical import rolling_mean, rolling_std
from cryptoml_pipeline.settings import MicrostructureConfig

__all__ = [
    "abdi_ranaldo_spread",
    "bvc_imbalance",
    "corwin_schultz_spread",
    "microstructure_features",
    "microstructure_names",
    "microstructure_warmup",
    "rolling_sum",
    "tick_rule_sign",
    "volume_spike_z",
    "vwap_pressure",
]

_CS_DENOM = 3.0 - 2.0 * np.sqrt(2.0)


def rolling_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing sum of exactly ``window`` values, window by window (NaN until full)."""
    return rolling_mean(x, window).to_numpy() * window


def _log_return(close: np.ndarray) -> np.ndarray:
    r = np.full(close.shape[0], np.nan)
    r[1:] = np.log(close[1:] / close[:-1])
    return r


def _safe_ratio(num: np.ndarray, den: np.ndarray, empty: float = 0.0) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / den, empty)
    out[np.isnan(num) | np.isnan(den)] = np.nan
    return out


def bvc_imbalance(close: np.ndarray, volume: np.ndarray, window: int) -> np.ndarray:
    """Bulk-volume-classification order-flow imbalance in ``[-1, 1]`` (see module doc)."""
    r = _log_return(close)
    sigma = rolling_std(r, window).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(sigma > 0, r / sigma, 0.0)
    z[np.isnan(sigma) | np.isnan(r)] = np.nan
    signed = (2.0 * ndtr(z) - 1.0) * volume
    return _safe_ratio(rolling_sum(signed, window), rolling_sum(volume, window))


def tick_rule_sign(close: np.ndarray, carry: int) -> np.ndarray:
    """+1 / -1 by the sign of the close change; a zero change repeats the last non-zero sign for
    at most ``carry`` bars (then 0). Row 0 is NaN."""
    change = np.full(close.shape[0], np.nan)
    change[1:] = np.sign(np.diff(close))
    s = pd.Series(np.where(change == 0, np.nan, change))
    out = s.ffill(limit=carry).fillna(0.0).to_numpy().copy()
    out[np.isnan(change)] = np.nan
    return out


def corwin_schultz_spread(high: np.ndarray, low: np.ndarray, window: int) -> np.ndarray:
    """Corwin–Schultz spread (fraction of price), mean of two-bar estimates clipped at 0."""
    hl = np.log(high / low) ** 2
    beta = np.full(high.shape[0], np.nan)
    gamma = np.full(high.shape[0], np.nan)
    beta[1:] = hl[1:] + hl[:-1]
    h2 = np.maximum(high[1:], high[:-1])
    l2 = np.minimum(low[1:], low[:-1])
    gamma[1:] = np.log(h2 / l2) ** 2
    alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / _CS_DENOM - np.sqrt(gamma / _CS_DENOM)
    spread = 2.0 * (np.exp(alpha) - 1.0) / (1.0 + np.exp(alpha))
    spread = np.where(np.isnan(spread), np.nan, np.maximum(spread, 0.0))
    return rolling_mean(spread, window).to_numpy()


def abdi_ranaldo_spread(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, window: int
) -> np.ndarray:
    """Abdi–Ranaldo spread (fraction of price); the term of bar ``t-1`` enters at row ``t``."""
    lc = np.log(close)
    eta = (np.log(high) + np.log(low)) / 2.0
    term = np.full(close.shape[0], np.nan)
    term[1:] = 4.0 * (lc[:-1] - eta[:-1]) * (lc[:-1] - eta[1:])
    mean = rolling_mean(term, window).to_numpy()
    return np.sqrt(np.where(np.isnan(mean), np.nan, np.maximum(mean, 0.0)))


def vwap_pressure(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, window: int
) -> np.ndarray:
    """``log(close / VWAP_w)``; 0 when the window traded no volume."""
    tp = (high + low + close) / 3.0
    vwap = _safe_ratio(rolling_sum(tp * volume, window), rolling_sum(volume, window), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.log(close / vwap)
    no_volume = np.isnan(vwap) & ~np.isnan(rolling_sum(volume, window))
    out[no_volume] = 0.0
    return out


def volume_spike_z(volume: np.ndarray, window: int) -> np.ndarray:
    """z of ``log1p(volume)`` against the previous ``window`` bars (0 for a constant window)."""
    lv = np.log1p(volume)
    prev = np.full(lv.shape[0], np.nan)
    prev[1:] = lv[:-1]
    mean = rolling_mean(prev, window).to_numpy()
    std = rolling_std(prev, window).to_numpy()
    return _safe_ratio(lv - mean, std)


def microstructure_names(config: MicrostructureConfig) -> list[str]:
    w, vw = config.window, config.volume_spike_window
    return [
        f"ofi_bvc_{w}",
        f"ofi_tick_{w}",
        f"tick_imbalance_{w}",
        f"spread_cs_{w}",
        f"spread_ar_{w}",
        f"vw_pressure_{w}",
        f"volume_z_{vw}",
        f"large_volume_{vw}",
    ]


def microstructure_warmup(config: MicrostructureConfig) -> int:
    """First fully valid row: BVC needs ``2w - 1`` bars, the volume z ``W`` (+1 for the shift)."""
    return max(2 * config.window - 1, config.volume_spike_window, 2 * config.window)


def microstructure_features(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    config: MicrostructureConfig,
) -> dict[str, np.ndarray]:
    """The OHLCV microstructure block of ONE symbol's time-ordered arrays."""
    w, vw = config.window, config.volume_spike_window
    sign = tick_rule_sign(close, carry=w)
    z = volume_spike_z(volume, vw)
    large = np.where(np.isnan(z), np.nan, (z > config.volume_spike_z).astype(np.float64))
    values = [
        bvc_imbalance(close, volume, w),
        _safe_ratio(rolling_sum(sign * volume, w), rolling_sum(volume, w)),
        rolling_mean(sign, w).to_numpy(),
        corwin_schultz_spread(high, low, w),
        abdi_ranaldo_spread(high, low, close, w),
        vwap_pressure(high, low, close, volume, w),
        z,
        large,
    ]
    return dict(zip(microstructure_names(config), values, strict=True))
