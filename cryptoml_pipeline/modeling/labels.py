"""Targets and labels — the ONLY place in the pipeline allowed to look forward.

One row per candle row, in input order (:func:`make_labels`). ``h = TargetConfig.horizon``. A
forward value of row ``t`` needs rows exactly ``k`` bars of calendar time after ``t``; where the
data has a gap (exchange halt) inside the label window, row ``t`` gets NO label (NaN) rather
than one that reaches further than declared — so the walk-forward purge, which works in calendar
time over ``TargetConfig.reach`` bars, always covers the whole label window. The last rows of
every symbol have no label.

Columns:

* ``realised_return``: ``open[t+1+h] / open[t+1] - 1`` — what a position filled at the next
  bar's open and held ``h`` bars earns before costs (every target kind; the forecast metrics
  score ``expected_return`` against it).
* ``forward_return``: the target kind's own forward return: ``close[t+h] / close[t] - 1`` for
  ``classes`` (the spec), ``realised_return`` otherwise.
* ``label``: the spec's 5 classes of ``forward_return`` (thresholds of :class:`LabelConfig`)::

     2: r >  strong;  1: weak < r <= strong;  0: -weak < r <= weak;
    -1: -strong < r <= -weak;  -2: r <= -strong

  Models use ``class index = label + 2`` (``modeling/predictions.py``: ``label_to_class``,
  ``class_to_signal``).
* ``target``: what the models learn: ``label`` (``classes``); ``log(1 + realised_return) /
  (sigma_t * sqrt(h))`` (``vol_scaled_return``; ``sigma_t`` = trailing std of 1-bar log close
  returns over ``vol_window`` bars up to ``t`` — the feature ``rv_<vol_window>``); the
  triple-barrier label in {-1, 0, 1} (``triple_barrier``).
* ``sigma``: ``sigma_t`` (causal: known at ``t``).
* ``weight``: sample weight: average uniqueness of the label's span for ``triple_barrier``
  (López de Prado, AFML ch. 4), 1 otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features.technical import rolling_volatility
from cryptoml_pipeline.settings import LabelConfig, TargetConfig
from cryptoml_pipeline.timing import timeframe_to_timedelta

__all__ = [
    "LABEL_COLUMNS",
    "classify_returns",
    "make_labels",
    "triple_barrier",
]

LABEL_COLUMNS = (
    "timestamp",
    "symbol",
    "forward_return",
    "realised_return",
    "label",
    "target",
    "sigma",
    "weight",
)


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


class _Sorted:
    """Rows sorted by (symbol, timestamp), with the permutation back to input order."""

    def __init__(self, candles: pd.DataFrame, bar_ns: int) -> None:
        symbols, _ = pd.factorize(candles["symbol"])
        timestamps = candles["timestamp"].astype("datetime64[ns, UTC]").array.asi8
        self.order = np.lexsort((timestamps, symbols))
        self.sym = symbols[self.order]
        self.ts = timestamps[self.order]
        self.bar_ns = bar_ns
        dup = (self.sym[1:] == self.sym[:-1]) & (self.ts[1:] == self.ts[:-1])
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            symbol = candles["symbol"].iloc[self.order[i]]
            raise InputError(
                f"duplicate candle for symbol {symbol} at {pd.Timestamp(self.ts[i], tz='UTC')}"
            )

    def __len__(self) -> int:
        return len(self.order)

    def col(self, candles: pd.DataFrame, name: str) -> np.ndarray:
        return candles[name].to_numpy(dtype=np.float64)[self.order]

    def ahead(self, k: int) -> np.ndarray:
        """Bool per sorted row: the row ``k`` positions later is the same symbol, ``k`` bars
        later in calendar time (no gap in between)."""
        n = len(self)
        ok = np.zeros(n, dtype=bool)
        if 0 < k < n:
            ok[:-k] = (self.sym[k:] == self.sym[:-k]) & (
                (self.ts[k:] - self.ts[:-k]) == k * self.bar_ns
            )
        elif k == 0:
            ok[:] = True
        return ok

    def shift(self, values: np.ndarray, k: int) -> np.ndarray:
        """``values`` of the row ``k`` bars later (NaN where it is not exactly there)."""
        out = np.full(len(self), np.nan)
        if k < len(self):
            out[: len(self) - k] = values[k:]
        return np.where(self.ahead(k), out, np.nan)

    def unsort(self, values: np.ndarray) -> np.ndarray:
        out = np.empty(len(self), dtype=np.float64)
        out[self.order] = values
        return out


def _trailing_sigma(srt: _Sorted, close: np.ndarray, window: int) -> np.ndarray:
    sigma = np.full(len(srt), np.nan)
    bounds = np.flatnonzero(np.diff(srt.sym)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(srt)], strict=True):
        sigma[lo:hi] = rolling_volatility(close[lo:hi], window).to_numpy()
    return sigma


def triple_barrier(
    entry: np.ndarray,
    highs: list[np.ndarray],
    lows: list[np.ndarray],
    exit_price: np.ndarray,
    width: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Triple-barrier labels from a path: ``highs[k]`` / ``lows[k]`` are the bar extremes ``k``
    bars into the holding period (k = 0 is the entry bar), ``width`` the barrier distance as a
    fraction of ``entry``.

    Returns ``(label in {-1, 0, 1} (NaN where the path is incomplete), bars until the first
    touch, or the vertical barrier)``. A bar that touches both barriers counts as 0 (the order
    inside the bar is unknown).
    """
    n = len(entry)
    label = np.full(n, np.nan)
    span = np.full(n, float(len(highs)))
    up, dn = entry * (1.0 + width), entry * (1.0 - width)
    open_ = np.isfinite(entry) & np.isfinite(width) & np.isfinite(exit_price)
    for hi, lo in zip(highs, lows, strict=True):
        open_ &= np.isfinite(hi) & np.isfinite(lo)
    decided = ~open_
    for k, (hi, lo) in enumerate(zip(highs, lows, strict=True)):
        hit_up, hit_dn = hi >= up, lo <= dn
        new = ~decided & (hit_up | hit_dn)
        label[new] = np.where(hit_up[new] & hit_dn[new], 0.0, np.where(hit_up[new], 1.0, -1.0))
        span[new] = k + 1
        decided |= new
    label[~decided] = 0.0  # vertical barrier
    return label, span


def _uniqueness(srt: _Sorted, span: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Average uniqueness of each label's bars ``[t+1, t+span]`` among the labels of the same
    symbol (AFML ch. 4), by prefix sums over a per-symbol concurrency count."""
    n = len(srt)
    pos = np.arange(n)
    starts = pos + 1
    stops = pos + np.where(valid, span, 0).astype(np.int64)  # inclusive
    conc = np.zeros(n + 2)
    np.add.at(conc, starts[valid], 1.0)
    np.add.at(conc, np.minimum(stops[valid] + 1, n + 1), -1.0)
    conc = np.cumsum(conc)[: n + 1]
    inv = np.where(conc > 0, 1.0 / np.maximum(conc, 1.0), 0.0)
    pref = np.concatenate([[0.0], np.cumsum(inv)])
    total = pref[np.minimum(stops, n) + 1] - pref[np.minimum(starts, n)]
    length = np.maximum(stops - starts + 1, 1)
    return np.where(valid, total / length, np.nan)


def make_labels(
    candles: pd.DataFrame,
    target: TargetConfig,
    labels: LabelConfig | None = None,
    *,
    timeframe: str = "1h",
) -> pd.DataFrame:
    """Targets and labels (columns :data:`LABEL_COLUMNS`), one row per candle row in input order.

    Raises :class:`InputError` on missing columns or duplicate ``(symbol, timestamp)`` rows.
    """
    labels = labels or LabelConfig()
    need = ["timestamp", "symbol", "close"]
    if target.kind != "classes":  # the spec's classes need closes only
        need.append("open")
    if target.kind == "triple_barrier":
        need += ["high", "low"]
    missing = [c for c in need if c not in candles.columns]
    if missing:
        raise InputError(f"make_labels: candles lack column(s) {missing}")
    h = int(target.horizon)
    srt = _Sorted(candles, int(timeframe_to_timedelta(timeframe).value))
    close = srt.col(candles, "close")
    open_ = srt.col(candles, "open") if "open" in candles.columns else np.full(len(srt), np.nan)
    entry = srt.shift(open_, 1)
    exit_ = srt.shift(open_, 1 + h)
    realised = exit_ / entry - 1.0
    forward = srt.shift(close, h) / close - 1.0 if target.kind == "classes" else realised
    label = classify_returns(
        forward, weak_threshold=labels.weak_threshold, strong_threshold=labels.strong_threshold
    )
    sigma = _trailing_sigma(srt, close, target.vol_window)
    scale = sigma * np.sqrt(h)
    weight = np.where(np.isfinite(forward), 1.0, np.nan)
    if target.kind == "classes":
        tgt = label
    elif target.kind == "vol_scaled_return":
        with np.errstate(divide="ignore", invalid="ignore"):
            tgt = np.where(scale > 0, np.log1p(realised) / scale, np.nan)
    else:
        high, low = srt.col(candles, "high"), srt.col(candles, "low")
        highs = [srt.shift(high, 1 + k) for k in range(h)]
        lows = [srt.shift(low, 1 + k) for k in range(h)]
        width = target.barrier_multiple * scale
        tgt, span = triple_barrier(entry, highs, lows, exit_, width)
        valid = np.isfinite(tgt)
        weight = _uniqueness(srt, span, valid)
    tgt = np.where(np.isfinite(forward), tgt, np.nan)
    out = {
        "timestamp": candles["timestamp"].astype("datetime64[ns, UTC]").array,
        "symbol": candles["symbol"].astype(str).array,
        "forward_return": srt.unsort(forward),
        "realised_return": srt.unsort(realised),
        "label": srt.unsort(label),
        "target": srt.unsort(tgt),
        "sigma": srt.unsort(sigma),
        "weight": srt.unsort(weight),
    }
    return pd.DataFrame(out)[list(LABEL_COLUMNS)]


def scoring_returns(labels: pd.DataFrame) -> np.ndarray:
    """The realised return models are scored on (and classifiers map classes to):
    ``realised_return``, or ``forward_return`` for candles without opens (the spec's classes)."""
    realised = labels["realised_return"].to_numpy(dtype=np.float64)
    if np.isfinite(realised).any() or "forward_return" not in labels.columns:
        return realised
    return labels["forward_return"].to_numpy(dtype=np.float64)
