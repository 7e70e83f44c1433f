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

import pandas as pd

from cryptoml_pipeline.evaluation.forecast import (
    daily_equity_returns,
    equal_weight_market_returns,
    information_coefficients,
    market_beta,
    per_fold,
    sharpe_by_year,
)
from cryptoml_pipeline.evaluation.metrics import daily_returns, sharpe_ratio
from cryptoml_pipeline.timing import bars_per_day

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


def equity_summary(equity: pd.Series, initial: float | None = None) -> dict[str, Any]:
    """Net annualised Sharpe (daily returns, 365 days — the headline KPI's definition: the
    first day measured against ``initial``, the equity before the period), total return and
    Sharpe by year."""
    if equity.empty:
        return {"sharpe": None, "total_return": None, "sharpe_by_year": {}}
    base = float(equity.iloc[0]) if initial is None else float(initial)
    daily = daily_returns(equity, initial_equity=base)
    return {
        "sharpe": sharpe_ratio(daily.to_numpy()),
        "total_return": float(equity.iloc[-1] / base - 1.0),
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


def period_bounds(
    start: pd.Timestamp, end: pd.Timestamp, holdout_start: pd.Timestamp | None
) -> list[tuple[str, pd.Timestamp, pd.Timestamp]]:
    """``development`` (then ``held_back`` when the hold-out start lies inside the span)."""
    if holdout_start is None or not (start < holdout_start < end):
        return [("development", start, end)]
    return [("development", start, holdout_start), ("held_back", holdout_start, end)]


def _before(
    equity: dict[str, pd.Series], name: str, lo: pd.Timestamp, initial: dict[str, float] | None
) -> float | None:
    """The equity a period starts from: the last mark before it, else the initial equity."""
    earlier = equity[name][equity[name].index < lo]
    if len(earlier):
        return float(earlier.iloc[-1])
    return None if initial is None else initial.get(name)


def by_symbol_section(
    scored: pd.DataFrame,
    trades: pd.DataFrame | None,
    lo: pd.Timestamp,
    hi: pd.Timestamp,
    initial_equity: float,
) -> dict[str, dict[str, Any]]:
    """Per traded symbol in ``[lo, hi)``: ``oos_start`` (its first out-of-sample bar: a symbol
    enters the walk-forward where its data begin), ``n_trades`` (trades entered in the period)
    and ``sharpe``: the annualised (365-day) Sharpe of its daily net trade P&L over the
    account's initial equity, each trade's P&L booked on its exit day, every day from its first
    out-of-sample day to the period's last counted (days without an exit count as 0). One
    account trades every symbol, so the per-symbol figures are an attribution, not separate
    accounts."""
    ts = scored["timestamp"]
    part = scored[(ts >= lo) & (ts < hi)]
    out: dict[str, dict[str, Any]] = {}
    if part.empty:
        return out
    last_day = part["timestamp"].max().floor("D")
    for symbol, rows in part.groupby("symbol", sort=True):
        first = rows["timestamp"].min()
        days = pd.date_range(first.floor("D"), last_day, freq="D")
        mine = pd.DataFrame(columns=["exit_time", "pnl", "entry_time"])
        if trades is not None and len(trades):
            t = trades[trades["symbol"].astype(str) == symbol]
            mine = t[(t["entry_time"] >= lo) & (t["entry_time"] < hi)]
        daily = (
            pd.Series(
                mine["pnl"].to_numpy(float) / float(initial_equity),
                index=pd.DatetimeIndex(mine["exit_time"]).floor("D"),
            )
            .groupby(level=0)
            .sum()
            .reindex(days, fill_value=0.0)
            if len(mine)
            else pd.Series(0.0, index=days)
        )
        out[str(symbol)] = {
            "oos_start": first.isoformat(),
            "sharpe": sharpe_ratio(daily.to_numpy()) if len(mine) else None,
            "n_trades": len(mine),
        }
    return out


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
    initial_equity: dict[str, float] | None = None,
    trades: pd.DataFrame | None = None,
    universe_candles: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """``development`` then ``held_back`` (when ``holdout_start`` lies inside the span): each
    ``{name, start, end, strategy, buy_and_hold, random_same_turnover, forecast, by_symbol}``;
    ``start``/``end`` are the first and last out-of-sample bar of any traded symbol in the
    period; ``strategy`` adds ``beta`` and ``residual_sharpe`` to the universe's equal-weight
    market (with ``universe_candles``)."""
    bounds = period_bounds(start, end, holdout_start)
    out = []
    for name, lo, hi in bounds:
        ts = scored["timestamp"]
        part = scored[(ts >= lo) & (ts < hi)]
        first = part["timestamp"].min() if len(part) else lo
        last = part["timestamp"].max() if len(part) else hi
        strategy_equity = _slice(equity["strategy"], lo, hi)
        summary = equity_summary(strategy_equity, _before(equity, "strategy", lo, initial_equity))
        if universe_candles is not None:
            beta = beta_section(strategy_equity, universe_candles)
            summary["beta"] = beta.get("beta")
            summary["residual_sharpe"] = beta.get("residual_sharpe")
        initial = (initial_equity or {}).get("strategy")
        out.append(
            {
                "name": name,
                "start": first.isoformat(),
                "end": last.isoformat(),
                "strategy": summary,
                "buy_and_hold": equity_summary(
                    _slice(equity["buy_and_hold"], lo, hi),
                    _before(equity, "buy_and_hold", lo, initial_equity),
                ),
                "random_same_turnover": random_sharpes(lo, hi) if random_sharpes else None,
                "forecast": forecast_stats(
                    part, horizon=horizon, timeframe=timeframe, with_folds=False
                ),
                "by_symbol": by_symbol_section(scored, trades, lo, hi, initial)
                if initial is not None
                else {},
            }
        )
    return out
