"""The report's ``periods[]`` contract: first/last out-of-sample bar, per-symbol entry where a
symbol's data begin, per-symbol trades and Sharpe, beta and residual Sharpe per period."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cryptoml_pipeline.evaluation.forecast_section import by_symbol_section, periods_section


def _scored() -> pd.DataFrame:
    # BTC predicted from day 0, SOL only from day 10 (its data begin later): ragged entry
    rows = []
    for sym, first_day in (("BTC/USDT", 0), ("SOL/USDT", 10)):
        ts = pd.date_range("2024-01-01", periods=24 * 30, freq="1h", tz="UTC")
        ts = ts[ts >= pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=first_day)]
        rng = np.random.default_rng(len(rows))
        er = rng.normal(0, 0.01, len(ts))
        rows.append(
            pd.DataFrame(
                {
                    "timestamp": ts,
                    "symbol": sym,
                    "fold": 0,
                    "expected_return": er,
                    "realised_return": er + rng.normal(0, 0.01, len(ts)),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def _trades() -> pd.DataFrame:
    t = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "symbol": ["BTC/USDT", "BTC/USDT", "SOL/USDT", "BTC/USDT"],
            "entry_time": [t + pd.Timedelta(hours=h) for h in (5, 50, 300, 600)],
            "exit_time": [t + pd.Timedelta(hours=h) for h in (9, 54, 304, 604)],
            "pnl": [100.0, -40.0, 25.0, 60.0],
        }
    )


def test_by_symbol_books_each_trade_on_its_exit_day_from_the_symbols_first_bar() -> None:
    scored, trades = _scored(), _trades()
    lo, hi = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-02-01", tz="UTC")
    out = by_symbol_section(scored, trades, lo, hi, 10_000.0)
    assert out["SOL/USDT"]["oos_start"] == "2024-01-11T00:00:00+00:00"
    assert out["BTC/USDT"]["oos_start"] == "2024-01-01T00:00:00+00:00"
    assert out["BTC/USDT"]["n_trades"] == 3 and out["SOL/USDT"]["n_trades"] == 1
    # BTC: +1 % on day 0, -0.4 % on day 2, +0.6 % on day 25, 0 on the other days of 30
    daily = np.zeros(30)
    daily[[0, 2, 25]] = [0.01, -0.004, 0.006]
    expected = daily.mean() / daily.std(ddof=1) * math.sqrt(365)
    assert math.isclose(out["BTC/USDT"]["sharpe"], expected, rel_tol=1e-12)


def test_periods_split_at_the_holdout_and_name_first_and_last_oos_bars() -> None:
    scored, trades = _scored(), _trades()
    idx = pd.date_range("2024-01-01", periods=24 * 30, freq="1h", tz="UTC")
    equity = pd.Series(10_000.0 * np.exp(np.linspace(0, 0.05, len(idx))), index=idx)
    candles = pd.DataFrame(
        {"timestamp": idx, "symbol": "BTC/USDT", "close": 100 * np.exp(np.sin(np.arange(len(idx))))}
    )
    periods = periods_section(
        scored=scored,
        equity={"strategy": equity, "buy_and_hold": equity},
        start=idx[0],
        end=idx[-1] + pd.Timedelta(hours=1),
        holdout_start=pd.Timestamp("2024-01-20", tz="UTC"),
        horizon=4,
        timeframe="1h",
        initial_equity={"strategy": 10_000.0, "buy_and_hold": 10_000.0},
        trades=trades,
        universe_candles=candles,
    )
    assert [p["name"] for p in periods] == ["development", "held_back"]
    dev, held = periods
    assert dev["start"] == "2024-01-01T00:00:00+00:00"
    assert dev["end"] == "2024-01-19T23:00:00+00:00"  # last out-of-sample bar, not the bound
    assert held["start"] == "2024-01-20T00:00:00+00:00"
    assert held["end"] == idx[-1].isoformat()
    # trades belong to the period they entered in
    assert dev["by_symbol"]["BTC/USDT"]["n_trades"] == 2
    assert held["by_symbol"]["BTC/USDT"]["n_trades"] == 1
    assert held["by_symbol"]["SOL/USDT"]["n_trades"] == 0
    assert held["by_symbol"]["SOL/USDT"]["sharpe"] is None
    for p in periods:
        assert {"sharpe", "total_return", "sharpe_by_year", "beta", "residual_sharpe"} <= set(
            p["strategy"]
        )
        assert p["strategy"]["beta"] is not None
