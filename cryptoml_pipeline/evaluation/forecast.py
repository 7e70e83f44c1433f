"""Forecast-first evaluation: is the prediction informative before any trading rule touches it?

Inputs are long frames with ``timestamp`` (datetime64[ns, UTC]; naive values are read as UTC),
a prediction column (default ``expected_return``) and a realised-target column (default
``realised_return``); rows where either value (or the timestamp) is missing are ignored.

* **IC / rank IC** — pooled Pearson / Spearman over every valid row. Spearman is the Pearson
  correlation of average ranks (ties share their mean rank), computed with pandas, no scipy.
* **Daily IC series** — for each UTC calendar day, the correlation across ALL valid rows of that
  day (pooled over symbols and bars). Days with fewer than 3 valid rows, or with a constant
  prediction or target, are skipped. The series is ordered by day; calendar gaps are not filled.
* **t-statistics** — of the MEAN of the daily IC series, with Newey–West (Bartlett kernel)
  standard errors, never an i.i.d. t on overlapping rows. Lag rule (:func:`newey_west_lags`)::

      L_overlap = max(ceil(horizon / bars_per_day), 1) + 1   # days a target window spans, + 1
      L_auto    = floor(4 * (n_days / 100) ** (2 / 9))       # Newey–West (1994) rule of thumb
      L         = min(max(L_overlap, L_auto), n_days - 1)

* **Newey–West convention** (:func:`newey_west_t`): with ``e = x - mean(x)`` and ``n``
  observations, ``gamma_k = sum(e[k:] * e[:-k]) / n`` (population convention, divided by ``n``),
  long-run variance ``S = gamma_0 + 2 * sum_{k=1..L} (1 - k / (L + 1)) * gamma_k`` and
  ``t = mean / sqrt(S / n)``. With ``L = 0`` this is the naive ``mean / (std(ddof=0) / sqrt(n))``.
* **Hit rate** — share of rows with ``sign(pred) == sign(target)``; rows where either is exactly 0
  are excluded (``hit_rate_n`` counts the rows used).

Also here: per-fold statistics, per-calendar-year Sharpe from DAILY equity returns, beta to an
equal-weight market basket (and that basket), and the break-even taker fee by bisection.
Sharpes are annualised with a 365-day year (crypto trades every calendar day).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.execution.decisions import require_columns, utc_ns

DAYS_PER_YEAR = 365.0
NS_PER_DAY = 86_400 * 1_000_000_000
MIN_DAY_ROWS = 3
_ZERO_STD = 1e-12  # a daily-return std below this counts as zero (float noise, not risk)

IC_KEYS: tuple[str, ...] = (
    "ic",
    "rank_ic",
    "ic_daily_mean",
    "rank_ic_daily_mean",
    "ic_t",
    "rank_ic_t",
    "nw_lags",
    "t_method",
    "n_rows",
    "n_days",
    "hit_rate",
    "hit_rate_n",
)


# Newey–West


def newey_west_lags(n_obs: int, *, horizon: int, bars_per_day: int) -> int:
    """Bartlett lags for a daily series of ``n_obs`` days (rule in the module docstring)."""
    if horizon < 1 or bars_per_day < 1:
        raise InputError(f"horizon and bars_per_day must be >= 1, got {horizon}, {bars_per_day}")
    overlap = max(math.ceil(horizon / bars_per_day), 1) + 1
    # Newey-West (1994) plug-in, and at least 1.5 n^(1/3): forecasts built from slow features
    # (weekly volatility, monthly regimes) persist for weeks, so daily ICs stay autocorrelated
    auto = (
        max(math.floor(4.0 * (n_obs / 100.0) ** (2.0 / 9.0)), math.ceil(1.5 * n_obs ** (1 / 3)))
        if n_obs > 0
        else 0
    )
    return max(min(max(overlap, auto), n_obs - 1), 0)


def newey_west_t(series: np.ndarray, lags: int) -> float | None:
    """Newey–West (Bartlett) t-statistic of the mean of ``series``.

    Non-finite values are dropped; ``lags`` is capped at ``n - 1``. None with fewer than 3
    observations or zero variance. Population convention (see the module docstring): with
    ``lags=0`` the result equals ``mean / (std(ddof=0) / sqrt(n))``.
    """
    if lags < 0:
        raise InputError(f"lags must be >= 0, got {lags}")
    x = np.asarray(series, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 3 or not x.max() > x.min():
        return None
    e = x - x.mean()
    lags = min(int(lags), n - 1)
    s = float(e @ e) / n
    for k in range(1, lags + 1):
        s += 2.0 * (1.0 - k / (lags + 1.0)) * float(e[k:] @ e[:-k]) / n
    if not s > 0:
        return None
    return float(x.mean() / math.sqrt(s / n))


# Information coefficients


def _grouped_pearson(keys: np.ndarray, x: np.ndarray, y: np.ndarray) -> pd.Series:
    """Pearson correlation of ``x`` and ``y`` within each key; NaN where the group has fewer
    than 3 rows or a constant ``x`` or ``y``. Indexed by the sorted keys."""
    frame = pd.DataFrame({"k": keys, "x": x, "y": y})
    grouped = frame.groupby("k", sort=True)
    xc = x - grouped["x"].transform("mean").to_numpy()
    yc = y - grouped["y"].transform("mean").to_numpy()
    sums = pd.DataFrame({"k": keys, "xx": xc * xc, "yy": yc * yc, "xy": xc * yc})
    sums = sums.groupby("k", sort=True).sum()
    lo = grouped[["x", "y"]].min()
    hi = grouped[["x", "y"]].max()
    ok = (grouped.size() >= MIN_DAY_ROWS) & (hi["x"] > lo["x"]) & (hi["y"] > lo["y"])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sums["xy"] / np.sqrt(sums["xx"] * sums["yy"])
    return r.where(ok).clip(-1.0, 1.0)


def _single(values: pd.Series) -> float | None:
    if values.empty or not np.isfinite(values.iloc[0]):
        return None
    return float(values.iloc[0])


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _t_method(lags: int) -> str:
    return f"Newey-West HAC t of daily IC mean, Bartlett, lags={lags}"


def information_coefficients(
    frame: pd.DataFrame,
    *,
    pred_col: str = "expected_return",
    target_col: str = "realised_return",
    horizon: int,
    bars_per_day: int,
) -> dict[str, Any]:
    """IC, rank IC, their daily means and Newey–West t-statistics, and the hit rate.

    ``horizon`` is the target's horizon in bars and ``bars_per_day`` the bar count of one day;
    together they set the minimum Newey–West lag (module docstring). Keys: :data:`IC_KEYS`.
    Statistics that cannot be computed (empty input, too few rows or days) are None.
    """
    require_columns(frame, ("timestamp", pred_col, target_col), "forecast frame")
    newey_west_lags(0, horizon=horizon, bars_per_day=bars_per_day)  # validates the arguments
    pred = pd.to_numeric(frame[pred_col], errors="coerce").to_numpy(np.float64)
    target = pd.to_numeric(frame[target_col], errors="coerce").to_numpy(np.float64)
    valid = np.isfinite(pred) & np.isfinite(target) & frame["timestamp"].notna().to_numpy()
    x, y = pred[valid], target[valid]
    day = utc_ns(frame["timestamp"][valid]) // NS_PER_DAY

    hit_mask = (x != 0) & (y != 0)
    hit_n = int(hit_mask.sum())
    hit_rate = float(np.mean(np.sign(x[hit_mask]) == np.sign(y[hit_mask]))) if hit_n else None

    if len(x):
        pooled_keys = np.zeros(len(x), dtype=np.int64)
        ic = _single(_grouped_pearson(pooled_keys, x, y))
        rank_x = pd.Series(x).rank().to_numpy()
        rank_y = pd.Series(y).rank().to_numpy()
        rank_ic = _single(_grouped_pearson(pooled_keys, rank_x, rank_y))
        # daily contributions to the POOLED coefficient: rows standardised with the pooled mean
        # and std (never the day's own: demeaning a backward-looking forecast and a forward
        # return inside each day biases a within-day correlation), averaged per day
        daily_ic = _daily_contributions(day, x, y)
        daily_rank_ic = _daily_contributions(day, rank_x, rank_y)
        xs = _cross_sectional_daily(frame.loc[valid], x, y, day)
    else:
        ic = rank_ic = None
        daily_ic = daily_rank_ic = xs = np.empty(0)

    n_days = len(daily_rank_ic)
    lags = newey_west_lags(n_days, horizon=horizon, bars_per_day=bars_per_day)
    return {
        "ic": ic,
        "rank_ic": rank_ic,
        "ic_daily_mean": _mean_or_none(daily_ic),
        "rank_ic_daily_mean": _mean_or_none(daily_rank_ic),
        "ic_t": newey_west_t(daily_ic, lags),
        "rank_ic_t": newey_west_t(daily_rank_ic, lags),
        "nw_lags": lags,
        "t_method": _t_method(lags),
        "n_rows": len(x),
        "n_days": n_days,
        "hit_rate": hit_rate,
        "hit_rate_n": hit_n,
        "cross_sectional_rank_ic_daily_mean": _mean_or_none(xs),
        "cross_sectional_rank_ic_t": newey_west_t(xs, lags),
        "cross_sectional_days": len(xs),
    }


def _daily_contributions(day: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per day: mean of ``zx * zy`` over its rows, with ``z`` standardised over ALL rows; the
    day-weighted mean of the series is the pooled Pearson coefficient."""
    sx, sy = float(np.std(x)), float(np.std(y))
    if len(x) < 3 or sx == 0 or sy == 0:
        return np.empty(0)
    prod = (x - x.mean()) / sx * ((y - y.mean()) / sy)
    return pd.Series(prod).groupby(day).mean().to_numpy()


def _cross_sectional_daily(
    frame: pd.DataFrame, x: np.ndarray, y: np.ndarray, day: np.ndarray
) -> np.ndarray:
    """Per day: the mean over its bars of the rank IC ACROSS SYMBOLS at that bar (bars with
    fewer than 3 symbols or no spread skipped) — the pure cross-sectional view."""
    if "symbol" not in frame.columns or frame["symbol"].nunique() < 3:
        return np.empty(0)
    bar = utc_ns(frame["timestamp"])
    g = pd.DataFrame({"bar": bar, "day": day, "x": x, "y": y})
    ranks = g.groupby("bar")[["x", "y"]].rank()
    per_bar = _grouped_pearson(bar, ranks["x"].to_numpy(), ranks["y"].to_numpy())
    days = pd.Series(g.groupby("bar")["day"].first())
    return per_bar.groupby(days.reindex(per_bar.index).to_numpy()).mean().dropna().to_numpy()


def per_fold(
    frame: pd.DataFrame,
    fold_col: str = "fold",
    *,
    pred_col: str = "expected_return",
    target_col: str = "realised_return",
    horizon: int,
    bars_per_day: int,
) -> list[dict[str, Any]]:
    """:func:`information_coefficients` per fold, sorted by fold, each dict with a ``fold`` key.

    Rows with a missing fold are ignored; an empty frame gives an empty list.
    """
    require_columns(frame, ("timestamp", fold_col, pred_col, target_col), "forecast frame")
    return [
        {
            "fold": fold.item() if isinstance(fold, np.generic) else fold,
            **information_coefficients(
                part,
                pred_col=pred_col,
                target_col=target_col,
                horizon=horizon,
                bars_per_day=bars_per_day,
            ),
        }
        for fold, part in frame.groupby(fold_col, sort=True, dropna=True)
    ]


# Sharpe by year, market beta


def _annualised_sharpe(returns: np.ndarray, days_per_year: float) -> float | None:
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    if len(r) < 2:
        return None
    std = float(np.std(r, ddof=1))
    if not std > _ZERO_STD:
        return None
    return float(r.mean() / std * math.sqrt(days_per_year))


def daily_equity_returns(equity: pd.Series) -> pd.Series:
    """Simple returns of the UTC-day-end equity (last mark of each day), indexed by the day.

    A day without any bar keeps the previous day's equity (a 0 return: nothing was marked);
    the first day has no return and is dropped.
    """
    eq = equity.dropna()
    if eq.empty:
        index = pd.DatetimeIndex([], tz="UTC")
        return pd.Series(dtype=np.float64, index=index, name="daily_return")
    if not isinstance(eq.index, pd.DatetimeIndex) or eq.index.tz is None:
        raise InputError("equity must be indexed by tz-aware timestamps")
    daily = eq.tz_convert("UTC").sort_index().resample("1D").last().ffill()
    return daily.pct_change().iloc[1:].rename("daily_return")


def sharpe_by_year(
    equity: pd.Series, *, days_per_year: float = DAYS_PER_YEAR
) -> dict[str, float | None]:
    """Net annualised Sharpe per calendar year, from DAILY returns of the equity curve.

    Daily returns as in :func:`daily_equity_returns`; a return belongs to the year of the day it
    ends. Sharpe = mean / std (ddof=1) * sqrt(``days_per_year``); None for a year with fewer
    than 2 returns or zero std. Keys are years as strings ("2024", ...); empty input -> ``{}``.
    """
    returns = daily_equity_returns(equity)
    years = returns.index.year
    return {
        str(year): _annualised_sharpe(part.to_numpy(), days_per_year)
        for year, part in returns.groupby(years, sort=True)
    }


def market_beta(strategy_daily: pd.Series, market_daily: pd.Series) -> dict[str, float | None]:
    """OLS beta of the strategy's daily returns on the market's, over their common days.

    ``beta = cov(s, m) / var(m)`` (ddof=1), ``alpha_daily = mean(s) - beta * mean(m)``,
    ``residual_sharpe`` = annualised (365-day) Sharpe of ``s - beta * m`` (alpha included),
    ``correlation`` = Pearson of s and m. Values are None with fewer than 3 common days or a
    constant market (or strategy, for the correlation).
    """
    both = pd.concat([strategy_daily.rename("s"), market_daily.rename("m")], axis=1, join="inner")
    both = both.dropna()
    s, m = both["s"].to_numpy(np.float64), both["m"].to_numpy(np.float64)
    out: dict[str, float | None] = {
        "beta": None,
        "alpha_daily": None,
        "residual_sharpe": None,
        "correlation": None,
        "n_days": len(both),
    }
    if len(both) < 3 or not m.max() > m.min():
        return out
    var_m = float(np.var(m, ddof=1))
    beta = float(np.cov(s, m, ddof=1)[0, 1] / var_m)
    residual = s - beta * m
    out["beta"] = beta
    out["alpha_daily"] = float(s.mean() - beta * m.mean())
    out["residual_sharpe"] = _annualised_sharpe(residual, DAYS_PER_YEAR)
    if s.max() > s.min():
        out["correlation"] = float(np.clip(np.corrcoef(s, m)[0, 1], -1.0, 1.0))
    return out


def equal_weight_market_returns(candles: pd.DataFrame) -> pd.Series:
    """Daily returns of an equal-weight, daily-rebalanced basket of every symbol in ``candles``.

    Per symbol: the close of each UTC day is its last ``close`` of that day, and its daily return
    is close-to-close against the PREVIOUS calendar day's close; a symbol without a close on the
    previous day has no return that day (no forward fill across gaps). The basket's return is
    the mean over the symbols with a return that day. Indexed by the day (00:00 UTC); days
    without any symbol's return are dropped. Empty input -> empty series.
    """
    require_columns(candles, ("timestamp", "symbol", "close"), "candles")
    close = pd.to_numeric(candles["close"], errors="coerce").to_numpy(np.float64)
    ok = np.isfinite(close) & candles["timestamp"].notna().to_numpy()
    if not ok.any():
        return pd.Series(dtype=np.float64, index=pd.DatetimeIndex([], tz="UTC"), name="market")
    ns = utc_ns(candles["timestamp"][ok])
    frame = pd.DataFrame(
        {"ns": ns, "day": ns // NS_PER_DAY, "symbol": candles["symbol"].to_numpy()[ok]}
    ).assign(close=close[ok])
    frame = frame.sort_values(["symbol", "ns"], kind="stable")
    wide = frame.groupby(["day", "symbol"], sort=True)["close"].last().unstack("symbol")
    wide = wide.reindex(np.arange(wide.index.min(), wide.index.max() + 1))
    market = wide.pct_change(fill_method=None).mean(axis=1, skipna=True).dropna()
    index = pd.DatetimeIndex(
        (market.index.to_numpy(np.int64) * NS_PER_DAY).view("datetime64[ns]")
    ).tz_localize("UTC")
    return pd.Series(market.to_numpy(np.float64), index=index, name="market")


# Break-even fee


def break_even_fee(
    net_sharpe_at_fee: Callable[[float], float | None],
    *,
    current_fee: float,
    upper: float = 0.01,
    tol: float = 1e-6,
    max_iter: int = 40,
) -> dict[str, Any]:
    """Taker fee at which the same trades, re-priced, have net Sharpe 0 (bisection on [0, upper]).

    Assumes the Sharpe decreases with the fee. Status: "converged" (bracket narrower than
    ``tol``), "max_iter reached", "no edge before fees" (Sharpe at fee 0 is <= 0: fee 0.0),
    "above upper bound" (still > 0 at ``upper``: ``upper`` returned) or "sharpe undefined"
    (the callable returned None: fee None). ``evaluations`` counts calls of the callable;
    ``fee_headroom`` is break-even minus ``current_fee`` and ``fee_multiple`` their ratio.
    """
    if not upper > 0 or not tol > 0 or max_iter < 1 or current_fee < 0:
        raise InputError(
            "break_even_fee needs upper > 0, tol > 0, max_iter >= 1 and current_fee >= 0"
        )
    evaluations = 0

    def sharpe(fee: float) -> float | None:
        nonlocal evaluations
        evaluations += 1
        value = net_sharpe_at_fee(fee)
        return None if value is None or not np.isfinite(value) else float(value)

    def result(fee: float | None, status: str, at_zero: float | None) -> dict[str, Any]:
        return {
            "break_even_taker_fee": fee,
            "status": status,
            "evaluations": evaluations,
            "sharpe_at_zero_fee": at_zero,
            "current_fee": current_fee,
            "fee_headroom": None if fee is None else fee - current_fee,
            "fee_multiple": fee / current_fee if fee is not None and current_fee > 0 else None,
        }

    at_zero = sharpe(0.0)
    if at_zero is None:
        return result(None, "sharpe undefined", None)
    if at_zero <= 0:
        return result(0.0, "no edge before fees", at_zero)
    at_upper = sharpe(upper)
    if at_upper is None:
        return result(None, "sharpe undefined", at_zero)
    if at_upper > 0:
        return result(upper, "above upper bound", at_zero)
    lo, hi = 0.0, upper
    for _ in range(max_iter):
        if hi - lo <= tol:
            break
        mid = 0.5 * (lo + hi)
        value = sharpe(mid)
        if value is None:
            return result(None, "sharpe undefined", at_zero)
        if value > 0:
            lo = mid
        else:
            hi = mid
    status = "converged" if hi - lo <= tol else "max_iter reached"
    return result(0.5 * (lo + hi), status, at_zero)
