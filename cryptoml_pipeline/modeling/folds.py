"""Purged and embargoed walk-forward folds, in calendar days.

A fold has a training window ``[train_start, test_start)`` and a test window
``[test_start, test_end)``. The last ``validation_fraction`` of the training window,
``[val_start, test_start)``, is the validation slice (early stopping); the rest is the fit slice.

Test windows are aligned to the END of the data: the last fold's test window ends at ``end`` and
each earlier fold steps back by ``step_days``. A fold exists only if its whole training window lies
inside ``[start, ...)``.

Purging (:func:`fold_row_masks`): a row ``t`` carries a label that looks ``horizon`` bars ahead, so
a fit row is kept only if ``t + (horizon + embargo_bars) * bar < val_start`` and a validation row
only if ``t + (horizon + embargo_bars) * bar < test_start``: no training label reaches into the
validation slice and no validation label reaches into the test window.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.settings import WalkForwardConfig
from cryptoml_pipeline.timing import timeframe_to_timedelta, to_utc

__all__ = [
    "Fold",
    "FoldMasks",
    "final_training_fold",
    "fold_key",
    "fold_row_masks",
    "stride_mask",
    "training_origin",
    "validation_start",
    "walk_forward_folds",
    "walk_forward_plan",
]


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold. All timestamps are tz-aware UTC."""

    key: str  # test_start as "YYYY-MM-DD" (or "YYYY-MM-DDTHHMM" if not midnight); "final"
    index: int
    train_start: pd.Timestamp  # training window = [train_start, test_start)
    val_start: pd.Timestamp  # validation slice = [val_start, test_start)
    test_start: pd.Timestamp
    test_end: pd.Timestamp  # test window = [test_start, test_end)


@dataclass(frozen=True)
class FoldMasks:
    """Boolean row masks (aligned with the timestamps given) of one fold; pairwise disjoint."""

    fit: np.ndarray
    val: np.ndarray
    test: np.ndarray


def fold_key(test_start: pd.Timestamp) -> str:
    """``2024-03-01`` for a midnight timestamp, else ``2024-03-01T0800``."""
    ts = to_utc(test_start)
    if ts == ts.normalize():
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%dT%H%M")


def validation_start(
    train_start: pd.Timestamp, test_start: pd.Timestamp, fraction: float, *, timeframe: str = "1h"
) -> pd.Timestamp:
    """``test_start`` minus ``fraction`` of the training window, rounded down to whole bars.

    The validation slice is at least one bar long and always shorter than the training window.
    """
    bar = timeframe_to_timedelta(timeframe)
    window = test_start - train_start
    n_bars = int(np.floor(fraction * (window / bar)))
    n_bars = max(n_bars, 1)
    if n_bars * bar >= window:
        raise InputError(
            f"training window {window} too short for a validation slice of {n_bars} x {timeframe}"
        )
    return test_start - n_bars * bar


def walk_forward_folds(
    start: object, end: object, config: WalkForwardConfig, *, timeframe: str = "1h"
) -> list[Fold]:
    """Walk-forward folds over ``[start, end)``, test windows aligned to ``end``.

    Sorted by ``test_start`` ascending with ``index`` 0..n-1; only the most recent ``max_folds``
    are kept when set. Raises :class:`InputError` if not even one fold fits.
    """
    start_ts, end_ts = to_utc(start), to_utc(end)
    train = pd.Timedelta(days=config.train_days)
    test = pd.Timedelta(days=config.test_days)
    step = pd.Timedelta(days=config.step_days)
    if end_ts <= start_ts:
        raise InputError(f"walk-forward window is empty: start {start_ts} >= end {end_ts}")
    if config.max_folds is not None and config.max_folds < 1:
        raise InputError(f"max_folds must be >= 1 when set, got {config.max_folds}")
    windows: list[tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]] = []
    test_end = end_ts
    while True:
        test_start = test_end - test
        train_start = test_start - train
        if train_start < start_ts:
            break
        if config.expanding:  # every fold trains on all the data before its test window
            train_start = start_ts
        windows.append((train_start, test_start, test_end))
        if config.max_folds is not None and len(windows) >= config.max_folds:
            break
        test_end = test_end - step
    if not windows:
        need = config.train_days + config.test_days
        raise InputError(
            f"window [{start_ts}, {end_ts}) is shorter than one fold "
            f"({config.train_days} train + {config.test_days} test = {need} days)"
        )
    windows.reverse()
    return [
        Fold(
            key=fold_key(test_start),
            index=i,
            train_start=train_start,
            val_start=validation_start(
                train_start, test_start, config.validation_fraction, timeframe=timeframe
            ),
            test_start=test_start,
            test_end=test_end,
        )
        for i, (train_start, test_start, test_end) in enumerate(windows)
    ]


def final_training_fold(
    end: object, config: WalkForwardConfig, *, timeframe: str = "1h", start: object = None
) -> Fold:
    """The production fold: train on ``[end - train_days, end)`` (``[start, end)`` for an
    expanding walk-forward: ``start`` is the training origin), empty test window at ``end``; the
    validation slice is ``validation_fraction`` of ``train_days`` in both cases."""
    end_ts = to_utc(end)
    rolling_start = end_ts - pd.Timedelta(days=config.train_days)
    train_start = rolling_start
    if config.expanding and start is not None:
        train_start = min(train_start, to_utc(start))
    return Fold(
        key="final",
        index=0,
        train_start=train_start,
        val_start=validation_start(
            rolling_start, end_ts, config.validation_fraction, timeframe=timeframe
        ),
        test_start=end_ts,
        test_end=end_ts,
    )


def fold_row_masks(
    timestamps: pd.Series, fold: Fold, *, horizon: int, timeframe: str, embargo_bars: int
) -> FoldMasks:
    """Purged fit / validation / test masks of ``fold`` for rows stamped ``timestamps``.

    fit:  ``train_start <= t < val_start``  and ``t + (horizon + embargo_bars) * bar < val_start``
    val:  ``val_start <= t < test_start``   and ``t + (horizon + embargo_bars) * bar < test_start``
    test: ``test_start <= t < test_end``
    """
    if horizon < 0 or embargo_bars < 0:
        raise InputError(f"horizon ({horizon}) and embargo_bars ({embargo_bars}) must be >= 0")
    ts = pd.Series(timestamps).astype("datetime64[ns, UTC]")
    t = pd.DatetimeIndex(ts)
    reach = t + (horizon + embargo_bars) * timeframe_to_timedelta(timeframe)
    fit = (t >= fold.train_start) & (t < fold.val_start) & (reach < fold.val_start)
    val = (t >= fold.val_start) & (t < fold.test_start) & (reach < fold.test_start)
    test = (t >= fold.test_start) & (t < fold.test_end)
    return FoldMasks(
        fit=np.asarray(fit, dtype=bool),
        val=np.asarray(val, dtype=bool),
        test=np.asarray(test, dtype=bool),
    )


def training_origin(
    start: object, training_history_days: int | None, first_bar: object = None
) -> pd.Timestamp:
    """Where an expanding walk-forward's training begins: ``start - training_history_days``;
    with ``None`` (all history) the first loaded bar of any universe member (``first_bar``,
    ``start`` when not known)."""
    start_ts = to_utc(start)
    if training_history_days is not None:
        return start_ts - pd.Timedelta(days=training_history_days)
    if first_bar is None:
        return start_ts
    return min(start_ts, to_utc(first_bar))


def walk_forward_plan(
    start: object,
    end: object,
    config: WalkForwardConfig,
    *,
    timeframe: str = "1h",
    training_history_days: int | None = 0,
    train_from: object = None,
) -> list[Fold]:
    """The run's folds: :func:`walk_forward_folds` over ``[start, end)`` — test windows aligned
    to ``end``, the first one after a first training period of ``train_days`` inside the window
    (the traded symbols' data), every prediction inside it. A rolling fold trains on the
    ``train_days`` before its test window; an expanding fold on every row from the training
    origin (:func:`training_origin`: ``start - training_history_days``, or with ``None`` the
    first loaded bar ``train_from``) — universe history before ``start`` adds training rows,
    never test windows. Its validation slice is the rolling fold's (``validation_fraction`` of
    ``train_days`` before the test window), so the fit slice grows with the history.
    ``window_days`` caps an expanding fold at the last ``window_days`` before its test window
    (a rolling window whose test folds are the full-history ones)."""
    start_ts = to_utc(start)
    rolling = config.model_copy(update={"expanding": False})
    folds = walk_forward_folds(start_ts, end, rolling, timeframe=timeframe)
    if not config.expanding:
        return folds
    origin = training_origin(start_ts, training_history_days, train_from)
    window = None if config.window_days is None else pd.Timedelta(days=config.window_days)
    out = []
    for f in folds:
        train_start = min(origin, f.train_start)
        if window is not None:  # rolling, on the same test folds as full history
            train_start = max(train_start, f.test_start - window)
        out.append(dataclasses.replace(f, train_start=train_start))
    return out


def stride_mask(timestamps: pd.Series, timeframe: str, stride: int) -> np.ndarray:
    """Rows kept by a training row stride of ``stride`` bars: those whose bar index since the
    epoch is a multiple of ``stride`` — one row every ``stride`` bars per symbol, the same bars
    for every symbol and every fold (all rows when ``stride`` is 1)."""
    ts = pd.DatetimeIndex(pd.Series(timestamps).astype("datetime64[ns, UTC]")).asi8
    if stride <= 1:
        return np.ones(len(ts), dtype=bool)
    bar = timeframe_to_timedelta(timeframe).value
    return (ts // bar) % stride == 0


def strided(masks: FoldMasks, timestamps: pd.Series, timeframe: str, stride: int) -> FoldMasks:
    """``masks`` with their fit and validation rows thinned to one every ``stride`` bars per
    symbol (:func:`stride_mask`); the test rows are all kept."""
    if stride <= 1:
        return masks
    keep = stride_mask(timestamps, timeframe, stride)
    return FoldMasks(fit=masks.fit & keep, val=masks.val & keep, test=masks.test)


def capped_fold(fold: Fold, train_days: int, *, validation_fraction: float, timeframe: str) -> Fold:
    """``fold`` with its training window cut to the last ``train_days`` before its test window
    (unchanged when already shorter): the heavier networks train on rolling windows even when
    the pooled model's walk-forward expands."""
    start = max(fold.train_start, fold.test_start - pd.Timedelta(days=train_days))
    if start == fold.train_start:
        return fold
    return dataclasses.replace(
        fold,
        train_start=start,
        val_start=validation_start(
            start, fold.test_start, validation_fraction, timeframe=timeframe
        ),
    )
