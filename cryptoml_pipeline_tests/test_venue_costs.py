"""The venue's real costs (issue 19): the fee schedule, funding at each symbol's own settlements
whatever the interval, a missing settlement while held, per-hour carry, the fee sensitivity."""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import replace

import jsonschema
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from cryptoml_pipeline.defs.assets.ingestion import missing_settlements
from cryptoml_pipeline.errors import MissingFundingError
from cryptoml_pipeline.evaluation.break_even import fee_sensitivity
from cryptoml_pipeline.execution.backtest import simulate
from cryptoml_pipeline.execution.market_grid import build_grid, funding_schedule
from cryptoml_pipeline.features.flow import funding_features, funding_settlement_features
from cryptoml_pipeline.reporting.html import render_html
from cryptoml_pipeline.reporting.report import build_report, validate_report
from cryptoml_pipeline.settings import CostConfig, RiskConfig, profile_settings
from cryptoml_pipeline_tests.test_report import DEPLOY, INFO, _evaluation

T0 = pd.Timestamp("2024-01-01", tz="UTC")
RISK = RiskConfig(
    base_risk=0.02,
    max_risk_per_trade=0.02,
    portfolio_heat=0.06,
    max_leverage=3.0,
    atr_stop_multiple=2.0,
    volatility_reference=0.2,
    confidence_threshold=0.0,
)
COSTS = CostConfig(slippage_bps=10.0, initial_equity=10_000.0)


def at(hour: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(hours=hour)


def flat_candles(symbol: str, price: float, hours: int) -> pd.DataFrame:
    """1h bars 00:00 .. ``hours - 1`` at a constant price (no stop is ever touched)."""
    return pd.DataFrame(
        {
            "timestamp": [at(h) for h in range(hours)],
            "symbol": symbol,
            "open": price,
            "high": price * 1.01,
            "low": price * 0.99,
            "close": price,
        }
    )


def funding_rows(symbol: str, rates: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": [at(h) for h in rates],
            "symbol": symbol,
            "funding_rate": list(rates.values()),
        }
    )


def longs(symbols: list[str], hour: int) -> pd.DataFrame:
    """A long decision (signal 2, confidence 1) on the bar ``hour`` (fills at ``hour + 1``)."""
    return pd.DataFrame(
        {
            "timestamp": [at(hour)] * len(symbols),
            "symbol": symbols,
            "signal": 2,
            "confidence": 1.0,
            "volatility": 0.1,
            "atr_pct": 0.05,
        }
    )


def run(candles, funding, decisions, hold: int, interval_hours: int = 8):
    return simulate(
        candles,
        funding,
        decisions,
        costs=COSTS,
        risk=RISK,
        min_hold_bars=hold,
        timeframe="1h",
        funding_interval_hours=interval_hours,
    )


# ---------------------------------------------------------------- the fee schedule
def test_fee_schedule_holds_the_venues_regular_tier_and_the_run_charges_the_perpetuals() -> None:
    costs = CostConfig()
    assert (costs.schedule.perpetual.taker, costs.schedule.perpetual.maker) == (0.0005, 0.0002)
    assert costs.schedule.spot.taker == 0.001
    # the fee charged is the traded market's (USDT-M perpetual) taker fee, as a fraction
    assert costs.taker_fee == costs.schedule.perpetual.taker == 0.0005
    assert costs.maker_fee == costs.schedule.perpetual.maker
    assert {1.0, 2.0} <= set(costs.fee_multiples)
    with pytest.raises(ValidationError, match="include 1 and 2"):
        CostConfig(fee_multiples=(1.0, 3.0))
    with pytest.raises(ValidationError):
        CostConfig(taker_fee=-0.0001)


def test_the_charged_taker_fee_is_the_default_fee_of_a_fill() -> None:
    candles = flat_candles("AAA", 100.0, 8)
    trade = run(candles, funding_rows("AAA", {}), longs(["AAA"], 1), hold=3).trades.iloc[0]
    q, entry, exit_ = trade["quantity"], trade["entry_price"], trade["exit_price"]
    assert trade["fees"] == pytest.approx(0.0005 * q * (entry + exit_), rel=1e-12)


# ---------------------------------------------------------------- funding at its own settlements
# AAA settles at 8h (00, 08) then switches to 4h (12, 16, 20, 24, 28); BBB stays at 8h.
AAA_RATES = {0: 0.0001, 8: 0.0002, 12: 0.0003, 16: -0.0001, 20: 0.0004, 24: 0.0005, 28: 0.0006}
BBB_RATES = {0: 0.0002, 8: 0.0003, 16: 0.0007, 24: -0.0002}


@pytest.mark.parametrize("hint", [8, 12])  # the hint sets no schedule where the data has one
def test_a_symbol_switching_from_8h_to_4h_beside_an_8h_one_pays_its_own_settlements(hint) -> None:
    candles = pd.concat(
        [flat_candles("AAA", 100.0, 30), flat_candles("BBB", 50.0, 30)], ignore_index=True
    )
    funding = pd.concat(
        [funding_rows("AAA", AAA_RATES), funding_rows("BBB", BBB_RATES)], ignore_index=True
    )
    # both enter at the 02:00 open and exit at the 26:00 open (held at 08 .. 24, not at 00/28)
    result = run(candles, funding, longs(["AAA", "BBB"], 1), hold=24, interval_hours=hint)
    trades = result.trades.set_index("symbol")
    assert list(trades["exit_time"]) == [at(26), at(26)]
    qa, qb = trades.loc["AAA", "quantity"], trades.loc["BBB", "quantity"]
    # AAA: 08 (8h), 12, 16, 20, 24 (4h) at its open 100; BBB: 08, 16, 24 at its open 50
    aaa = qa * 100.0 * (0.0002 + 0.0003 - 0.0001 + 0.0004 + 0.0005)
    bbb = qb * 50.0 * (0.0003 + 0.0007 - 0.0002)
    assert trades.loc["AAA", "funding"] == pytest.approx(aaa, rel=1e-12)
    assert trades.loc["BBB", "funding"] == pytest.approx(bbb, rel=1e-12)
    assert result.funding_paid == pytest.approx(aaa + bbb, rel=1e-12)
    # the schedule: BBB owes nothing at AAA's 4h-only instants, and no settlement is missing
    schedule = funding_schedule(build_grid(candles, "1h"), funding, interval_hours=hint)
    rates = pd.DataFrame(schedule.rates.T, index=schedule.times, columns=["AAA", "BBB"])
    assert list(rates.index) == [at(h) for h in (0, 8, 12, 16, 20, 24, 28)]
    assert rates.loc[at(12), "AAA"] == 0.0003 and rates.loc[at(12), "BBB"] == 0.0
    assert not rates.isna().any().any()
    # the asset check agrees: a change of interval is not a gap
    assert missing_settlements(funding, ["AAA", "BBB"], at(0), at(30), hint) == {}


def test_a_dropped_settlement_while_in_a_position_fails_with_one_line() -> None:
    candles = flat_candles("AAA", 100.0, 48)
    funding = funding_rows("AAA", {0: 1e-4, 8: 1e-4, 16: 1e-4, 32: 1e-4, 40: 1e-4})  # 24 dropped
    with pytest.raises(MissingFundingError) as err:
        run(candles, funding, longs(["AAA"], 18), hold=10)  # held 19:00 .. 29:00, over 24:00
    message = str(err.value)
    assert "\n" not in message
    assert "AAA" in message and at(24).isoformat() in message
    # not held over the gap: charged at 08:00, nothing missing
    fine = run(candles, funding, longs(["AAA"], 1), hold=10)  # 02:00 .. 12:00
    assert fine.trades.iloc[0]["funding"] == pytest.approx(
        fine.trades.iloc[0]["quantity"] * 100.0 * 1e-4, rel=1e-12
    )
    assert missing_settlements(funding, ["AAA"], at(0), at(48), 8) == {"AAA": [at(24)]}


def test_a_symbol_without_enough_funding_history_falls_back_to_the_hint() -> None:
    candles = flat_candles("AAA", 100.0, 24)
    one = funding_rows("AAA", {8: 1e-4})  # a single row: no interval to read
    with pytest.raises(MissingFundingError, match=re.escape(at(16).isoformat())):
        run(candles, one, longs(["AAA"], 10), hold=10, interval_hours=8)
    # a 4h hint expects 12:00 already
    with pytest.raises(MissingFundingError, match=re.escape(at(12).isoformat())):
        run(candles, one, longs(["AAA"], 10), hold=10, interval_hours=4)


# ---------------------------------------------------------------- carry per hour
def test_carry_per_hour_does_not_jump_when_the_interval_changes() -> None:
    # 8h settlements at 0.08 %/8h, then 4h settlements at 0.04 %/4h: the same carry per hour
    rates = {0: 0.0008, 8: 0.0008, 16: 0.0008, 24: 0.0008, 28: 0.0004, 32: 0.0004, 36: 0.0004}
    funding = funding_rows("AAA", rates)
    settled = funding_settlement_features(funding, zscore_window=3)
    per_hour = settled["funding_rate_per_hour"].to_numpy()
    assert np.isnan(per_hour[0])  # the first settlement's interval is unknown
    np.testing.assert_allclose(per_hour[1:], 1e-4, rtol=1e-12)
    z = settled["funding_zscore_3"].to_numpy()
    assert (z[3:] == 0.0).all()  # a constant window, through the change
    hours = pd.Series([at(h) for h in range(40)])
    rows = funding_features(hours, pd.Series(["AAA"] * 40), funding, zscore_window=3)
    carried = rows["funding_rate_per_hour"][8:]
    np.testing.assert_allclose(carried, 1e-4, rtol=1e-12)
    assert np.all(np.diff(carried) == 0.0)
    # the per-settlement rate itself halves at the change: that is the jump the feature avoids
    assert settled["funding_rate"].iloc[4] == settled["funding_rate"].iloc[3] / 2


# ---------------------------------------------------------------- fee sensitivity
def _market(seed: int = 3, n: int = 24 * 20):
    rng = np.random.default_rng(seed)
    frames, decisions = [], []
    times = pd.date_range(T0, periods=n, freq="1h")
    for symbol in ("AAA", "BBB"):
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.008, n)))
        open_ = np.concatenate([[100.0], close[:-1]])
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": times,
                    "symbol": symbol,
                    "open": open_,
                    "high": np.maximum(open_, close) * 1.003,
                    "low": np.minimum(open_, close) * 0.997,
                    "close": close,
                }
            )
        )
        decisions.append(
            pd.DataFrame(
                {
                    "timestamp": times,
                    "symbol": symbol,
                    "signal": rng.integers(-2, 3, n),
                    "confidence": rng.uniform(0.3, 1.0, n),
                    "volatility": 0.3,
                    "atr_pct": 0.02,
                }
            )
        )
    settle = pd.date_range(T0, periods=n // 8, freq="8h")
    funding = pd.concat(
        [
            pd.DataFrame(
                {
                    "timestamp": settle,
                    "symbol": s,
                    "funding_rate": rng.normal(1e-4, 1e-4, len(settle)),
                }
            )
            for s in ("AAA", "BBB")
        ],
        ignore_index=True,
    )
    return pd.concat(frames, ignore_index=True), funding, pd.concat(decisions, ignore_index=True)


def test_fee_sensitivity_reprices_the_same_trades_overall_and_per_period() -> None:
    candles, funding, decisions = _market()
    net = simulate(
        candles, funding, decisions, costs=COSTS, risk=RISK, min_hold_bars=4, timeframe="1h"
    )
    assert len(net.trades) > 10
    split = at(24 * 10)
    periods = [("development", at(0), split), ("held_back", split, at(24 * 20))]
    out = fee_sensitivity(
        candles,
        funding,
        decisions,
        net,
        costs=COSTS,
        slippage=None,
        timeframe="1h",
        periods=periods,
    )
    rows = {r["fee_multiple"]: r for r in out["overall"]}
    assert sorted(rows) == [0.0, 1.0, 1.5, 2.0]
    assert rows[2.0]["taker_fee"] == 2 * COSTS.taker_fee
    # the same decisions: the same trades at every fee; a higher fee costs more
    assert {r["n_trades"] for r in rows.values()} == {len(net.trades)}
    returns = [rows[m]["total_return"] for m in (0.0, 1.0, 1.5, 2.0)]
    assert all(a > b for a, b in itertools.pairwise(returns))
    assert rows[2.0]["sharpe"] < rows[1.0]["sharpe"]
    # at multiple 1 the taker run books exactly its own equity
    assert rows[1.0]["total_return"] == pytest.approx(
        net.equity.iloc[-1] / net.initial_equity - 1.0, rel=1e-12
    )
    # per period: the same multiples, the trades entered in each add up to all of them
    assert set(out["periods"]) == {"development", "held_back"}
    for name, lo, hi in periods:
        per = {r["fee_multiple"]: r for r in out["periods"][name]}
        assert sorted(per) == sorted(rows)
        entered = net.trades["entry_time"]
        assert per[1.0]["n_trades"] == int(((entered >= lo) & (entered < hi)).sum())
        assert per[2.0]["n_trades"] == per[1.0]["n_trades"]
        assert per[2.0]["total_return"] <= per[1.0]["total_return"]
    assert sum(out["periods"][p][0]["n_trades"] for p in out["periods"]) == len(net.trades)


def test_fee_sensitivity_trades_smaller_on_a_costlier_path_never_through_zero_equity() -> None:
    candles, funding, decisions = _market()
    net = simulate(
        candles, funding, decisions, costs=COSTS, risk=RISK, min_hold_bars=4, timeframe="1h"
    )
    costs = COSTS.model_copy(update={"fee_multiples": (1.0, 20.0, 60.0)})
    out = fee_sensitivity(
        candles, funding, decisions, net, costs=costs, slippage=None, timeframe="1h"
    )
    rows = {r["fee_multiple"]: r for r in out["overall"]}
    # each trade keeps its notional as a fraction of the equity at its entry: a fee that eats
    # most of the account shrinks the positions with it, the equity never crosses zero
    assert rows[1.0]["total_return"] > rows[20.0]["total_return"] > rows[60.0]["total_return"]
    assert rows[60.0]["total_return"] > -1.0
    assert rows[60.0]["sharpe"] < rows[20.0]["sharpe"] < rows[1.0]["sharpe"]


def test_report_carries_fee_sensitivity_top_level_and_validates_it() -> None:
    rows = [
        {"fee_multiple": m, "taker_fee": m * 0.0005, "sharpe": 1.0 - m, "total_return": 0.1 - m,
         "n_trades": 12}
        for m in (1.0, 2.0)
    ]  # fmt: skip
    evaluation = replace(_evaluation(), fee_sensitivity=rows)
    report = build_report(
        evaluation=evaluation,
        data_info=INFO,
        deployment=DEPLOY,
        settings=profile_settings("tiny"),
    )
    assert report["fee_sensitivity"] == rows
    assert report["costs"]["taker_fee"] == 0.0005
    assert report["costs"]["fee_schedule"]["perpetual"] == {"taker": 0.0005, "maker": 0.0002}
    assert "every settlement in the symbol's funding data" in report["costs"]["funding"]
    page = render_html(report, evaluation.equity)
    assert "Fee sensitivity" in page and "<td>2x</td><td>0.100%</td>" in page
    broken = copy.deepcopy(report)
    del broken["fee_sensitivity"][0]["n_trades"]
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)
    broken = copy.deepcopy(report)
    del broken["fee_sensitivity"]
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)
