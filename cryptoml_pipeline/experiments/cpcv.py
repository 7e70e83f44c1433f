"""Combinatorial purged cross-validation (CPCV; López de Prado 2018, *Advances in Financial
Machine Learning*, ch. 12).

The span ``[start, end)`` is cut, on the bar grid of the timeframe, into ``N`` contiguous groups
of (near-)equal bar counts (the first ``n_bars % N`` groups get one bar more). Every combination
of ``k`` groups is one split's test set (``C(N, k)`` splits, in :func:`itertools.combinations`
order); the other groups train, after

* **purging**: a row at ``t`` carries a label that looks ``reach_bars`` bars ahead, so its label
  window is the closed interval ``[t, t + reach_bars * bar]``; the row is dropped from training if
  that window intersects a test group ``[gs, ge)``, i.e. ``t < ge`` and
  ``t + reach_bars * bar >= gs``. This removes training rows right before a test group (their
  label is realised inside it) and, with ``reach_bars = 0``, nothing else than the test rows;
* **embargo**: the rows in ``[ge, ge + embargo_bars * bar)`` right after each test group are
  dropped too (serial correlation leaking from the test group into the following training rows).

Each group is tested in ``C(N-1, k-1)`` splits, so the test predictions recombine into
``phi = C(N, k) * k / N`` backtest paths (AFML §12.4): path ``p`` takes, for each group ``g``, the
predictions of the ``p``-th split (in combinations order) that tests ``g``. ``N = 6, k = 2`` gives
15 splits and 5 paths.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.timing import timeframe_to_timedelta, to_utc

__all__ = [
    "CpcvSplit",
    "cpcv_group_bounds",
    "cpcv_n_paths",
    "cpcv_n_splits",
    "cpcv_paths",
    "cpcv_splits",
    "path_frame",
    "test_mask",
    "train_mask",
]


@dataclass(frozen=True)
class CpcvSplit:
    """One CPCV split. ``groups`` holds the half-open ``[start, end)`` UTC bounds of ALL ``N``
    groups (the same tuple in every split of a plan); ``test_groups`` the indices tested here."""

    key: str  # "cpcv-00", "cpcv-01", ...
    index: int
    test_groups: tuple[int, ...]
    groups: tuple[tuple[pd.Timestamp, pd.Timestamp], ...]
    bar: pd.Timedelta
    reach_bars: int
    embargo_bars: int

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    @property
    def train_groups(self) -> tuple[int, ...]:
        """Indices of the groups that train (before purging and embargo)."""
        return tuple(g for g in range(self.n_groups) if g not in self.test_groups)

    @property
    def start(self) -> pd.Timestamp:
        return self.groups[0][0]

    @property
    def end(self) -> pd.Timestamp:
        return self.groups[-1][1]

    @property
    def test_bounds(self) -> tuple[tuple[pd.Timestamp, pd.Timestamp], ...]:
        """``[start, end)`` of each test group, in order."""
        return tuple(self.groups[g] for g in self.test_groups)

    def group_of(self, timestamps: pd.Series) -> np.ndarray:
        """Group index of each timestamp (``-1`` outside ``[start, end)``)."""
        return _group_index(_as_ns(timestamps), self.groups)


def cpcv_n_splits(n_groups: int, k_test: int) -> int:
    """``C(N, k)``: the number of splits."""
    return math.comb(n_groups, k_test)


def cpcv_n_paths(n_groups: int, k_test: int) -> int:
    """``phi = C(N, k) * k / N = C(N-1, k-1)``: the number of backtest paths."""
    return math.comb(n_groups, k_test) * k_test // n_groups


def _check_nk(n_groups: int, k_test: int) -> None:
    if n_groups < 2:
        raise InputError(f"CPCV needs n_groups >= 2 (got {n_groups})")
    if k_test < 1:
        raise InputError(f"CPCV needs k_test >= 1 (got {k_test})")
    if k_test >= n_groups:
        raise InputError(f"CPCV needs k_test < n_groups (got k_test={k_test}, n_groups={n_groups})")


def cpcv_group_bounds(
    start: pd.Timestamp, end: pd.Timestamp, *, n_groups: int, timeframe: str
) -> tuple[tuple[pd.Timestamp, pd.Timestamp], ...]:
    """``N`` contiguous ``[start, end)`` bounds of near-equal bar counts covering ``[start, end)``
    (bars at ``start + i * bar``; the last group ends at ``end``)."""
    try:
        bar = timeframe_to_timedelta(timeframe)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    lo, hi = to_utc(start), to_utc(end)
    if not hi > lo:
        raise InputError(f"CPCV span is empty: start {lo} is not before end {hi}")
    n_bars = math.ceil((hi - lo) / bar)
    if n_bars < n_groups:
        raise InputError(
            f"CPCV span [{lo}, {hi}) has {n_bars} {timeframe} bars, fewer than n_groups={n_groups}"
        )
    counts = np.full(n_groups, n_bars // n_groups)
    counts[: n_bars % n_groups] += 1
    edges = np.concatenate([[0], np.cumsum(counts)])
    starts = [lo + int(e) * bar for e in edges[:-1]]
    ends = [*starts[1:], hi]
    return tuple(zip(starts, ends, strict=True))


def cpcv_splits(
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    n_groups: int,
    k_test: int,
    timeframe: str,
    reach_bars: int,
    embargo_bars: int,
) -> list[CpcvSplit]:
    """The ``C(N, k)`` CPCV splits of ``[start, end)`` (see the module docstring).

    Raises :class:`InputError` for ``N < 2``, ``k < 1``, ``k >= N``, negative ``reach_bars`` or
    ``embargo_bars``, an unknown timeframe, an empty span or fewer bars than groups.
    """
    _check_nk(n_groups, k_test)
    if reach_bars < 0 or embargo_bars < 0:
        raise InputError(
            f"CPCV reach_bars ({reach_bars}) and embargo_bars ({embargo_bars}) must be >= 0"
        )
    groups = cpcv_group_bounds(start, end, n_groups=n_groups, timeframe=timeframe)
    bar = timeframe_to_timedelta(timeframe)
    return [
        CpcvSplit(
            key=f"cpcv-{i:02d}",  # the sweep's split partition key (at least two digits)
            index=i,
            test_groups=tuple(combo),
            groups=groups,
            bar=bar,
            reach_bars=int(reach_bars),
            embargo_bars=int(embargo_bars),
        )
        for i, combo in enumerate(itertools.combinations(range(n_groups), k_test))
    ]


def _as_ns(timestamps: pd.Series | pd.DatetimeIndex | Sequence[pd.Timestamp]) -> np.ndarray:
    """UTC nanoseconds since the epoch (naive input is taken as UTC)."""
    return pd.DatetimeIndex(pd.to_datetime(pd.Series(timestamps), utc=True)).as_unit("ns").asi8


def _bounds_ns(
    bounds: Sequence[tuple[pd.Timestamp, pd.Timestamp]],
) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([to_utc(b[0]).value for b in bounds], dtype=np.int64)
    hi = np.array([to_utc(b[1]).value for b in bounds], dtype=np.int64)
    return lo, hi


def _group_index(t: np.ndarray, groups: Sequence[tuple[pd.Timestamp, pd.Timestamp]]) -> np.ndarray:
    lo, hi = _bounds_ns(groups)
    idx = np.searchsorted(lo, t, side="right") - 1
    inside = (idx >= 0) & (t < hi[np.clip(idx, 0, None)])
    return np.where(inside, idx, -1)


def test_mask(split: CpcvSplit, timestamps: pd.Series) -> np.ndarray:
    """Rows (aligned with ``timestamps``) that lie in one of the split's test groups."""
    groups = split.group_of(timestamps)
    return np.isin(groups, np.asarray(split.test_groups))


def train_mask(split: CpcvSplit, timestamps: pd.Series) -> np.ndarray:
    """Rows that train: in ``[start, end)``, not in a test group, not purged (label window
    ``[t, t + reach_bars * bar]`` touches no test group) and not embargoed (not in
    ``[ge, ge + embargo_bars * bar)`` after a test group ending at ``ge``)."""
    t = _as_ns(timestamps)
    bar = split.bar.value
    in_span = split.group_of(timestamps) >= 0
    gs, ge = _bounds_ns(split.test_bounds)
    tt = t[:, None]
    touches = (tt < ge[None, :]) & (tt + split.reach_bars * bar >= gs[None, :])
    embargoed = (tt >= ge[None, :]) & (tt < ge[None, :] + split.embargo_bars * bar)
    # a test row's label window contains t itself, so `touches` also removes the test rows
    return in_span & ~(touches | embargoed).any(axis=1)


def cpcv_paths(n_groups: int, k_test: int) -> list[list[tuple[int, int]]]:
    """The ``phi`` backtest paths: path ``p`` is ``[(g, split index) for g in range(N)]`` where
    the split is the ``p``-th (in combinations order) whose test groups contain ``g``."""
    _check_nk(n_groups, k_test)
    combos = list(itertools.combinations(range(n_groups), k_test))
    testing = [[i for i, c in enumerate(combos) if g in c] for g in range(n_groups)]
    return [
        [(g, testing[g][p]) for g in range(n_groups)] for p in range(cpcv_n_paths(n_groups, k_test))
    ]


def path_frame(
    predictions_by_split: Mapping[str, pd.DataFrame],
    splits: Sequence[CpcvSplit],
    path: Sequence[tuple[int, int]],
) -> pd.DataFrame:
    """One backtest path: for each ``(group, split index)`` of ``path``, the rows of that split's
    predictions (``predictions_by_split[split.key]``, with a ``timestamp`` column) whose timestamp
    lies in that group; concatenated and sorted by ``timestamp`` (then ``symbol`` if present).
    Raises :class:`InputError` if a split's predictions are missing."""
    parts = []
    for group, split_index in path:
        split = splits[split_index]
        if split.key not in predictions_by_split:
            raise InputError(f"CPCV path needs the predictions of split {split.key}")
        frame = predictions_by_split[split.key]
        parts.append(frame[split.group_of(frame["timestamp"]) == group])
    out = pd.concat(parts, ignore_index=True)
    order = ["timestamp", "symbol"] if "symbol" in out.columns else ["timestamp"]
    return out.sort_values(order, kind="stable").reset_index(drop=True)


test_mask.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported
