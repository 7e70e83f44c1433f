"""The sceptic's controls: replayed gross run, turnover-matched random strategy, deflated Sharpe,
rank-IC interval and quantile map — correctness and power on seeded markets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.evaluation.controls import (
    cost_summary,
    holding_bars,
    quantile_map,
    random_placement,
    random_same_turnover,
    rank_ic_interval,
)
from cryptoml_pipeline.evaluation.metrics import compute_kpis, daily_returns
from cryptoml_pipeline.evaluation.statistics import (
    deflated_sharpe_from_moments,
    deflated_sharpe_from_trials,
    expected_max_sharpe,
    probabilistic_sharpe,
)
from cryptoml_pipeline.execution.backtest import simulate
from cryptoml_pipeline.execution.market_grid import build_grid
from cryptoml_pipeline.execution.replay import replay_fills, replay_gross
from cryptoml_pipeline.settings import CostConfig, RiskConfig, SlippageConfig

COSTS = CostConfig(taker_fee=0.0005, slippage_bps=2.0, initial_equity=10_000.0)
RISK = RiskConfig(confidence_threshold=0.0)
SLIPPAGE = SlippageConfig()
HOLD = 4
SYMBOLS = ("AAA", "BBB", "CCC")


def _market(n: int = 24 * 45, seed: int = 0, *, prescient: bool = False):
    """Three random-walk symbols with 8h funding and persistent random (or prescient)
    decisions; returns candles, funding, decisions."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    bars, rates, decs = [], [], []
    for sym in SYMBOLS:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.008, n)))
        open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.001, n))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.004, n))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.004, n))
        bars.append(
            pd.DataFrame(
                {"timestamp": ts, "symbol": sym, "open": open_, "high": high}
                | {"low": low, "close": close}
            )
        )
        settle = pd.date_range(ts[0], ts[-1], freq="8h")
        rates.append(
            pd.DataFrame(
                {"timestamp": settle, "symbol": sym}
                | {"funding_rate": rng.normal(1e-4, 2e-4, len(settle))}
            )
        )
        if prescient:  # row t fills at the open of t+1 and is held HOLD bars: it knows the move
            future = np.full(n, np.nan)
            future[: n - 1 - HOLD] = open_[1 + HOLD : n] / open_[1 : n - HOLD] - 1.0
            signal = np.where(np.nan_to_num(future) > 0, 2, -2)
            exp_ret = np.abs(np.nan_to_num(future)) + 0.01
        else:
            signal = np.repeat(rng.choice([-2, -1, 0, 0, 1, 2], n // 6 + 1), 6)[:n]
            exp_ret = rng.normal(0.0, 0.01, n)
        decs.append(
            pd.DataFrame(
                {"timestamp": ts, "symbol": sym, "signal": signal}
                | {"confidence": rng.uniform(0.4, 1.0, n), "volatility": 0.5, "atr_pct": 0.02}
                | {"expected_return": exp_ret * np.sign(signal)}
            )
        )
    return (
        pd.concat(bars, ignore_index=True),
        pd.concat(rates, ignore_index=True),
        pd.concat(decs, ignore_index=True),
    )


def _net(candles, funding, decisions, costs=COSTS):
    return simulate(
        candles,
        funding,
        decisions,
        costs=costs,
        risk=RISK,
        min_hold_bars=HOLD,
        timeframe="1h",
        slippage=SLIPPAGE,
    )


@pytest.fixture(scope="module")
def seeded():
    candles, funding, decisions = _market()
    net = _net(candles, funding, decisions)
    assert len(net.trades) > 50  # the strategy trades
    return candles, funding, decisions, net


# ---------------------------------------------------------------- replay and gross vs net


def test_replaying_the_net_fills_with_the_same_costs_reproduces_the_net_run(seeded) -> None:
    candles, funding, decisions, net = seeded
    from cryptoml_pipeline.execution.backtest import slippage_matrix
    from cryptoml_pipeline.execution.market_grid import align_decisions, funding_schedule

    grid = build_grid(candles, "1h")
    slip = slippage_matrix(align_decisions(decisions, grid), grid, COSTS, SLIPPAGE, "1h")
    again = replay_fills(
        grid,
        net.fills,
        initial_equity=COSTS.initial_equity,
        entry_fee=COSTS.taker_fee,
        exit_fee=COSTS.taker_fee,
        slip=slip,
        schedule=funding_schedule(grid, funding, interval_hours=8),
    )
    # one ledger (the kernel's helpers): the same fills book the same equity to the last bit
    np.testing.assert_array_equal(again.equity.to_numpy(), net.equity.to_numpy())
    assert (again.fees_paid, again.funding_paid) == (net.fees_paid, net.funding_paid)
    assert again.traded_notional == net.traded_notional
    assert again.slippage_paid == pytest.approx(net.slippage_paid, rel=1e-10)  # summed otherwise


def test_gross_run_replays_the_same_trades_and_the_cost_drag_adds_up(seeded) -> None:
    candles, _, _, net = seeded
    gross = replay_gross(candles, net, timeframe="1h")
    key = ["symbol", "entry_time", "exit_time", "side"]
    g = gross.trades.sort_values(key).reset_index(drop=True)
    n = net.trades.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(g[key], n[key])
    np.testing.assert_allclose(g["quantity"], n["quantity"], rtol=1e-12)
    assert gross.fees_paid == 0.0 and gross.funding_paid == 0.0 and gross.slippage_paid == 0.0
    costs = cost_summary(net, gross)
    assert costs["gross_n_trades"] == costs["net_n_trades"] == len(net.trades)
    assert costs["fees_paid"] > 0 and costs["slippage_paid"] > 0
    total = costs["fees_paid"] + costs["slippage_paid"] + costs["funding_paid"]
    assert costs["cost_drag"] == pytest.approx(total, abs=1e-12)
    drag = costs["gross_total_return"] - costs["net_total_return"]
    assert costs["cost_drag"] == pytest.approx(drag, abs=1e-9)
    assert costs["fees_paid"] == pytest.approx(net.fees_paid / net.initial_equity)


def test_replay_gross_refuses_fills_from_other_candles(seeded) -> None:
    candles, _, _, net = seeded
    shifted = candles.assign(timestamp=candles["timestamp"] + pd.Timedelta(days=3))
    with pytest.raises(Exception, match="fills"):
        replay_gross(shifted, net, timeframe="1h")


# ---------------------------------------------------------------- random same-turnover


def test_random_paths_keep_each_symbols_holding_times_without_overlap(seeded) -> None:
    candles, _, _, net = seeded
    grid = build_grid(candles, "1h")
    hold = holding_bars(net.fills, grid)
    path, fractions = random_placement(net.fills, grid, np.random.default_rng(3))
    path_hold = holding_bars(path, grid)
    for s in range(len(grid.symbols)):
        mine, theirs = net.fills.symbol == s, path.symbol == s
        assert sorted(path_hold[theirs]) == sorted(hold[mine])
        starts = path.entry_bar[theirs]
        order = np.argsort(starts)
        ends = starts[order] + path_hold[theirs][order]
        assert np.all(starts[order][1:] >= ends[:-1])  # one position per symbol at a time
    assert set(np.unique(path.direction)) == {-1, 1}
    assert not np.array_equal(np.sort(path.entry_bar), np.sort(net.fills.entry_bar))
    assert np.all(fractions > 0)


def test_random_control_is_turnover_matched(seeded) -> None:
    candles, funding, decisions, net = seeded
    kpis = compute_kpis(net, bootstrap_samples=0)
    mc = random_same_turnover(
        candles,
        funding,
        net,
        strategy_sharpe=kpis["sharpe"],
        costs=COSTS,
        timeframe="1h",
        slippage=SLIPPAGE,
        decisions=decisions,
        n_paths=60,
        seed=1,
    ).to_dict()
    assert mc["strategy_turnover"] == pytest.approx(kpis["turnover"], rel=1e-12)
    assert abs(mc["turnover_median"] / mc["strategy_turnover"] - 1.0) <= 0.10
    assert mc["n_paths"] == 60 and len(mc["sharpe_p5_p50_p95"]) == 3
    assert 0.0 < mc["p_value"] <= 1.0 and 0.0 <= mc["strategy_percentile"] <= 1.0
    assert "random" in mc["method"]


def test_random_control_ranks_a_prescient_strategy_at_the_top() -> None:
    candles, funding, decisions = _market(24 * 30, seed=5, prescient=True)
    net = _net(candles, funding, decisions)
    kpis = compute_kpis(net, bootstrap_samples=0)
    mc = random_same_turnover(
        candles,
        funding,
        net,
        strategy_sharpe=kpis["sharpe"],
        costs=COSTS,
        timeframe="1h",
        slippage=SLIPPAGE,
        decisions=decisions,
        n_paths=99,
        seed=2,
    ).to_dict()
    assert mc["strategy_percentile"] == 1.0
    assert mc["p_value"] == pytest.approx(1 / 100)
    assert abs(mc["turnover_median"] / mc["strategy_turnover"] - 1.0) <= 0.10


# ---------------------------------------------------------------- deflated Sharpe


def test_deflated_sharpe_reproduces_bailey_lopez_de_prado_2014_example() -> None:
    # Section "A numerical example": N = 100 trials, best annualised SR 2.5, variance of the
    # annualised trial SRs 1/2, T = 1250 daily returns (250 a year), skew -3, kurtosis 10:
    # SR0 = 0.1132 (per day) and DSR = 0.9004.
    sr = 2.5 / math.sqrt(250)
    var = 0.5 / 250
    assert expected_max_sharpe(100, math.sqrt(var)) == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe_from_moments(sr, 1250, -3.0, 10.0, n_trials=100, trial_sharpe_var=var)
    assert dsr == pytest.approx(0.9004, abs=5e-4)


def test_deflated_sharpe_uses_the_variance_of_the_trial_sharpes() -> None:
    r = np.random.default_rng(4).normal(0.002, 0.01, 400)
    trials = [0.05, 0.12, 0.2, 0.08, 0.15]
    out = deflated_sharpe_from_trials(r, trials, n_trials=20)
    assert out["dsr_trials"] == 20 and out["dsr_variance_source"] == "trials"
    assert out["dsr_trial_sharpe_var"] == pytest.approx(np.var(trials, ddof=1))
    assert out["psr"] == pytest.approx(probabilistic_sharpe(r))
    assert out["dsr"] < out["psr"]
    wider = deflated_sharpe_from_trials(r, [x * 2 for x in trials], n_trials=20)
    assert wider["dsr"] < out["dsr"]  # more dispersed trials -> a higher bar
    one = deflated_sharpe_from_trials(r, None, n_trials=1)
    assert one["dsr"] == one["psr"] and one["dsr_trial_sharpe_var"] is None
    fallback = deflated_sharpe_from_trials(r, [0.1], n_trials=10)
    assert fallback["dsr_variance_source"] == "null_estimator"
    assert fallback["dsr_trial_sharpe_var"] == pytest.approx(1 / (len(r) - 1))
    assert deflated_sharpe_from_trials(r, trials, n_trials=2)["dsr_trials"] == len(trials)


def test_compute_kpis_deflates_with_annualised_trial_sharpes(seeded) -> None:
    *_, net = seeded
    annual = [0.5, 1.5, -0.3, 2.0]
    kpis = compute_kpis(net, bootstrap_samples=0, n_trials=8, trial_sharpes=annual)
    daily = daily_returns(net.equity, initial_equity=net.initial_equity).to_numpy()
    expected = deflated_sharpe_from_trials(daily, [a / math.sqrt(365) for a in annual], 8)
    assert kpis["dsr_trials"] == 8
    assert kpis["dsr_trial_sharpe_var"] == pytest.approx(np.var(annual, ddof=1) / 365)
    assert kpis["dsr"] == pytest.approx(expected["dsr"])
    assert kpis["dsr"] < kpis["psr"]


# ---------------------------------------------------------------- shuffled-label helpers


def test_quantile_map_keeps_ranks_and_nans_and_takes_the_reference_distribution() -> None:
    rng = np.random.default_rng(6)
    values = rng.normal(0, 5, 200)
    values[[3, 50]] = np.nan
    reference = rng.uniform(-1, 1, 5000)
    out = quantile_map(values, reference)
    assert np.isnan(out[[3, 50]]).all() and np.isfinite(np.delete(out, [3, 50])).all()
    finite = np.isfinite(values)
    assert np.array_equal(np.argsort(values[finite]), np.argsort(out[finite]))
    assert out[finite].min() >= -1 and out[finite].max() <= 1
    assert np.mean(out[finite]) == pytest.approx(np.mean(reference), abs=0.05)
    assert np.std(out[finite]) == pytest.approx(np.std(reference), rel=0.05)


def _ic_frame(seed: int, k: float, days: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2024-01-01", periods=days * 6, freq="4h", tz="UTC")
    rows = len(ts) * len(SYMBOLS)
    realised = rng.normal(0, 0.01, rows)
    return pd.DataFrame(
        {
            "timestamp": np.repeat(ts, len(SYMBOLS)),
            "symbol": np.tile(SYMBOLS, len(ts)),
            "realised_return": realised,
            "expected_return": k * realised + rng.normal(0, 0.01, rows),
        }
    )


def test_rank_ic_interval_finds_a_planted_signal() -> None:
    out = rank_ic_interval(_ic_frame(0, k=0.3), n_boot=300)
    lo, hi = out["rank_ic_ci"]
    assert out["n_days"] == 40
    assert lo > 0 and lo < out["rank_ic"] < hi


def test_rank_ic_interval_covers_zero_on_noise() -> None:
    covered = 0
    for seed in range(20):
        lo, hi = rank_ic_interval(_ic_frame(100 + seed, k=0.0), n_boot=300, seed=seed)["rank_ic_ci"]
        covered += lo <= 0.0 <= hi
    assert covered >= 17
