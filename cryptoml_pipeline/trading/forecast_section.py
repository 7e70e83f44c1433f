"""The report's forecast-first section: how much the model learned, before and after costs.

Pure: joins the out-of-sample predictions with the realised target (``labels.realised_return``:
``open[t+1+h] / open[t+1] - 1``, what a position filled at the next open earns before costs) and
scores ``expected_return`` against it with :mod:`trading.forecast` (IC, rank IC, Newey-West t on
daily ICs, hit rate), per fold and overall; adds the strategy's net Sharpe by calendar year and its
beta to the universe's equal-weight market; and splits everything into the ``development`` and
``held_back`` periods when a hold-out start is given (the trades are never split: one run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.timing import bars_per_day
from cryptoml_pipeline.trading.forecast import (
    daily_equity_returns,
    equal_weight_market_returns,
    information_coefficients,
    market_beta,
    per_fold,
    sharpe_by_year,
)

TOP_KEYS = ("rank_ic", "rank_ic_t", "ic", "ic_t", "hit_rate", "t_method")


def scored_predictions(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``timestamp, symbol, fold, expected_return, realised_return`` for every prediction."""
    keys = ["timestamp", "symbol"]
    lab = labels.loc[:, [*keys, "realised_return"]].copy()
    pred = predictions.loc[:, [*keys, "fold", "expected_return"]].copy()
    for frame in (lab, pred):
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).astype(
            "datetime64[ns, UTC]"
        )
        frame["symbol"] = frame["symbol"].astype(str)
    return pred.merge(lab, on=keys, how="left", validate="one_to_one")


def forecast_stats(
    scored: pd.DataFrame, *, horizon: int, timeframe: str, with_folds: bool = True
) -> dict[str, Any]:
    """Top-level ``rank_ic, rank_ic_t, ic, ic_t, hit_rate, t_method`` plus ``details`` (daily
    means, counts, lags) and ``per_fold``."""
    bpd = round(bars_per_day(timeframe))
    stats = information_coefficients(scored, horizon=horizon, bars_per_day=bpd)
    out: dict[str, Any] = {k: stats.get(k) for k in TOP_KEYS}
    out["details"] = {k: v for k, v in stats.items() if k not in TOP_KEYS}
    if with_folds and "fold" in scored.columns:
        out["per_fold"] = per_fold(scored, horizon=horizon, bars_per_day=bpd)
    return out


def _sharpe_daily(daily: pd.Series) -> float | None:
    r = daily.dropna().to_numpy(dtype=np.float64)
    if len(r) < 2 or float(np.std(r, ddof=1)) < 1e-12:
        return None
    return float(np.mean(r) / np.std(r, ddof=1) * np.sqrt(365.0))


def equity_summary(equity: pd.Series) -> dict[str, Any]:
    """Net annualised Sharpe (daily returns, 365 days), total return and Sharpe by year."""
    if equity.empty:
        return {"sharpe": None, "total_return": None, "sharpe_by_year": {}}
    daily = daily_equity_returns(equity)
    return {
        "sharpe": _sharpe_daily(daily),
        "total_return": float(equity.iloc[-1] / equity.iloc[0] - 1.0),
        "sharpe_by_year": sharpe_by_year(equity),
    }


def beta_section(strategy_equity: pd.Series, universe_candles: pd.DataFrame) -> dict[str, Any]:
    """Beta of the strategy's daily returns to the universe's equal-weight market, and the
    Sharpe of what remains after removing it."""
    if strategy_equity.empty or universe_candles.empty:
        return {"beta": None, "residual_sharpe": None}
    market = equal_weight_market_returns(universe_candles)
    out = market_beta(daily_equity_returns(strategy_equity), market)
    out["market"] = "equal-weight daily-rebalanced basket of the universe (close to close)"
    return out


def _slice(series: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    return series[(series.index >= start) & (series.index < end)]


def periods_section(
    *,
    scored: pd.DataFrame,
    equity: dict[str, pd.Series],
    start: pd.Timestamp,
    end: pd.Timestamp,
    holdout_start: pd.Timestamp | None,
    horizon: int,
    timeframe: str,
    random_sharpes: Callable[[pd.Timestamp, pd.Timestamp], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """``development`` then ``held_back`` (when ``holdout_start`` lies inside the span): each
    ``{name, start, end, strategy, buy_and_hold, random_same_turnover, forecast}``."""
    if holdout_start is None or not (start < holdout_start < end):
        bounds = [("development", start, end)]
    else:
        bounds = [("development", start, holdout_start), ("held_back", holdout_start, end)]
    out = []
    for name, lo, hi in bounds:
        ts = scored["timestamp"]
        part = scored[(ts >= lo) & (ts < hi)]
        out.append(
            {
                "name": name,
                "start": lo.isoformat(),
                "end": hi.isoformat(),
                "strategy": equity_summary(_slice(equity["strategy"], lo, hi)),
                "buy_and_hold": equity_summary(_slice(equity["buy_and_hold"], lo, hi)),
                "random_same_turnover": random_sharpes(lo, hi) if random_sharpes else None,
                "forecast": forecast_stats(
                    part, horizon=horizon, timeframe=timeframe, with_folds=False
                ),
            }
        )
    return out
