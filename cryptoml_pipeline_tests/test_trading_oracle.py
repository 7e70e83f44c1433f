"""Correctness oracle: on a simple long/short/flat signal series our simulator and vectorbt
(an independent library, test-only dependency) agree on equity and fees to 1e-9 relative.

Both trade a fixed 1-unit position, fill the signal of bar t at the open of bar t+1 with a taker
fee and a fixed slippage, mark equity at each close, and carry no stops and no funding.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.execution.backtest import simulate
from cryptoml_pipeline.settings import CostConfig, RiskConfig

vbt = pytest.importorskip("vectorbt")

FEE, SLIP_BPS = 0.001, 5.0
COSTS = CostConfig(taker_fee=FEE, slippage_bps=SLIP_BPS, initial_equity=10_000.0)
RISK = RiskConfig(maintenance_margin=0.0, max_leverage=1e9, confidence_threshold=0.0)


def _zero_funding(candles: pd.DataFrame) -> pd.DataFrame:
    ts = candles["timestamp"]
    settle = pd.date_range(ts.iloc[0].ceil("8h"), ts.iloc[-1], freq="8h")
    return pd.DataFrame({"timestamp": settle, "symbol": "AAA", "funding_rate": 0.0})


def _market(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    candles = pd.DataFrame(
        {"timestamp": ts, "symbol": "AAA", "open": open_, "high": high, "low": low, "close": close}
    )
    # persistent random regimes of -1/0/+1, flat on the last two rows (both books end flat)
    signal = np.repeat(rng.integers(-1, 2, n // 5 + 1), 5)[:n].astype(float)
    signal[-2:] = 0.0
    return candles, signal


@pytest.mark.parametrize("seed", [1, 2])
def test_equity_and_fees_match_vectorbt(seed: int) -> None:
    candles, signal = _market(600, seed)
    decisions = pd.DataFrame(
        {
            "timestamp": candles["timestamp"],
            "symbol": "AAA",
            "signal": signal,
            "confidence": 1.0,
            "volatility": np.nan,
            "atr_pct": np.nan,  # no stop
        }
    )
    ours = simulate(
        candles,
        _zero_funding(candles),
        decisions,
        costs=COSTS,
        risk=RISK,
        min_hold_bars=1,
        timeframe="1h",
        fixed_quantity=1.0,
    )
    target = np.concatenate([[0.0], signal[:-1]])  # the position held from each bar's open
    index = pd.DatetimeIndex(candles["timestamp"]).tz_localize(None)
    pf = vbt.Portfolio.from_orders(
        close=pd.Series(candles["close"].to_numpy(), index=index),
        price=pd.Series(candles["open"].to_numpy(), index=index),
        size=pd.Series(target, index=index),
        size_type="targetamount",
        fees=FEE,
        slippage=SLIP_BPS / 1e4,
        init_cash=10_000.0,
        freq="1h",
    )
    assert len(ours.trades) > 10
    np.testing.assert_allclose(ours.equity.to_numpy(), pf.value().to_numpy(), rtol=1e-9, atol=0)
    vbt_fees = float(pf.orders.records_readable["Fees"].sum())
    assert ours.fees_paid == pytest.approx(vbt_fees, rel=1e-9)
    # an independent check of our own books: trade pnl sums to the equity change
    assert ours.trades["pnl"].sum() == pytest.approx(ours.equity.iloc[-1] - 10_000.0, rel=1e-9)
