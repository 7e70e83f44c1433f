"""Walk-forward folds: end-aligned windows, purged masks, and a property test of the purge."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.folds import (
    final_training_fold,
    fold_row_masks,
    walk_forward_folds,
)
from cryptoml_pipeline.settings import WalkForwardConfig

DEMO = WalkForwardConfig(train_days=180, test_days=90, step_days=90, expanding=False)  # rolling
UTC = "UTC"


def _ts(value: str) -> pd.Timestamp:
    return pd.Timestamp(value, tz=UTC)


def test_demo_folds_end_at_window_end_and_are_contiguous() -> None:
    folds = walk_forward_folds("2024-01-01", "2025-10-01", DEMO)
    assert [f.index for f in folds] == list(range(len(folds)))
    assert len(folds) == 5
    assert folds[-1].test_end == _ts("2025-10-01")
    for prev, nxt in itertools.pairwise(folds):
        assert prev.test_end == nxt.test_start  # step == test: contiguous, no overlap
    for f in folds:
        assert f.test_end - f.test_start == pd.Timedelta(days=90)
        assert f.test_start - f.train_start == pd.Timedelta(days=180)
        assert f.test_start - f.val_start == pd.Timedelta(days=36)  # 20 % of 180 days
        assert f.train_start >= _ts("2024-01-01")
        assert f.key == f.test_start.strftime("%Y-%m-%d")
    assert [f.key for f in folds] == [
        "2024-07-08",
        "2024-10-06",
        "2025-01-04",
        "2025-04-04",
        "2025-07-03",
    ]
    # one more step back would need a train start before 2024-01-01
    assert folds[0].train_start - pd.Timedelta(days=90) < _ts("2024-01-01")


def test_max_folds_keeps_most_recent() -> None:
    cfg = DEMO.model_copy(update={"max_folds": 2})
    folds = walk_forward_folds("2024-01-01", "2025-10-01", cfg)
    assert [f.key for f in folds] == ["2025-04-04", "2025-07-03"]
    assert [f.index for f in folds] == [0, 1]


def test_too_short_window_raises() -> None:
    with pytest.raises(InputError, match="shorter than one fold"):
        walk_forward_folds("2025-01-01", "2025-08-01", DEMO)


def test_key_with_time_and_validation_rounded_to_whole_bars() -> None:
    cfg = WalkForwardConfig(
        train_days=10, test_days=3, step_days=3, validation_fraction=0.33, expanding=False
    )
    folds = walk_forward_folds("2025-01-01", "2025-02-01 08:00", cfg, timeframe="4h")
    last = folds[-1]
    assert last.key == "2025-01-29T0800"
    # 0.33 * 10 days = 79.2 h -> 19 whole 4h bars = 76 h
    assert last.test_start - last.val_start == pd.Timedelta(hours=76)


def test_final_training_fold() -> None:
    fold = final_training_fold("2025-10-01", WalkForwardConfig(train_days=100))
    assert fold.key == "final"
    assert fold.test_start == fold.test_end == _ts("2025-10-01")
    assert fold.train_start == _ts("2025-06-23")
    assert fold.val_start == _ts("2025-10-01") - pd.Timedelta(days=20)


def test_fold_row_masks_hand_checked() -> None:
    ts = pd.Series(pd.date_range("2024-01-01", "2024-03-01", freq="h", tz=UTC, inclusive="left"))
    fold = walk_forward_folds(
        "2024-01-01",
        "2024-02-15",
        WalkForwardConfig(train_days=30, test_days=10, step_days=10, validation_fraction=0.2),
    )[-1]
    masks = fold_row_masks(ts, fold, horizon=5, timeframe="1h", embargo_bars=2)
    fit_ts, val_ts, test_ts = ts[masks.fit], ts[masks.val], ts[masks.test]
    assert fit_ts.iloc[0] == fold.train_start
    assert fit_ts.iloc[-1] == fold.val_start - pd.Timedelta(hours=8)  # 5 + 2 bars purged, strictly
    assert val_ts.iloc[0] == fold.val_start
    assert val_ts.iloc[-1] == fold.test_start - pd.Timedelta(hours=8)
    assert test_ts.iloc[0] == fold.test_start
    assert test_ts.iloc[-1] == fold.test_end - pd.Timedelta(hours=1)
    assert masks.test.sum() == 240
    assert masks.fit.dtype == bool and masks.fit.shape == (len(ts),)


@settings(max_examples=150, deadline=None)
@given(
    train_days=st.integers(2, 40),
    test_days=st.integers(1, 15),
    step_extra=st.integers(0, 10),  # step_days = test_days + step_extra (no overlapping tests)
    validation_fraction=st.floats(0.05, 0.9),
    horizon=st.integers(1, 48),
    embargo=st.integers(0, 24),
    extra_days=st.integers(0, 40),
    start_hour=st.integers(0, 23),
    keep_prob=st.floats(0.3, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_purge_property(
    train_days: int,
    test_days: int,
    step_extra: int,
    validation_fraction: float,
    horizon: int,
    embargo: int,
    extra_days: int,
    start_hour: int,
    keep_prob: float,
    seed: int,
) -> None:
    cfg = WalkForwardConfig(
        train_days=train_days,
        test_days=test_days,
        step_days=test_days + step_extra,
        validation_fraction=validation_fraction,
        embargo_bars=embargo,
    )
    start = _ts("2024-01-01") + pd.Timedelta(hours=start_hour)
    end = start + pd.Timedelta(days=train_days + test_days + extra_days)
    grid = pd.date_range(start - pd.Timedelta(days=3), end + pd.Timedelta(days=3), freq="h")
    keep = np.random.default_rng(seed).random(len(grid)) < keep_prob  # random gaps
    ts = pd.Series(grid[keep])
    bar = pd.Timedelta(hours=1)
    folds = walk_forward_folds(start, end, cfg)
    assert folds[-1].test_end == end
    for fold in folds:
        assert start <= fold.train_start < fold.val_start < fold.test_start <= fold.test_end
        assert (fold.test_start - fold.val_start) % bar == pd.Timedelta(0)
        masks = fold_row_masks(ts, fold, horizon=horizon, timeframe="1h", embargo_bars=embargo)
        fit, val, test = ts[masks.fit], ts[masks.val], ts[masks.test]
        # the label of a fit row ends strictly before validation, of a val row before the test
        assert (fit + horizon * bar < fold.val_start).all()
        assert (fit + (horizon + embargo) * bar < fold.val_start).all()
        assert (val + horizon * bar < fold.test_start).all()
        assert (fit >= fold.train_start).all()
        assert (val >= fold.val_start).all()
        assert ((test >= fold.test_start) & (test < fold.test_end)).all()
        assert not (masks.fit & masks.val).any()
        assert not (masks.fit & masks.test).any()
        assert not (masks.val & masks.test).any()
        # not over-purged: every row allowed by the rule is used
        allowed_fit = (ts >= fold.train_start) & (ts + (horizon + embargo) * bar < fold.val_start)
        assert (allowed_fit.to_numpy() == masks.fit).all()
        in_test = (ts >= fold.test_start) & (ts < fold.test_end)
        assert (in_test.to_numpy() == masks.test).all()
