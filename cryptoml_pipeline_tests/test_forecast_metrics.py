"""Forecast-first statistics: IC / rank IC, the daily-contribution series and its Newey–West t,
the cross-sectional rank IC, hit rate, per fold, Sharpe by year, market beta, the equal-weight
basket and the break-even fee.

Expected values are computed here from first principles (by hand in the docstrings, or numpy /
scipy on the frame), never by calling the function under test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.evaluation.forecast import (
    IC_KEYS,
    break_even_fee,
    equal_weight_market_returns,
    information_coefficients,
    market_beta,
    newey_west_lags,
    newey_west_t,
    per_fold,
    sharpe_by_year,
)

DAY0 = pd.Timestamp("2024-01-01", tz="UTC")
XS_KEYS = (
    "cross_sectional_rank_ic_daily_mean",
    "cross_sectional_rank_ic_t",
    "cross_sectional_days",
)


def _hand_frame() -> pd.DataFrame:
    """3 days x 4 symbols, one bar a day; predictions 1..4 each day.

    Targets: day 1 = 1,2,3,4 (IC 1), day 2 = 4,3,2,1 (IC -1), day 3 = 1,3,2,4 (IC 0.8:
    centred x = y-permuted = -1.5,-0.5,0.5,1.5; sum xy = 2.25-0.25-0.25+2.25 = 4; sum x^2 = 5).
    Pooled: sum x^2 = sum y^2 = 15, sum xy = 5 - 5 + 4 = 4 -> 4/15.
    """
    targets = [[1, 2, 3, 4], [4, 3, 2, 1], [1, 3, 2, 4]]
    rows = [
        {
            "timestamp": DAY0 + pd.Timedelta(days=d),
            "symbol": symbol,
            "expected_return": float(i + 1),
            "realised_return": float(targets[d][i]),
        }
        for d in range(3)
        for i, symbol in enumerate("ABCD")
    ]
    return pd.DataFrame(rows)


def _panel(
    seed: int,
    *,
    n_days: int = 60,
    n_symbols: int = 5,
    bars_per_day: int = 24,
    horizon: int = 24,
    signal: float = 0.0,
) -> pd.DataFrame:
    """``bars_per_day`` bars a day; target = overlapping forward sum of ``horizon`` returns,
    prediction = a persistent AR(1) noise (phi 0.95) plus ``signal`` x target."""
    rng = np.random.default_rng(seed)
    n = n_days * bars_per_day
    stamps = pd.date_range(DAY0, periods=n, freq=pd.Timedelta(days=1) / bars_per_day)
    parts = []
    for s in range(n_symbols):
        r = rng.normal(0.0, 0.01, n + horizon)
        target = np.convolve(r[1:], np.ones(horizon), mode="valid")[:n]
        shocks = rng.normal(0.0, 0.01, n)
        noise = np.empty(n)
        noise[0] = shocks[0]
        for t in range(1, n):
            noise[t] = 0.95 * noise[t - 1] + shocks[t]
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": stamps,
                    "symbol": f"S{s}",
                    "expected_return": noise + signal * target,
                    "realised_return": target,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _random_walk_momentum(
    seed: int, *, n_days: int, n_symbols: int, bars_per_day: int = 24, horizon: int = 24
) -> pd.DataFrame:
    """Pure random-walk log prices (no signal at all); prediction = the TRAILING ``horizon``-bar
    return ``p[t] - p[t - h]``, target = the FORWARD ``horizon``-bar return ``p[t + h] - p[t]``."""
    rng = np.random.default_rng(seed)
    n = n_days * bars_per_day
    stamps = pd.date_range(DAY0, periods=n, freq=pd.Timedelta(days=1) / bars_per_day)
    parts = []
    for s in range(n_symbols):
        p = np.cumsum(rng.normal(0.0, 0.01, n + 2 * horizon))
        now = p[horizon : horizon + n]
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": stamps,
                    "symbol": f"S{s}",
                    "expected_return": now - p[:n],
                    "realised_return": p[2 * horizon : 2 * horizon + n] - now,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _contributions(day: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First principles: z-score x and y with the POOLED mean and population std, average
    ``zx * zy`` per day (numpy bincount, days sorted). Returns (series, rows per day)."""
    zx = (x - x.mean()) / x.std()
    zy = (y - y.mean()) / y.std()
    _, inverse = np.unique(day, return_inverse=True)
    rows = np.bincount(inverse)
    return np.bincount(inverse, weights=zx * zy) / rows, rows


def _old_within_day(frame: pd.DataFrame, method: str = "pearson") -> pd.Series:
    """The OLD daily IC: the correlation of each day's rows (demeaned within the day)."""
    by_day = frame.groupby(frame["timestamp"].dt.floor("D"))[["expected_return", "realised_return"]]
    corr = by_day.corr(method=method)
    return corr.xs("expected_return", level=1)["realised_return"]


# --- information coefficients ------------------------------------------------------------------


def test_ic_on_the_hand_frame() -> None:
    out = information_coefficients(_hand_frame(), horizon=1, bars_per_day=1)
    # IC_KEYS plus the cross-sectional view (whether or not IC_KEYS lists those yet)
    assert set(out) == set(IC_KEYS) | set(XS_KEYS)
    assert out["ic"] == pytest.approx(4 / 15)
    assert out["rank_ic"] == pytest.approx(4 / 15)  # the values are their own ranks
    # every day has the POOLED mean (2.5) and population variance (1.25) of both columns, so
    # a day's contribution mean(zx * zy) = sum(xc * yc) / 4 / 1.25 = (5, -5, 4) / 5 here
    # equals its within-day correlation (1, -1, 0.8); the mean over the equal-sized days is
    # the pooled coefficient 4/15
    daily = np.array([1.0, -1.0, 0.8])
    assert out["ic_daily_mean"] == pytest.approx(4 / 15)
    assert out["rank_ic_daily_mean"] == pytest.approx(4 / 15)
    assert out["n_rows"] == 12
    assert out["n_days"] == 3
    # 3 days: overlap 1 day + 1 = 2, floor ceil(1.5 * 3 ** (1/3)) = ceil(2.16) = 3; cap n - 1 = 2
    assert out["nw_lags"] == 2
    assert out["t_method"] == "Newey-West HAC t of daily IC mean, Bartlett, lags=2"
    assert out["ic_t"] == pytest.approx(newey_west_t(daily, 2))
    assert out["rank_ic_t"] == pytest.approx(newey_west_t(daily, 2))
    # one bar a day across 4 symbols: the per-bar rank IC is the day's Spearman, 1, -1, 0.8
    assert out["cross_sectional_days"] == 3
    assert out["cross_sectional_rank_ic_daily_mean"] == pytest.approx(0.8 / 3)
    assert out["cross_sectional_rank_ic_t"] == pytest.approx(newey_west_t(daily, 2))


def test_daily_contributions_keep_the_between_day_component_by_hand() -> None:
    """3 days x 3 symbols, x = day level + offset, y = day level + offset (levels -1, 0, 1).

    x: day 1 = -2,-1,0; day 2 = -1,0,1; day 3 = 0,1,2  (pooled mean 0, variance 12/9 = 4/3)
    y: day 1 = -2,-1,0; day 2 = 1,0,-1; day 3 = 0,1,2  (pooled mean 0, variance 4/3)
    sum x*y per day = 5, -2, 5 -> contributions (5/3) / (4/3) = 1.25, (-2/3) / (4/3) = -0.5,
    1.25; mean 2/3 = pooled IC (8/9 / (4/3)). The within-day correlations are 1, -1, 1 (mean
    1/3): the old definition threw away the co-movement of the day levels.
    Ranks (pooled, ties averaged): -2 -> 1, -1 -> 2.5, 0 -> 5, 1 -> 7.5, 2 -> 9; centred
    -4, -2.5, 0, 2.5, 4, variance 57/9; sum of centred rank products per day 22.25, -12.5,
    22.25 -> contributions 66.75/57, -37.5/57, 66.75/57, mean = pooled rank IC = 32/57.
    """
    xs = [[-2, -1, 0], [-1, 0, 1], [0, 1, 2]]
    ys = [[-2, -1, 0], [1, 0, -1], [0, 1, 2]]
    frame = pd.DataFrame(
        [
            {
                "timestamp": DAY0 + pd.Timedelta(days=d, hours=3),
                "symbol": symbol,
                "expected_return": float(xs[d][i]),
                "realised_return": float(ys[d][i]),
            }
            for d in range(3)
            for i, symbol in enumerate("ABC")
        ]
    )
    out = information_coefficients(frame, horizon=1, bars_per_day=1)
    assert out["ic"] == pytest.approx(2 / 3)
    assert out["ic_daily_mean"] == pytest.approx(2 / 3)
    assert out["ic_t"] == pytest.approx(newey_west_t(np.array([1.25, -0.5, 1.25]), 2))
    assert out["rank_ic"] == pytest.approx(32 / 57)
    assert out["rank_ic_daily_mean"] == pytest.approx(32 / 57)
    rank_daily = np.array([66.75, -37.5, 66.75]) / 57
    assert out["rank_ic_t"] == pytest.approx(newey_west_t(rank_daily, 2))
    assert _old_within_day(frame).mean() == pytest.approx(1 / 3)  # the old, different answer
    # the cross-sectional view sees only the within-bar ordering: 1, -1, 1
    assert out["cross_sectional_rank_ic_daily_mean"] == pytest.approx(1 / 3)
    assert out["cross_sectional_days"] == 3


def test_rank_ic_ignores_an_outlier_that_moves_pearson() -> None:
    frame = _hand_frame().iloc[:4].copy()
    frame.loc[3, "expected_return"] = 100.0  # still the largest prediction
    out = information_coefficients(frame, horizon=1, bars_per_day=1)
    assert out["rank_ic"] == pytest.approx(1.0)
    assert out["ic"] < 0.9


def test_nan_rows_are_ignored_and_short_or_constant_days_still_contribute() -> None:
    frame = _hand_frame()
    extra = pd.DataFrame(
        {
            "timestamp": [DAY0 + pd.Timedelta(days=5)] * 2 + [DAY0 + pd.Timedelta(days=6)] * 4,
            "symbol": ["A", "B", "A", "B", "C", "D"],
            "expected_return": [1.0, 2.0, 0.5, 0.5, 0.5, 0.5],  # day 7: constant prediction
            "realised_return": [1.0, 2.0, 1.0, 2.0, 3.0, 4.0],
        }
    )
    nan_rows = frame.iloc[:2].assign(expected_return=np.nan)
    out = information_coefficients(
        pd.concat([frame, extra, nan_rows], ignore_index=True), horizon=1, bars_per_day=1
    )
    # the 18 valid rows, by hand (the NaN copies of day 1's A and B are dropped)
    x = np.array([1, 2, 3, 4] * 3 + [1, 2, 0.5, 0.5, 0.5, 0.5])
    y = np.array([1, 2, 3, 4, 4, 3, 2, 1, 1, 3, 2, 4, 1, 2, 1, 2, 3, 4], dtype=float)
    day = np.array([0] * 4 + [1] * 4 + [2] * 4 + [5] * 2 + [6] * 4)
    daily, rows = _contributions(day, x, y)
    assert out["n_rows"] == 12 + 6
    # each day's share of the POOLED coefficient: the 2-row day and the day with a constant
    # prediction are no longer skipped (their rows are part of the pooled IC)
    assert out["n_days"] == 5
    assert out["ic_daily_mean"] == pytest.approx(daily.mean())
    assert out["ic_t"] == pytest.approx(newey_west_t(daily, out["nw_lags"]))
    pooled = float(np.corrcoef(x, y)[0, 1])
    assert out["ic"] == pytest.approx(pooled)
    assert (daily * rows).sum() / rows.sum() == pytest.approx(pooled)  # row-weighted -> pooled
    # day 7 (constant x = 0.5 below the pooled mean, rising y) has a non-zero contribution
    assert daily[-1] == pytest.approx(
        (0.5 - x.mean()) / x.std() * ((y[-4:] - y.mean()) / y.std()).mean()
    )
    # the cross-sectional view DOES skip: day 6's bar has 2 symbols, day 7's no spread
    assert out["cross_sectional_days"] == 3
    assert out["cross_sectional_rank_ic_daily_mean"] == pytest.approx(0.8 / 3)


def test_a_constant_pooled_prediction_has_no_daily_series() -> None:
    frame = _hand_frame().assign(expected_return=0.25)
    out = information_coefficients(frame, horizon=1, bars_per_day=1)
    assert out["n_rows"] == 12
    assert out["n_days"] == 0
    for key in ("ic", "rank_ic", "ic_daily_mean", "rank_ic_daily_mean", "ic_t", "rank_ic_t"):
        assert out[key] is None


def test_daily_contributions_pool_bars_and_symbols_and_match_first_principles() -> None:
    stats = pytest.importorskip("scipy.stats")
    frame = _panel(3, n_days=12, n_symbols=3, bars_per_day=6, horizon=3, signal=0.5)
    frame.loc[frame.sample(frac=0.1, random_state=0).index, "realised_return"] = np.nan
    out = information_coefficients(frame, horizon=3, bars_per_day=6)
    valid = frame.dropna()
    x = valid["expected_return"].to_numpy()
    y = valid["realised_return"].to_numpy()
    day = valid["timestamp"].dt.floor("D").to_numpy()
    daily, rows = _contributions(day, x, y)
    rank_daily, _ = _contributions(day, stats.rankdata(x), stats.rankdata(y))
    lags = newey_west_lags(12, horizon=3, bars_per_day=6)
    assert out["n_days"] == 12
    assert out["n_rows"] == len(valid)
    assert out["nw_lags"] == lags
    assert out["ic_daily_mean"] == pytest.approx(daily.mean())
    assert out["rank_ic_daily_mean"] == pytest.approx(rank_daily.mean())
    assert out["ic_t"] == pytest.approx(newey_west_t(daily, lags))
    assert out["rank_ic_t"] == pytest.approx(newey_west_t(rank_daily, lags))
    pooled_rank = stats.spearmanr(x, y)[0]
    pooled = stats.pearsonr(x, y)[0]
    assert out["rank_ic"] == pytest.approx(pooled_rank)
    assert out["ic"] == pytest.approx(pooled)
    # the days are unequal after the NaNs: the ROW-weighted mean of the series is the pooled
    # coefficient, the plain mean (what is reported and t-tested) weighs every day equally
    assert len(set(rows)) > 1
    assert (daily * rows).sum() / rows.sum() == pytest.approx(pooled)
    assert (rank_daily * rows).sum() / rows.sum() == pytest.approx(pooled_rank)
    # cross-sectional: scipy Spearman across the symbols of each bar with >= 3 of them
    per_bar = [
        (ts.floor("D"), stats.spearmanr(g["expected_return"], g["realised_return"])[0])
        for ts, g in valid.groupby("timestamp")
        if len(g) >= 3
    ]
    xs = pd.DataFrame(per_bar, columns=["day", "ic"]).groupby("day")["ic"].mean()
    assert out["cross_sectional_days"] == len(xs)
    assert out["cross_sectional_rank_ic_daily_mean"] == pytest.approx(xs.mean())
    assert out["cross_sectional_rank_ic_t"] == pytest.approx(newey_west_t(xs.to_numpy(), lags))


def test_cross_sectional_rank_ic_by_hand() -> None:
    """Per bar: Spearman across the symbols (>= 3 of them, with spread), then the day mean.

    Day 1: 00h x 1,2,3 / y 1,2,3 -> 1; 12h x 1,2,3 / y 3,1,2 -> centred ranks (-1,0,1).(1,-1,0)
    / 2 = -0.5; 18h x 1,2,3 / y 1,1,2 (tied ranks 1.5,1.5,3, centred -0.5,-0.5,1) -> 1.5 /
    sqrt(2 * 1.5) = sqrt(3)/2. Day 2: 00h only 2 symbols (skipped), 06h constant prediction
    (skipped), 12h x 10,20,30 / y 0.3,0.2,0.1 -> -1. Day 3: only a 2-symbol bar -> no value.
    Day 4: 4 symbols, x 1,2,3,4 / y 1,2,4,3 -> 1 - 6 * 2 / (4 * 15) = 0.8.
    """
    bars = [
        (0, 0, "ABC", [1, 2, 3], [1, 2, 3]),
        (0, 12, "ABC", [1, 2, 3], [3, 1, 2]),
        (0, 18, "ABC", [1, 2, 3], [1, 1, 2]),
        (1, 0, "AB", [1, 2], [1, 2]),
        (1, 6, "ABC", [5, 5, 5], [1, 2, 3]),
        (1, 12, "ABC", [10, 20, 30], [0.3, 0.2, 0.1]),
        (2, 0, "AB", [1, 2], [2, 1]),
        (3, 0, "ABCD", [1, 2, 3, 4], [1, 2, 4, 3]),
    ]
    frame = pd.DataFrame(
        [
            {
                "timestamp": DAY0 + pd.Timedelta(days=d, hours=h),
                "symbol": symbol,
                "expected_return": float(px),
                "realised_return": float(py),
            }
            for d, h, symbols, pxs, pys in bars
            for symbol, px, py in zip(symbols, pxs, pys, strict=True)
        ]
    ).sample(frac=1.0, random_state=2)  # row order must not matter
    out = information_coefficients(frame, horizon=1, bars_per_day=1)
    series = np.array([(1.0 - 0.5 + math.sqrt(3) / 2) / 3, -1.0, 0.8])
    assert out["n_days"] == 4  # the pooled series still counts day 3
    assert out["cross_sectional_days"] == 3
    assert out["cross_sectional_rank_ic_daily_mean"] == pytest.approx(series.mean())
    assert out["cross_sectional_rank_ic_t"] == pytest.approx(newey_west_t(series, out["nw_lags"]))
    # fewer than 3 symbols in the frame, or no symbol column: no cross-sectional view
    for part in (frame[frame["symbol"].isin(["A", "B"])], frame.drop(columns="symbol")):
        two = information_coefficients(part, horizon=1, bars_per_day=1)
        assert two["cross_sectional_days"] == 0
        assert two["cross_sectional_rank_ic_daily_mean"] is None
        assert two["cross_sectional_rank_ic_t"] is None


def test_a_planted_signal_is_significant() -> None:
    out = information_coefficients(_panel(7, signal=0.3), horizon=24, bars_per_day=24)
    assert out["rank_ic"] > 0.05
    assert out["rank_ic_daily_mean"] > 0.05
    assert out["rank_ic_t"] > 3.0
    assert out["ic_t"] > 3.0
    assert out["cross_sectional_rank_ic_daily_mean"] > 0.05
    assert out["cross_sectional_rank_ic_t"] > 3.0


def test_pure_noise_is_rarely_significant_and_the_naive_row_t_would_be() -> None:
    nw_exceed, xs_exceed, naive_exceed = 0, 0, 0
    for seed in range(20):
        out = information_coefficients(_panel(100 + seed), horizon=24, bars_per_day=24)
        nw_exceed += abs(out["rank_ic_t"]) >= 2.5
        xs_exceed += abs(out["cross_sectional_rank_ic_t"]) >= 2.5
        # the i.i.d. t on overlapping rows that the module must not report
        naive = out["rank_ic"] * math.sqrt(out["n_rows"] - 2) / math.sqrt(1 - out["rank_ic"] ** 2)
        naive_exceed += abs(naive) >= 2.5
    assert nw_exceed <= 3
    assert xs_exceed <= 3
    assert naive_exceed > nw_exceed


def test_trailing_return_forecast_on_a_random_walk_is_not_a_signal() -> None:
    """Why the daily series changed: forecast = trailing 24-bar return, target = forward 24-bar
    return, prices a pure random walk. Demeaning both inside each day makes a backward sum and
    a forward sum that share the day's path negatively correlated, so the OLD within-day daily
    IC is strongly negative (about -0.2 with 2 symbols) and its t hugely "significant". Each
    day's contribution to the pooled coefficient has mean ~0 and an honest t."""
    for seed in (1, 2, 3):
        frame = _random_walk_momentum(seed, n_days=300, n_symbols=2)
        out = information_coefficients(frame, horizon=24, bars_per_day=24)
        lags = out["nw_lags"]
        old = _old_within_day(frame)
        old_rank = _old_within_day(frame, "spearman")
        assert len(old) == out["n_days"] == 300
        assert old.mean() < -0.15 and old_rank.mean() < -0.15
        assert newey_west_t(old.to_numpy(), lags) < -4.0
        assert abs(out["ic_daily_mean"]) < 0.05 and abs(out["rank_ic_daily_mean"]) < 0.05
        assert abs(out["ic_t"]) < 2.5 and abs(out["rank_ic_t"]) < 2.5
        assert abs(out["ic"]) < 0.05  # the pooled coefficient never had the bias


def test_hit_rate_excludes_zero_predictions_and_targets() -> None:
    frame = pd.DataFrame(
        {
            "timestamp": [DAY0] * 5,
            "symbol": list("ABCDE"),
            "expected_return": [1.0, -1.0, 0.0, 2.0, -3.0],
            "realised_return": [1.0, 1.0, -1.0, 0.0, -0.5],
        }
    )
    out = information_coefficients(frame, horizon=1, bars_per_day=24)
    assert out["hit_rate_n"] == 3  # rows C (pred 0) and D (target 0) excluded
    assert out["hit_rate"] == pytest.approx(2 / 3)


def test_empty_input_gives_none_and_bad_columns_raise() -> None:
    out = information_coefficients(_hand_frame().iloc[:0], horizon=4, bars_per_day=24)
    assert out["n_rows"] == 0 and out["n_days"] == 0 and out["hit_rate_n"] == 0
    assert out["cross_sectional_days"] == 0
    for key in (
        "ic",
        "rank_ic",
        "ic_daily_mean",
        "rank_ic_daily_mean",
        "ic_t",
        "rank_ic_t",
        "cross_sectional_rank_ic_daily_mean",
        "cross_sectional_rank_ic_t",
    ):
        assert out[key] is None
    with pytest.raises(InputError, match="prediction"):
        information_coefficients(_hand_frame(), pred_col="prediction", horizon=1, bars_per_day=24)
    with pytest.raises(InputError):
        information_coefficients(_hand_frame(), horizon=0, bars_per_day=24)


def test_per_fold_matches_the_stats_of_each_fold() -> None:
    frame = _panel(5, n_days=20, signal=0.2)
    frame["fold"] = np.where(frame["timestamp"] < DAY0 + pd.Timedelta(days=10), 1, 0)
    folds = per_fold(frame, horizon=24, bars_per_day=24)
    assert [f["fold"] for f in folds] == [0, 1]
    for f in folds:
        own = information_coefficients(
            frame[frame["fold"] == f["fold"]], horizon=24, bars_per_day=24
        )
        assert {k: v for k, v in f.items() if k != "fold"} == own
    assert folds[0]["n_days"] == folds[1]["n_days"] == 10
    assert per_fold(frame.iloc[:0], horizon=24, bars_per_day=24) == []
    with pytest.raises(InputError, match="split"):
        per_fold(frame, fold_col="split", horizon=24, bars_per_day=24)


# --- Newey–West ----------------------------------------------------------------------------------


def test_newey_west_t_by_hand() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # mean 3, e = -2,-1,0,1,2; gamma0 = 10/5 = 2; gamma1 = (2 + 0 + 0 + 2)/5 = 0.8;
    # gamma2 = (0 - 1 + 0)/5 = -0.2
    assert newey_west_t(x, 1) == pytest.approx(3 / math.sqrt((2 + 2 * 0.5 * 0.8) / 5))
    s2 = 2 + 2 * (2 / 3 * 0.8 + 1 / 3 * -0.2)
    assert newey_west_t(x, 2) == pytest.approx(3 / math.sqrt(s2 / 5))
    assert newey_west_t(x, 0) == pytest.approx(3 / math.sqrt(2 / 5))


def test_newey_west_is_smaller_than_naive_on_ar1_and_equals_it_at_lag_zero() -> None:
    rng = np.random.default_rng(11)
    n = 3000
    x = np.empty(n)
    x[0] = 0.0
    shocks = rng.normal(0.0, 1.0, n)
    for t in range(1, n):
        x[t] = 0.8 * x[t - 1] + shocks[t]
    x += 0.2
    naive = x.mean() / (x.std(ddof=0) / math.sqrt(n))  # population-variance convention
    assert newey_west_t(x, 0) == pytest.approx(naive)
    nw = newey_west_t(x, 20)
    assert 0 < nw < naive
    # long-run variance of AR(1) is (1 + phi) / (1 - phi) = 9 times the variance: t ~ naive / 3
    assert nw / naive == pytest.approx(1 / 3, rel=0.25)


def test_newey_west_degenerate_inputs_and_lag_rule() -> None:
    assert newey_west_t(np.array([1.0, 2.0]), 1) is None
    assert newey_west_t(np.full(10, 0.3), 2) is None
    assert newey_west_t(np.array([1.0, np.nan, 2.0, 4.0]), 1) == pytest.approx(
        newey_west_t(np.array([1.0, 2.0, 4.0]), 1)
    )
    # L = min(max(overlap, NW94 floor(4 (n/100)^(2/9)), ceil(1.5 n^(1/3))), n - 1)
    # 10 days: NW94 floor(4 * 0.1 ** (2/9)) = floor(2.40) = 2, ceil(1.5 * 2.154) = ceil(3.23) = 4
    assert newey_west_lags(10, horizon=48, bars_per_day=24) == 4  # overlap 2 days + 1 = 3 < 4
    assert newey_west_lags(10, horizon=1, bars_per_day=24) == 4  # overlap 1 + 1 = 2 < 4
    # 100 days: NW94 4, cube-root floor ceil(1.5 * 4.642) = ceil(6.96) = 7
    assert newey_west_lags(100, horizon=24, bars_per_day=24) == 7
    # a 10-day horizon: overlap 10 + 1 = 11 binds over 7
    assert newey_west_lags(100, horizon=240, bars_per_day=24) == 11
    # 1000 days: NW94 floor(4 * 10 ** (2/9)) = floor(6.67) = 6, cube-root floor 1.5 * 10 = 15
    assert newey_west_lags(1000, horizon=1, bars_per_day=24) == 15
    assert newey_west_lags(10, horizon=240, bars_per_day=24) == 9  # overlap 11, capped at n - 1
    assert newey_west_lags(2, horizon=48, bars_per_day=24) == 1  # capped at n - 1
    assert newey_west_lags(0, horizon=1, bars_per_day=24) == 0
    with pytest.raises(InputError):
        newey_west_lags(10, horizon=1, bars_per_day=0)


# --- Sharpe by year, beta, market basket ----------------------------------------------------------


def test_sharpe_by_year_uses_day_end_equity() -> None:
    days = pd.date_range("2024-12-01", "2025-01-31", freq="D", tz="UTC")
    rng = np.random.default_rng(4)
    daily_r = np.where(np.arange(len(days)) % 2 == 0, 0.02, -0.01)
    daily_r[days.year == 2025] = rng.normal(-0.001, 0.02, int((days.year == 2025).sum()))
    day_end = 100.0 * np.cumprod(1.0 + daily_r)
    # 4 bars a day; only the last bar of the day carries the day-end equity
    stamps, values = [], []
    for day, eq in zip(days, day_end, strict=True):
        for hour, noise in zip((0, 6, 12, 18), [*rng.normal(0, 5, 3).tolist(), 0.0], strict=True):
            stamps.append(day + pd.Timedelta(hours=hour))
            values.append(eq + noise)
    equity = pd.Series(values, index=pd.DatetimeIndex(stamps))
    out = sharpe_by_year(equity)
    assert list(out) == ["2024", "2025"]
    expected_2024 = daily_r[1:31]  # the first day has no previous close
    expected_2025 = daily_r[31:]
    for key, r in (("2024", expected_2024), ("2025", expected_2025)):
        assert out[key] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365))
    assert out["2024"] > 5  # +2% / -1% alternating is a huge Sharpe


def test_sharpe_by_year_degenerate_years() -> None:
    days = pd.date_range("2024-12-30", "2025-01-05", freq="D", tz="UTC")
    equity = pd.Series(100.0 * 1.001 ** np.arange(len(days)), index=days)
    # 2024: one return only; 2025: constant returns (zero std)
    assert sharpe_by_year(equity) == {"2024": None, "2025": None}
    assert sharpe_by_year(pd.Series([], dtype=float, index=pd.DatetimeIndex([], tz="UTC"))) == {}
    with pytest.raises(InputError):
        sharpe_by_year(pd.Series([1.0, 2.0], index=pd.date_range("2024-01-01", periods=2)))


def test_market_beta_recovers_a_planted_beta() -> None:
    rng = np.random.default_rng(8)
    days = pd.date_range("2022-01-01", periods=2000, freq="D", tz="UTC")
    market = pd.Series(rng.normal(0.0, 0.03, len(days)), index=days)
    strategy = 0.0005 + 0.5 * market + rng.normal(0.0, 0.01, len(days))
    out = market_beta(strategy.iloc[5:], market.iloc[:-5])  # only common days count
    assert out["n_days"] == len(days) - 10
    assert out["beta"] == pytest.approx(0.5, abs=0.02)
    assert out["alpha_daily"] == pytest.approx(0.0005, abs=0.0007)
    assert out["correlation"] == pytest.approx(0.5 * 0.03 / math.hypot(0.015, 0.01), abs=0.03)
    common = strategy.index[5:-5]
    residual = strategy[common] - out["beta"] * market[common]
    assert out["residual_sharpe"] == pytest.approx(
        residual.mean() / residual.std(ddof=1) * math.sqrt(365)
    )
    empty = market_beta(strategy.iloc[:2], market.iloc[:2])
    assert empty["beta"] is None and empty["residual_sharpe"] is None and empty["n_days"] == 2


def test_equal_weight_market_returns_by_hand() -> None:
    def bars(symbol: str, closes: dict[int, float]) -> list[dict[str, object]]:
        rows = []
        for day, close in closes.items():
            start = DAY0 + pd.Timedelta(days=day)
            rows.append({"timestamp": start, "symbol": symbol, "close": close * 3})  # not last
            rows.append(
                {"timestamp": start + pd.Timedelta(hours=23), "symbol": symbol, "close": close}
            )
        return rows

    # A: 100 -> 110 -> 99; B: 50, (no day 2), 55; C: 10 -> 10 -> 12
    rows = bars("A", {0: 100, 1: 110, 2: 99}) + bars("B", {0: 50, 2: 55})
    rows += bars("C", {0: 10, 1: 10, 2: 12})
    candles = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # order must not matter
    out = equal_weight_market_returns(candles)
    assert list(out.index) == [DAY0 + pd.Timedelta(days=1), DAY0 + pd.Timedelta(days=2)]
    # day 2: A +10%, C 0% -> 5%; day 3: A -10%, C +20%, B has no day-2 close -> 5%
    assert out.iloc[0] == pytest.approx((0.10 + 0.0) / 2)
    assert out.iloc[1] == pytest.approx((-0.10 + 0.20) / 2)
    assert equal_weight_market_returns(candles.iloc[:0]).empty
    with pytest.raises(InputError, match="close"):
        equal_weight_market_returns(candles.drop(columns="close"))


# --- break-even fee -------------------------------------------------------------------------------


def test_break_even_fee_finds_the_root_of_a_linear_sharpe() -> None:
    calls: list[float] = []

    def sharpe(fee: float) -> float:
        calls.append(fee)
        return 2.0 - 1000.0 * fee  # root at 0.002

    out = break_even_fee(sharpe, current_fee=0.0005, tol=1e-7)
    assert out["status"] == "converged"
    assert out["break_even_taker_fee"] == pytest.approx(0.002, abs=1e-7)
    assert out["evaluations"] == len(calls) <= 40 + 2
    assert out["fee_headroom"] == pytest.approx(0.0015, abs=1e-7)
    assert out["fee_multiple"] == pytest.approx(4.0, rel=1e-3)
    assert out["sharpe_at_zero_fee"] == pytest.approx(2.0)


def test_break_even_fee_edge_cases() -> None:
    none = break_even_fee(lambda fee: -0.5 - fee, current_fee=0.0005)
    assert none["break_even_taker_fee"] == 0.0 and none["status"] == "no edge before fees"
    assert none["evaluations"] == 1
    above = break_even_fee(lambda fee: 5.0 - fee, current_fee=0.0005, upper=0.01)
    assert above["break_even_taker_fee"] == 0.01 and above["status"] == "above upper bound"
    capped = break_even_fee(lambda fee: 1.0 - 300.0 * fee, current_fee=0.0, max_iter=3)
    assert capped["status"] == "max_iter reached" and capped["evaluations"] == 2 + 3
    assert capped["fee_multiple"] is None
    undefined = break_even_fee(lambda fee: None, current_fee=0.0005)
    assert undefined["break_even_taker_fee"] is None and undefined["status"] == "sharpe undefined"
    with pytest.raises(InputError):
        break_even_fee(lambda fee: 1.0, current_fee=0.0005, upper=0.0)
