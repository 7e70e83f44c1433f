"""Five-class forward-return labels — the ONLY place in the pipeline allowed to look forward.

The label of row ``t`` is built from the forward return ``close[t+h] / close[t] - 1`` of the same
symbol, with ``h = LabelConfig.prediction_horizon``. ``t+h`` is the row exactly ``h`` bars of
calendar time after ``t``: where the data has a gap (exchange halt) inside ``(t, t+h]``, row ``t``
gets NO label (NaN) rather than a label that reaches further than ``h`` bars — so the walk-forward
purge, which works in calendar time, always covers the whole label window. The last ``h`` rows of
every symbol have no label (NaN).

Classes (spec ``CryptoDataset``; thresholds from :class:`LabelConfig`)::

     2: r >  strong
     1: weak < r <= strong
     0: -weak < r <= weak
    -1: -strong < r <= -weak
    -2: r <= -strong

Models use ``class index = label + 2`` (:func:`label_to_class`, :func:`class_to_signal`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.settings import LabelConfig
from cryptoml_pipeline.timing import timeframe_to_timedelta

__all__ = ["class_to_signal", "classify_returns", "label_to_class", "make_labels"]


def classify_returns(
    forward_return: np.ndarray, *, weak_threshold: float, strong_threshold: float
) -> np.ndarray:
    """Map forward returns to labels in {-2,-1,0,1,2} as float64; NaN stays NaN."""
    r = np.asarray(forward_return, dtype=np.float64)
    conditions = [
        r > strong_threshold,
        r > weak_threshold,
        r > -weak_threshold,
        r > -strong_threshold,
        r <= -strong_threshold,
    ]
    labels = np.select(conditions, [2.0, 1.0, 0.0, -1.0, -2.0], default=np.nan)
    return labels.astype(np.float64)


def _forward_return_by_symbol(candles: pd.DataFrame, horizon: int, bar_ns: int) -> np.ndarray:
    """``close[t+h]/close[t]-1`` within each symbol, aligned to the input rows (any input order)."""
    n = len(candles)
    symbols, _ = pd.factorize(candles["symbol"])
    timestamps = candles["timestamp"].astype("datetime64[ns, UTC]").array.asi8
    close = candles["close"].to_numpy(dtype=np.float64)
    # Stable sort by (symbol, timestamp): rows of one symbol become contiguous and time-ordered.
    order = np.lexsort((timestamps, symbols))
    sym_sorted = symbols[order]
    ts_sorted = timestamps[order]
    dup = (sym_sorted[1:] == sym_sorted[:-1]) & (ts_sorted[1:] == ts_sorted[:-1])
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        symbol = candles["symbol"].iloc[order[i]]
        raise InputError(
            f"duplicate candle for symbol {symbol} at {pd.Timestamp(ts_sorted[i], tz='UTC')}"
        )
    close_sorted = close[order]
    fwd_sorted = np.full(n, np.nan)
    if n > horizon:
        same_symbol = sym_sorted[horizon:] == sym_sorted[:-horizon]
        same_symbol &= (ts_sorted[horizon:] - ts_sorted[:-horizon]) == horizon * bar_ns
        ratio = close_sorted[horizon:] / close_sorted[:-horizon] - 1.0
        fwd_sorted[:-horizon] = np.where(same_symbol, ratio, np.nan)
    out = np.empty(n)
    out[order] = fwd_sorted
    return out


def make_labels(
    candles: pd.DataFrame, config: LabelConfig, *, timeframe: str = "1h"
) -> pd.DataFrame:
    """Forward returns and 5-class labels, one row per candle row in the input order.

    Returns a RangeIndex frame with ``timestamp``, ``symbol``, ``forward_return`` (float64, NaN
    for the last ``prediction_horizon`` rows of each symbol) and ``label`` (float64 in {-2..2},
    NaN where ``forward_return`` is NaN, including across data gaps).
    Raises :class:`InputError` on missing columns or
    duplicate ``(symbol, timestamp)`` rows.
    """
    missing = [c for c in ("timestamp", "symbol", "close") if c not in candles.columns]
    if missing:
        raise InputError(f"make_labels: candles lack column(s) {missing}")
    horizon = int(config.prediction_horizon)
    bar_ns = int(timeframe_to_timedelta(timeframe).value)
    fwd = _forward_return_by_symbol(candles, horizon, bar_ns)
    labels = classify_returns(
        fwd, weak_threshold=config.weak_threshold, strong_threshold=config.strong_threshold
    )
    return pd.DataFrame(
        {
            "timestamp": candles["timestamp"].astype("datetime64[ns, UTC]").array,
            "symbol": candles["symbol"].astype(str).array,
            "forward_return": fwd,
            "label": labels,
        }
    )


def label_to_class(label: np.ndarray) -> np.ndarray:
    """Label in {-2..2} -> class index in {0..4} (int64). Labels must be finite."""
    arr = np.asarray(label, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise InputError("label_to_class: labels contain NaN/inf; drop unlabelled rows first")
    return (np.rint(arr) + 2).astype(np.int64)


def class_to_signal(cls: np.ndarray) -> np.ndarray:
    """Class index in {0..4} -> signal in {-2..2} (int64)."""
    return np.asarray(cls).astype(np.int64) - 2
