"""The array front end of the simulator (grid, decision alignment, funding schedule, validation):
independent of row order and timestamp representation, same layout as a plain pandas pivot, and
the same input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.execution.backtest import simulate
from cryptoml_pipeline.execution.market_grid import align_decisions, build_grid, funding_schedule
from cryptoml_pipeline.settings import CostConfig, RiskConfig, SlippageConfig

COSTS = CostConfig(taker_fee=0.001, slippage_bps=2.0)
RISK = RiskConfig(confidence_threshold=0.0)


def market(seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Three symbols of 1h bars: one starts late, one has a 5-bar gap; signals and funding."""
    rng = np.random.default_rng(seed)
    frames, decisions = [], []
    for symbol, start, gap in (
        ("BTC/USDT", 0, None),
        ("ETH/USDT", 0, (100, 105)),
        ("SOL/USDT", 60, None),
    ):
        n = 400 - start
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
        open_ = np.concatenate([[100.0], close[:-1]])
        ts = pd.date_range("2024-01-01", periods=400, freq="1h", tz="UTC")[start:]
        frame = pd.DataFrame(
            {
                "timestamp": ts,
                "symbol": symbol,
                "open": open_,
                "high": np.maximum(open_, close) * 1.004,
                "low": np.minimum(open_, close) * 0.996,
                "close": close,
            }
        )
        if gap is not None:
            frame = frame.drop(index=range(*gap)).reset_index(drop=True)
        frames.append(frame)
        decisions.append(
            pd.DataFrame(
                {
                    "timestamp": frame["timestamp"],
                    "symbol": symbol,
                    "signal": rng.integers(-2, 3, len(frame)),
                    "confidence": rng.uniform(0.3, 1.0, len(frame)),
                    "volatility": rng.uniform(0.2, 0.8, len(frame)),
                    "atr_pct": rng.uniform(0.005, 0.03, len(frame)),
                    "expected_return": rng.normal(0, 0.01, len(frame)),
                }
            )
        )
    candles = pd.concat(frames, ignore_index=True)
    times = pd.date_range("2024-01-01", periods=50, freq="8h", tz="UTC")
    funding = pd.concat(
        [
            pd.DataFrame(
                {"timestamp": times, "symbol": s, "funding_rate": rng.normal(1e-4, 1e-4, 50)}
            )
            for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")
        ],
        ignore_index=True,
    )
    return candles, pd.concat(decisions, ignore_index=True), funding


def run(candles, decisions, funding, **kw):
    return simulate(
        candles,
        funding,
        decisions,
        costs=COSTS,
        risk=RISK,
        min_hold_bars=3,
        timeframe="1h",
        slippage=SlippageConfig(),
        **kw,
    )


def assert_same(a, b) -> None:
    pd.testing.assert_series_equal(a.equity, b.equity, check_exact=True)
    pd.testing.assert_series_equal(a.exposure, b.exposure, check_exact=True)
    pd.testing.assert_frame_equal(a.trades, b.trades, check_exact=True)
    assert (a.fees_paid, a.funding_paid, a.traded_notional, a.bars_in_market) == (
        b.fees_paid,
        b.funding_paid,
        b.traded_notional,
        b.bars_in_market,
    )


def test_result_does_not_depend_on_row_order() -> None:
    candles, decisions, funding = market()
    base = run(candles, decisions, funding)
    assert len(base.trades) > 20 and set(base.trades["symbol"]) == {
        "BTC/USDT",
        "ETH/USDT",
        "SOL/USDT",
    }
    shuffled = run(
        candles.sample(frac=1, random_state=3),
        decisions.sample(frac=1, random_state=4),
        funding.sample(frac=1, random_state=5),
    )
    assert_same(base, shuffled)


def test_timestamp_representations_give_the_same_result() -> None:
    candles, decisions, funding = market()
    base = run(candles, decisions, funding)
    naive = candles.assign(timestamp=candles["timestamp"].dt.tz_localize(None))
    micro = decisions.assign(timestamp=decisions["timestamp"].astype("datetime64[us, UTC]"))
    other_tz = funding.assign(timestamp=funding["timestamp"].dt.tz_convert("Asia/Tokyo"))
    assert_same(base, run(naive, micro, other_tz))
    objects = candles.assign(symbol=candles["symbol"].astype(object))
    assert_same(base, run(objects, decisions, funding))


def test_grid_layout_equals_a_pandas_pivot() -> None:
    candles, decisions, funding = market()
    grid = build_grid(candles.sample(frac=1, random_state=0), "1h")
    assert grid.symbols == ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    pivot = candles.pivot(index="timestamp", columns="symbol", values="open")
    assert grid.timestamps.equals(pd.DatetimeIndex(pivot.index))
    assert str(grid.timestamps.dtype) == "datetime64[ns, UTC]"
    np.testing.assert_array_equal(grid.open, pivot.to_numpy().T)
    np.testing.assert_array_equal(grid.has_bar, pivot.notna().to_numpy().T)
    assert grid.last_bar.tolist() == [399, 399, 399]
    aligned = align_decisions(decisions, grid)
    # a decision fills at the next bar of its symbol; none fills into the gap or past the end
    sig = decisions.pivot(index="timestamp", columns="symbol", values="signal")
    expected = sig.reindex(pivot.index).shift(1).where(pivot.notna()).fillna(0.0)
    expected[~sig.reindex(pivot.index).shift(1).notna()] = 0.0
    np.testing.assert_array_equal(aligned["signal"], expected.to_numpy().T)
    schedule = funding_schedule(grid, funding)
    rates = funding.pivot(index="timestamp", columns="symbol", values="funding_rate")
    np.testing.assert_array_equal(schedule.rates, rates.reindex(schedule.times).to_numpy().T)


def test_equal_grids_and_a_single_symbol() -> None:
    candles, _, _ = market()
    btc = candles[candles["symbol"] == "BTC/USDT"]
    grid = build_grid(btc, "1h")
    np.testing.assert_array_equal(grid.close[0], btc["close"].to_numpy())
    assert grid.has_bar.all()
    both = pd.concat([btc, btc.assign(symbol="AAA/USDT")], ignore_index=True)
    grid2 = build_grid(both, "1h")
    assert grid2.symbols == ("AAA/USDT", "BTC/USDT")
    np.testing.assert_array_equal(grid2.close[0], grid2.close[1])


@pytest.mark.parametrize(
    ("mutate", "error", "pattern"),
    [
        (lambda c: pd.concat([c, c.iloc[[7]]]), DataValidationError, r"duplicate candle.*BTC/USDT"),
        (
            lambda c: c.assign(low=np.where(c.index == 9, np.nan, c["low"])),
            DataValidationError,
            "non-finite",
        ),
        (
            lambda c: c.assign(open=np.where(c.index == 9, -1.0, c["open"])),
            DataValidationError,
            "non-positive",
        ),
        (lambda c: c.iloc[0:0], InputError, "empty"),
        (lambda c: c.drop(columns="high"), InputError, "missing column"),
    ],
)
def test_bad_candles_are_rejected(mutate, error, pattern) -> None:
    candles, decisions, funding = market()
    with pytest.raises(error, match=pattern):
        run(mutate(candles), decisions, funding)


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (
            lambda d: pd.concat([d, d.iloc[[5]]]),
            r"duplicate decision for BTC/USDT at 2024-01-01 05:00",
        ),
        (lambda d: d.assign(signal=np.where(d.index == 3, 3, d["signal"])), "integer in -2..2"),
        (lambda d: d.assign(signal=np.where(d.index == 3, 0.5, d["signal"])), "integer in -2..2"),
        (
            lambda d: d.assign(symbol=np.where(d.index == 3, "XRP/USDT", d["symbol"])),
            "without candles",
        ),
        (lambda d: d.drop(columns="atr_pct"), "missing column"),
    ],
)
def test_bad_decisions_are_rejected(mutate, pattern) -> None:
    candles, decisions, funding = market()
    with pytest.raises(InputError, match=pattern):
        run(candles, mutate(decisions), funding)


def test_nan_signal_is_no_trade_and_duplicate_funding_is_rejected() -> None:
    candles, decisions, funding = market()
    flat = decisions.assign(signal=np.nan)
    assert run(candles, flat, funding).trades.empty
    with pytest.raises(DataValidationError, match="duplicate funding rate for BTC/USDT"):
        run(candles, decisions, pd.concat([funding, funding.iloc[[2]]]))
