"""Technical indicators of ONE symbol's time-ordered series (spec "existing" RSI, CCI, WaveTrend).

Every function is causal: the value at row ``i`` uses rows ``<= i`` only. Recursive smoothers
(EMA, Wilder) run forward from the first valid value; their warm-up rows are NaN (``min_periods`` or
an explicit SMA seed), and simple windows (SMA, mean absolute deviation, std) are computed window by
window with :func:`numpy.lib.stride_tricks.sliding_window_view`, so they do not depend on where the
history starts and are bit-identical whether or not later rows exist. The one exception is
:func:`bollinger_pctb`, which reproduces the ``ta`` package's pandas rolling arithmetic exactly (see
its docstring); it is still causal and bit-identical whether or not later rows exist.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "atr",
    "bollinger_pctb",
    "cci",
    "ema",
    "log_returns",
    "macd",
    "rolling_mean",
    "rolling_std",
    "rolling_volatility",
    "rsi",
    "settle_bars",
    "true_range",
    "wavetrend",
    "wavetrend_cross",
    "wilder_smooth",
]


def _values(x: pd.Series | np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _like(x: pd.Series | np.ndarray, values: np.ndarray) -> pd.Series:
    # a fresh float64 array is wrapped without a copy (every caller passes one it does not touch
    # afterwards); a read-only one (e.g. another Series' to_numpy()) is copied, as before
    values = np.asarray(values, dtype=np.float64)
    copy = not values.flags.writeable
    if isinstance(x, pd.Series):
        return pd.Series(values, index=x.index, copy=copy)
    return pd.Series(values, copy=copy)


def _check_period(period: int, name: str = "period") -> None:
    if int(period) < 1:
        raise ValueError(f"{name} must be >= 1, got {period}")


def rolling_mean(x: pd.Series | np.ndarray, window: int) -> pd.Series:
    """Trailing simple mean of the last ``window`` values (NaN until full or if any is NaN)."""
    _check_period(window, "window")
    arr = _values(x)
    out = np.full(arr.shape[0], np.nan)
    if arr.shape[0] >= window:
        out[window - 1 :] = sliding_window_view(arr, window).mean(axis=1)
    return _like(x, out)


def rolling_std(x: pd.Series | np.ndarray, window: int, *, ddof: int = 1) -> pd.Series:
    """Trailing standard deviation of the last ``window`` values (two-pass, window by window)."""
    _check_period(window, "window")
    arr = _values(x)
    out = np.full(arr.shape[0], np.nan)
    if arr.shape[0] >= window and window > ddof:
        out[window - 1 :] = sliding_window_view(arr, window).std(axis=1, ddof=ddof)
    return _like(x, out)


def ema(x: pd.Series | np.ndarray, span: int) -> pd.Series:
    """Exponential moving average, ``alpha = 2/(span+1)``, seeded with the first valid value.

    The first ``span - 1`` valid rows are NaN (warm-up).
    """
    _check_period(span, "span")
    s = _like(x, _values(x))
    return s.ewm(span=span, adjust=False, min_periods=span).mean()


def wilder_smooth(x: pd.Series | np.ndarray, period: int) -> pd.Series:
    """Wilder's smoothing (RMA): seed = SMA of the first ``period`` valid values, then
    ``m[i] = m[i-1] + (x[i] - m[i-1]) / period`` (an EWM with ``alpha = 1/period``).

    Rows before the seed are NaN; the seed is causal (it uses rows up to its own row only).
    """
    _check_period(period)
    arr = _values(x)
    out = np.full(arr.shape[0], np.nan)
    valid = np.flatnonzero(~np.isnan(arr))
    if valid.size < period:
        return _like(x, out)
    first = int(valid[0])
    seed_at = first + period - 1
    seeded = arr.copy()
    seeded[:seed_at] = np.nan
    seeded[seed_at] = arr[first : seed_at + 1].mean()  # NaN if a gap sits inside the seed window
    smoothed = pd.Series(seeded).ewm(alpha=1.0 / period, adjust=False).mean().to_numpy()
    out[seed_at:] = smoothed[seed_at:]
    return _like(x, out)


def log_returns(close: pd.Series | np.ndarray, horizon: int = 1) -> pd.Series:
    """``log(close[t] / close[t-horizon])``; the first ``horizon`` rows are NaN."""
    _check_period(horizon, "horizon")
    c = _values(close)
    out = np.full(c.shape[0], np.nan)
    if c.shape[0] > horizon:
        out[horizon:] = np.log(c[horizon:] / c[:-horizon])
    return _like(close, out)


def rolling_volatility(close: pd.Series | np.ndarray, window: int) -> pd.Series:
    """Std (ddof=1) of the last ``window`` one-bar log returns, NOT annualised.

    The first ``window`` rows are NaN (row 0 has no return).
    """
    return rolling_std(log_returns(close, 1), window)


def rsi(close: pd.Series | np.ndarray, period: int = 14) -> pd.Series:
    """Wilder's RSI in [0, 100]: ``100 * avg_gain / (avg_gain + avg_loss)``.

    Gains/losses are Wilder-smoothed (SMA seed over the first ``period`` changes); the first
    ``period`` rows are NaN. A strictly rising series gives 100, a flat one 50.
    """
    _check_period(period)
    c = _values(close)
    delta = np.full(c.shape[0], np.nan)
    delta[1:] = np.diff(c)
    gain = np.where(np.isnan(delta), np.nan, np.maximum(delta, 0.0))
    loss = np.where(np.isnan(delta), np.nan, np.maximum(-delta, 0.0))
    avg_gain = wilder_smooth(gain, period).to_numpy()
    avg_loss = wilder_smooth(loss, period).to_numpy()
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(total > 0, 100.0 * avg_gain / total, 50.0)
    value[np.isnan(total)] = np.nan
    return _like(close, value)


def cci(
    high: pd.Series | np.ndarray,
    low: pd.Series | np.ndarray,
    close: pd.Series | np.ndarray,
    period: int = 20,
) -> pd.Series:
    """Commodity Channel Index: ``(tp - SMA(tp)) / (0.015 * MAD(tp))`` over ``period`` rows.

    ``tp = (high + low + close) / 3``; MAD is the mean absolute deviation from the window's own
    mean (vectorised over sliding windows). The first ``period - 1`` rows are NaN; a window with
    zero deviation (flat prices) gives 0.
    """
    _check_period(period)
    tp = (_values(high) + _values(low) + _values(close)) / 3.0
    out = np.full(tp.shape[0], np.nan)
    if tp.shape[0] >= period:
        windows = sliding_window_view(tp, period)
        mean = windows.mean(axis=1)
        mad = np.abs(windows - mean[:, None]).mean(axis=1)
        dev = tp[period - 1 :] - mean
        with np.errstate(invalid="ignore", divide="ignore"):
            out[period - 1 :] = np.where(mad > 0, dev / (0.015 * mad), 0.0)
        out[period - 1 :][np.isnan(mad)] = np.nan
    return _like(close, out)


def wavetrend(
    high: pd.Series | np.ndarray,
    low: pd.Series | np.ndarray,
    close: pd.Series | np.ndarray,
    channel: int = 10,
    average: int = 21,
    signal: int = 4,
) -> tuple[pd.Series, pd.Series]:
    """LazyBear's WaveTrend oscillator, returns ``(wt1, wt2)``.

    ``ap = hlc3; esa = ema(ap, channel); d = ema(|ap - esa|, channel);
    ci = (ap - esa) / (0.015 * d); wt1 = ema(ci, average); wt2 = sma(wt1, signal)``.
    wt1 is valid from row ``2*channel + average - 3``, wt2 ``signal - 1`` rows later.
    """
    ap = (_values(high) + _values(low) + _values(close)) / 3.0
    esa = ema(ap, channel).to_numpy()
    d = ema(np.abs(ap - esa), channel).to_numpy()
    dev = ap - esa
    with np.errstate(invalid="ignore", divide="ignore"):
        ci = np.where(d > 0, dev / (0.015 * d), 0.0)
    ci[np.isnan(d) | np.isnan(dev)] = np.nan
    wt1 = ema(ci, average).to_numpy()
    wt2 = rolling_mean(wt1, signal).to_numpy()
    return _like(close, wt1), _like(close, wt2)


def wavetrend_cross(wt1: pd.Series | np.ndarray, wt2: pd.Series | np.ndarray) -> pd.Series:
    """+1 on the bar where wt1 crosses above wt2, -1 where it crosses below, else 0.

    "Crosses above": ``wt1 > wt2`` now and ``wt1 <= wt2`` on the previous row (mirror for below).
    NaN where the current or previous wt1/wt2 is NaN.
    """
    a, b = _values(wt1), _values(wt2)
    out = np.full(a.shape[0], np.nan)
    if a.shape[0] > 1:
        now, prev = a[1:] - b[1:], a[:-1] - b[:-1]
        cross = np.where((now > 0) & (prev <= 0), 1.0, np.where((now < 0) & (prev >= 0), -1.0, 0.0))
        cross[np.isnan(now) | np.isnan(prev)] = np.nan
        out[1:] = cross
    return _like(wt1, out)


def true_range(
    high: pd.Series | np.ndarray, low: pd.Series | np.ndarray, close: pd.Series | np.ndarray
) -> pd.Series:
    """``max(high - low, |high - prev_close|, |low - prev_close|)``; row 0 is ``high - low``."""
    h, lo, c = _values(high), _values(low), _values(close)
    prev = np.full(c.shape[0], np.nan)
    prev[1:] = c[:-1]
    tr = np.fmax(h - lo, np.fmax(np.abs(h - prev), np.abs(lo - prev)))
    return _like(close, tr)


def atr(
    high: pd.Series | np.ndarray,
    low: pd.Series | np.ndarray,
    close: pd.Series | np.ndarray,
    period: int = 14,
) -> pd.Series:
    """Wilder's Average True Range: SMA seed over the first ``period`` true ranges (row
    ``period - 1``), then ``atr = (atr_prev * (period - 1) + tr) / period``."""
    return wilder_smooth(true_range(high, low, close), period)


def bollinger_pctb(close: pd.Series | np.ndarray, window: int = 20, k: float = 2.0) -> pd.Series:
    """Bollinger %B: ``(close - lower) / (upper - lower)`` with bands ``SMA +- k * std`` (ddof=0).

    Computed with the same arithmetic as the ``ta`` package (pandas' rolling mean / rolling std,
    ``upper - lower`` formed from the two bands), so it equals ``ta`` bit for bit. Pandas' rolling
    variance is an online (add/remove) update whose rounding carries from bar to bar: values differ
    from an exact two-pass std by up to ~5e-8 on a 60k-bar series and depend on where the history
    starts at that level (well inside the warm-up check's ``rtol 1e-6``). Still causal: row ``i``
    uses rows ``<= i`` only. The first ``window - 1`` rows are NaN; a flat window gives 0.5."""
    _check_period(window, "window")
    c = _values(close)
    roll = pd.Series(c).rolling(window, min_periods=window)
    mean = roll.mean().to_numpy()
    std = roll.std(ddof=0).to_numpy()
    upper, lower = mean + k * std, mean - k * std
    width = upper - lower
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(width > 0, (c - lower) / width, 0.5)
    out[np.isnan(width)] = np.nan
    return _like(close, out)


def macd(
    close: pd.Series | np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """``(macd, signal, histogram)``: ``ema(fast) - ema(slow)``, its ``ema(signal)`` and their
    difference. The macd line is valid from row ``slow - 1``, the signal ``signal - 1`` later."""
    line = ema(close, fast).to_numpy() - ema(close, slow).to_numpy()
    sig = ema(line, signal).to_numpy()
    return _like(close, line), _like(close, sig), _like(close, line - sig)


def settle_bars(alpha: float, tolerance: float) -> int:
    """Bars after which an exponential smoother with weight ``alpha`` has forgotten its seed to
    within ``tolerance`` (relative): ``ceil(log(tol) / log(1 - alpha))``."""
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if alpha == 1:
        return 0
    return int(np.ceil(np.log(tolerance) / np.log1p(-alpha)))
