"""Buy-and-hold baseline and KPIs on hand-made numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.evaluation.baselines import buy_and_hold
from cryptoml_pipeline.evaluation.metrics import (
    KPI_KEYS,
    accuracy_windows,
    compute_kpis,
    daily_returns,
    kpis_vs_targets,
)
from cryptoml_pipeline.execution.backtest import BacktestResult
from cryptoml_pipeline.settings import CostConfig, TargetsConfig

COSTS = CostConfig(taker_fee=0.001, slippage_bps=10.0, initial_equity=10_000.0)


def at(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _bars(symbol: str, opens: list[float], closes: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": [at("2024-01-01 07:00") + pd.Timedelta(hours=k) for k in range(3)],
            "symbol": symbol,
            "open": opens,
            "high": np.maximum(opens, closes) + 1,
            "low": np.minimum(opens, closes) - 1,
            "close": closes,
            "volume": 1.0,
        }
    )


def test_buy_and_hold_hand_numbers() -> None:
    candles = pd.concat(
        [_bars("AAA", [100, 104, 110], [102, 108, 120]), _bars("BBB", [50, 48, 45], [49, 46, 40])],
        ignore_index=True,
    )
    funding = pd.DataFrame(
        {
            "timestamp": [at("2024-01-01 08:00")] * 2,
            "symbol": ["AAA", "BBB"],
            "funding_rate": [0.001, -0.002],
        }
    )
    result = buy_and_hold(candles, funding, costs=COSTS, timeframe="1h")
    q_a, q_b = 5000 / (100 * 1.001), 5000 / (50 * 1.001)  # half the equity each, bought at open
    fund_a, fund_b = q_a * 104 * 0.001, q_b * 48 * -0.002  # 08:00 opens x rates
    exit_a, exit_b = 120 * 0.999, 40 * 0.999  # last closes, sold with slippage
    fees = 5 + 5 + 0.001 * q_a * exit_a + 0.001 * q_b * exit_b
    expected = 10_000 + q_a * (exit_a - 100.1) + q_b * (exit_b - 50.05) - fees - fund_a - fund_b
    assert expected == pytest.approx(9_964.4356, abs=1e-3)  # by hand
    assert result.equity.iloc[-1] == pytest.approx(expected, rel=1e-12)
    assert result.fees_paid == pytest.approx(fees, rel=1e-12)
    assert result.funding_paid == pytest.approx(fund_a + fund_b, rel=1e-12)
    assert result.trades["exit_reason"].tolist() == ["end", "end"]
    assert result.trades["notional"].tolist() == pytest.approx([5000.0, 5000.0])
    # first mark: both bought at the 07:00 open, marked at the 07:00 close
    first = 10_000 - 10 + q_a * (102 - 100.1) + q_b * (49 - 50.05)
    assert result.equity.iloc[0] == pytest.approx(first, rel=1e-12)


def _hand_result() -> BacktestResult:
    points = {
        "2024-01-01 12:00": 105.0,
        "2024-01-01 23:00": 110.0,
        "2024-01-02 10:00": 88.0,  # intraday trough: drawdown 88 / 110 - 1 = -20 %
        "2024-01-02 23:00": 99.0,
        "2024-01-03 23:00": 108.9,
    }
    equity = pd.Series(list(points.values()), index=pd.DatetimeIndex([at(t) for t in points]))
    trades = pd.DataFrame({"pnl": [10.0, -5.0, 3.0, 0.0]})
    return BacktestResult(
        equity=equity, trades=trades, fees_paid=2.0, funding_paid=-1.0, initial_equity=100.0
    )


def test_daily_returns_first_day_against_initial_equity() -> None:
    daily = daily_returns(_hand_result().equity, initial_equity=100.0)
    assert list(daily.index) == [at("2024-01-01"), at("2024-01-02"), at("2024-01-03")]
    np.testing.assert_allclose(daily.to_numpy(), [0.1, -0.1, 0.1], atol=1e-12)


def test_daily_returns_day_without_bars_keeps_equity() -> None:
    equity = pd.Series([100.0, 110.0], index=[at("2024-01-01 05:00"), at("2024-01-03 05:00")])
    np.testing.assert_allclose(daily_returns(equity, initial_equity=100.0), [0.0, 0.0, 0.1])


def test_kpis_from_a_hand_made_curve() -> None:
    kpis = compute_kpis(_hand_result())
    assert set(kpis) == set(KPI_KEYS)
    # daily returns 0.1, -0.1, 0.1: mean 1/30, std (ddof 1) = 1/sqrt(75)
    assert kpis["sharpe"] == pytest.approx(math.sqrt(75) / 30 * math.sqrt(365), rel=1e-9)
    assert kpis["sharpe"] == pytest.approx(5.5151, abs=1e-4)
    # downside deviation sqrt(0.01 / 3)
    assert kpis["sortino"] == pytest.approx((1 / 30) / math.sqrt(0.01 / 3) * math.sqrt(365))
    assert kpis["max_drawdown"] == pytest.approx(0.2)
    assert kpis["win_rate"] == 0.5  # 10 and 3 win; -5 and 0 do not
    assert kpis["n_trades"] == 4
    assert kpis["total_return"] == pytest.approx(0.089)
    assert kpis["avg_daily_return"] == pytest.approx(1 / 30)
    assert kpis["fees_paid"] == pytest.approx(0.02)
    assert kpis["funding_paid"] == pytest.approx(-0.01)
    assert kpis["accuracy"] is None and kpis["directional_accuracy"] is None


def test_kpis_none_without_days_or_trades() -> None:
    flat = BacktestResult(
        equity=pd.Series([100.0, 100.0], index=[at("2024-01-01 01:00"), at("2024-01-01 02:00")]),
        trades=pd.DataFrame({"pnl": pd.Series([], dtype=float)}),
        fees_paid=0.0,
        funding_paid=0.0,
        initial_equity=100.0,
    )
    kpis = compute_kpis(flat)
    assert kpis["sharpe"] is None and kpis["sortino"] is None
    assert kpis["win_rate"] is None
    assert kpis["max_drawdown"] == 0.0


def test_prediction_accuracy_and_directional_accuracy() -> None:
    predictions = pd.DataFrame(
        {
            "pred_class": [4, 2, 0, 3, 3],
            "signal": [2, 0, -2, 1, 1],
            "label": [2.0, 0.0, -1.0, -1.0, np.nan],
        }
    )
    kpis = compute_kpis(_hand_result(), predictions)
    assert kpis["accuracy"] == pytest.approx(2 / 4)  # rows 0, 1 right; 2, 3 wrong; 4 unlabelled
    assert kpis["directional_accuracy"] == pytest.approx(2 / 3)  # rows 0, 2 right; 3 wrong


def test_accuracy_windows() -> None:
    correct = np.array([1.0] * 150 + [0.0] * 50)
    assert accuracy_windows(correct, recent=50, prior=150) == (0.0, 1.0)
    recent, prior = accuracy_windows(np.array([1.0] * 30 + [0.0] * 30), recent=50, prior=150)
    assert recent == pytest.approx(0.4) and prior is None
    assert accuracy_windows(np.ones(10), recent=50, prior=150) == (None, None)
    with_nan = np.array([1.0, np.nan, 0.0, 1.0, 1.0])
    assert accuracy_windows(with_nan, recent=2, prior=2) == (1.0, 0.5)


def test_kpis_vs_targets() -> None:
    kpis = {
        "accuracy": None,
        "sharpe": 2.5,
        "max_drawdown": 0.2,
        "win_rate": 0.8,
        "avg_daily_return": 0.01,
    }
    table = kpis_vs_targets(kpis, TargetsConfig())
    assert table["sharpe"] == {"min": 2.0, "max": None, "value": 2.5, "met": True}
    assert table["max_drawdown"]["met"] is False
    assert table["win_rate"]["met"] is False  # above the 75 % ceiling
    assert table["avg_daily_return"]["met"] is True
    assert table["accuracy"]["met"] is None


def test_avg_exposure_is_the_mean_gross_exposure_over_bars() -> None:
    idx = pd.date_range("2025-01-01", periods=4, freq="h", tz="UTC")
    result = BacktestResult(
        equity=pd.Series([100.0, 100.0, 100.0, 100.0], index=idx),
        trades=pd.DataFrame({"pnl": []}),
        fees_paid=0.0,
        funding_paid=0.0,
        initial_equity=100.0,
        exposure=pd.Series([0.0, 0.5, 1.0, np.nan], index=idx),
    )
    assert compute_kpis(result)["avg_exposure"] == pytest.approx(0.5)
    no_record = BacktestResult(
        equity=result.equity,
        trades=result.trades,
        fees_paid=0.0,
        funding_paid=0.0,
        initial_equity=100.0,
    )
    assert compute_kpis(no_record)["avg_exposure"] is None
