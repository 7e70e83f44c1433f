"""Combinatorial purged cross-validation: split counts, groups, purging/embargo, paths."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.experiments import cpcv

START = pd.Timestamp("2024-01-01", tz="UTC")
HOUR = pd.Timedelta(hours=1)


def _splits(n_bars: int = 24, **kw: int) -> list[cpcv.CpcvSplit]:
    args = {"n_groups": 6, "k_test": 2, "reach_bars": 0, "embargo_bars": 0} | kw
    return cpcv.cpcv_splits(START, START + n_bars * HOUR, timeframe="1h", **args)


def test_six_groups_two_tests_give_fifteen_splits_and_five_paths():
    splits = _splits()
    assert len(splits) == 15
    assert [s.key for s in splits] == [f"cpcv-{i:02d}" for i in range(15)]
    assert [s.test_groups for s in splits] == list(itertools.combinations(range(6), 2))
    assert [s.index for s in splits] == list(range(15))
    assert len(cpcv.cpcv_paths(6, 2)) == 5


@pytest.mark.parametrize("n", range(2, 11))
def test_phi_formula(n):
    for k in range(1, n):
        assert cpcv.cpcv_n_splits(n, k) == math.comb(n, k)
        phi = math.comb(n, k) * k / n
        assert phi == int(phi) == cpcv.cpcv_n_paths(n, k) == math.comb(n - 1, k - 1)
        assert len(cpcv.cpcv_paths(n, k)) == phi


def test_groups_are_contiguous_near_equal_and_cover_the_span():
    splits = _splits(n_bars=26)
    groups = splits[0].groups
    assert all(s.groups == groups for s in splits)
    assert groups[0][0] == START and groups[-1][1] == START + 26 * HOUR
    assert all(a[1] == b[0] for a, b in itertools.pairwise(groups))
    bars = [(hi - lo) / HOUR for lo, hi in groups]
    assert bars == [5, 5, 4, 4, 4, 4]
    assert all(lo.tz is not None and str(lo.tz) == "UTC" for lo, _ in groups)


def test_each_path_covers_every_group_exactly_once_with_a_testing_split():
    for n, k in [(6, 2), (5, 3), (7, 1), (8, 4)]:
        combos = list(itertools.combinations(range(n), k))
        paths = cpcv.cpcv_paths(n, k)
        used = []
        for path in paths:
            assert [g for g, _ in path] == list(range(n))
            assert all(g in combos[i] for g, i in path)
            used += path
        # every (group, testing split) pair is used by exactly one path
        assert sorted(used) == sorted((g, i) for i, c in enumerate(combos) for g in c)


def test_hand_checked_purge_and_embargo():
    # 6 groups of 4 hourly bars; split 1 tests groups 0 ([00:00, 04:00)) and 2 ([08:00, 12:00))
    split = _splits(reach_bars=2, embargo_bars=1)[1]
    assert split.test_groups == (0, 2)
    ts = pd.Series(pd.date_range(START - 2 * HOUR, periods=28, freq="h"))
    hours = (ts - START) / HOUR
    train = cpcv.train_mask(split, ts)
    test = cpcv.test_mask(split, ts)
    assert hours[test].tolist() == [0, 1, 2, 3, 8, 9, 10, 11]
    # 4: embargo after group 0; 6, 7: labels [t, t + 2h] reach 08:00; 12: embargo after group 2;
    # -2, -1, 24, 25: outside the span
    assert hours[train].tolist() == [5, *range(13, 24)]


def test_masks_accept_naive_timestamps_and_any_index():
    split = _splits()[0]
    naive = pd.Series(pd.date_range("2024-01-01", periods=24, freq="h"), index=range(100, 124))
    aware = naive.dt.tz_localize("UTC")
    np.testing.assert_array_equal(cpcv.train_mask(split, naive), cpcv.train_mask(split, aware))
    assert cpcv.test_mask(split, aware).sum() == 8


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"k_test": 0}, "k_test >= 1"),
        ({"k_test": 6}, "k_test < n_groups"),
        ({"n_groups": 1, "k_test": 1}, "n_groups >= 2"),
        ({"reach_bars": -1}, "must be >= 0"),
        ({"embargo_bars": -2}, "must be >= 0"),
    ],
)
def test_bad_parameters_raise_input_error(kw, message):
    with pytest.raises(InputError, match=message):
        _splits(**kw)


def test_bad_span_and_timeframe_raise_input_error():
    with pytest.raises(InputError, match="fewer than n_groups"):
        _splits(n_bars=5)
    with pytest.raises(InputError, match="empty"):
        cpcv.cpcv_splits(
            START, START, n_groups=6, k_test=2, timeframe="1h", reach_bars=0, embargo_bars=0
        )
    with pytest.raises(InputError, match="timeframe"):
        cpcv.cpcv_splits(
            START, START + 24 * HOUR, n_groups=6, k_test=2, timeframe="1x", reach_bars=0,
            embargo_bars=0,
        )  # fmt: skip
    with pytest.raises(InputError):
        cpcv.cpcv_paths(4, 4)


def test_path_frame_takes_each_group_from_its_split():
    splits = _splits()
    ts = pd.date_range(START, periods=24, freq="h")
    preds = {
        s.key: pd.DataFrame(
            {
                "timestamp": np.repeat(ts, 2),
                "symbol": ["B", "A"] * 24,
                "split": s.index,
            }
        )
        for s in splits
    }
    for path in cpcv.cpcv_paths(6, 2):
        frame = cpcv.path_frame(preds, splits, path)
        assert len(frame) == 48
        assert frame["timestamp"].is_monotonic_increasing
        assert frame["symbol"].tolist() == ["A", "B"] * 24
        groups = splits[0].group_of(frame["timestamp"])
        expected = dict(path)
        assert (frame["split"].to_numpy() == [expected[g] for g in groups]).all()
    with pytest.raises(InputError, match="cpcv-03"):
        cpcv.path_frame({k: v for k, v in preds.items() if k != "cpcv-03"}, splits, [(0, 3)])


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(2, 7),
    data=st.data(),
    reach=st.integers(0, 8),
    embargo=st.integers(0, 8),
    extra_bars=st.integers(0, 40),
    minute=st.integers(0, 59),
)
def test_training_rows_never_see_a_test_group(n, data, reach, embargo, extra_bars, minute):
    """Brute force against the definitions: a train row is in the span, outside every test
    group, its label window [t, t + reach] touches no test group and it is not embargoed; every
    other row of the span that is neither test nor purged/embargoed trains; test rows are the
    rows of the test groups; rows outside the span are neither."""
    k = data.draw(st.integers(1, n - 1))
    n_bars = n + extra_bars
    end = START + n_bars * HOUR
    splits = cpcv.cpcv_splits(
        START, end, n_groups=n, k_test=k, timeframe="1h", reach_bars=reach, embargo_bars=embargo
    )
    # bars plus off-grid rows, starting before and ending after the span
    ts = pd.Series(
        pd.date_range(START - 3 * HOUR, end + 3 * HOUR, freq="h").append(
            pd.date_range(START - 3 * HOUR + pd.Timedelta(minutes=minute), end, freq="h")
        )
    )
    for split in splits:
        train = cpcv.train_mask(split, ts)
        test = cpcv.test_mask(split, ts)
        assert not (train & test).any()
        tests = split.test_bounds
        for t, is_train, is_test in zip(ts, train, test, strict=True):
            in_span = START <= t < end
            in_test = any(lo <= t < hi for lo, hi in tests)
            touches = any(t < hi and t + reach * HOUR >= lo for lo, hi in tests)
            embargoed = any(hi <= t < hi + embargo * HOUR for _, hi in tests)
            assert is_test == (in_span and in_test)
            assert is_train == (in_span and not in_test and not touches and not embargoed)


def test_keys_match_the_sweep_partition_keys_beyond_one_hundred_splits():
    splits = cpcv.cpcv_splits(
        START, START + 40 * HOUR, n_groups=10, k_test=5, timeframe="1h", reach_bars=1,
        embargo_bars=1,
    )  # fmt: skip
    assert len(splits) == 252
    assert [s.key for s in splits] == [f"cpcv-{i:02d}" for i in range(252)]
