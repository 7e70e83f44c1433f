"""Funding settlements as the data holds them: any interval per symbol, changing over time.

Binance USDT-M perpetuals settle funding every 8 hours by default, but the exchange moves a
symbol to 4 h (or shorter) intervals when its rate hits the cap and may move it back
(https://www.binance.com/en/support/faq/introduction-to-binance-futures-funding-rates-360033525031).
So nothing here assumes an interval: a symbol's settlements are the instants its funding rows
hold, and its interval at a settlement is the time since the previous one.

A settlement is MISSING where the data skips one: an interval longer than BOTH of its
neighbouring intervals (an 8 h → 4 h switch is not a gap: 8, 8, 4, 4 has no interval longer than
both neighbours; 8, 8, 16, 8 has one); at either end of the data the hint interval stands in for
the neighbour it does not have. The instants expected inside such a gap are the previous
interval's steps. Before a symbol's first and after its last settlement the first / last interval
(or ``hint_ns`` where the data holds fewer than two settlements) is extrapolated. All times are
int64 nanoseconds since the epoch, UTC; ``ts`` is one symbol's settlements, sorted, unique.
"""

from __future__ import annotations

import numpy as np

NS_PER_HOUR = 3_600_000_000_000


def settlement_intervals(ts: np.ndarray) -> np.ndarray:
    """Hours since the previous settlement at each settlement (float; NaN at the first, whose
    interval the data cannot tell causally)."""
    out = np.full(ts.shape[0], np.nan)
    out[1:] = np.diff(ts) / NS_PER_HOUR
    return out


def rate_per_hour(ts: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Each settlement's rate per hour of the interval it covers: ``rate / interval_hours``
    (NaN at the first settlement). A symbol moving from 8 h to 4 h settlements at the same
    hourly carry keeps the same value, where the per-settlement rate halves."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return rate / settlement_intervals(ts)


def _padded_intervals(ts: np.ndarray, hint_ns: int) -> np.ndarray:
    """``[hint, *diff(ts), hint]``: the intervals with the hint standing in for the neighbour
    outside the data at either end."""
    return np.concatenate([[hint_ns], np.diff(ts), [hint_ns]]).astype(np.int64)


def gap_intervals(ts: np.ndarray, hint_ns: int) -> np.ndarray:
    """Indices ``j`` of the intervals ``ts[j] .. ts[j + 1]`` longer than both neighbouring
    intervals (settlements are missing there); at either end of the data ``hint_ns`` stands in
    for the neighbour the data does not have."""
    if ts.shape[0] < 2:
        return np.zeros(0, dtype=np.int64)
    dd = _padded_intervals(ts, hint_ns)
    mid = dd[1:-1]
    return np.flatnonzero((mid > dd[:-2]) & (mid > dd[2:]))


def _steps(starts: np.ndarray, steps: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``starts[g] + k * steps[g]`` for ``k = 1 .. counts[g]``, every ``g`` (no Python loop)."""
    counts = np.maximum(counts, 0)
    total = int(counts.sum())
    group = np.repeat(np.arange(counts.shape[0]), counts)
    k = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    return starts[group] + k * steps[group]


def missing_settlements(ts: np.ndarray, lo: int, hi: int, hint_ns: int) -> np.ndarray:
    """Sorted instants in ``[lo, hi)`` where a settlement is expected but ``ts`` has none: inside
    the gaps (:func:`gap_intervals`, stepped by the interval before the gap), and before the
    first / after the last settlement (stepped by the first / last interval, or ``hint_ns``).
    Without any settlement: every ``hint_ns`` step aligned to 00:00 UTC."""
    if ts.shape[0] == 0:
        first = -(-lo // hint_ns) * hint_ns
        return np.arange(first, hi, hint_ns, dtype=np.int64)
    d = np.diff(ts)
    head = int(d[0]) if d.shape[0] else hint_ns
    tail = int(d[-1]) if d.shape[0] else hint_ns
    gaps = gap_intervals(ts, hint_ns)
    before = _padded_intervals(ts, hint_ns)[gaps]  # the interval before each gap
    parts = [
        ts[0] - head * np.arange(max(0, (int(ts[0]) - lo) // head), 0, -1, dtype=np.int64),
        _steps(ts[gaps], before, (d[gaps] - 1) // before),
        _steps(ts[-1:], np.array([tail]), np.array([(hi - int(ts[-1]) - 1) // tail])),
    ]
    out = np.concatenate(parts).astype(np.int64)
    return out[(out >= lo) & (out < hi)]
