"""One execution core: the paper trader, fed bar by bar with the backtest's own decisions, records
the backtest's trades, fills, fees, funding and equity (to 1e-9) -- with take-profit, maker
fills, volatility slippage, the expected-move cost filter and liquidation in play -- and a
``kill -9`` mid-run followed by a restart still gives exactly that result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from cryptoml_pipeline.execution.backtest import simulate
from cryptoml_pipeline.live import paper_adapter
from cryptoml_pipeline.live.paper import (
    PaperTrader,
    bar_inputs,
    equity_marks,
    orders_frame,
    replay,
    run_state,
)
from cryptoml_pipeline.registry.db import make_engine, upgrade
from cryptoml_pipeline.registry.schema import paper_positions
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.strategy.from_predictions import PROB_COLUMNS, decisions_from_predictions
from cryptoml_pipeline.strategy.options import simulation_options

TF = "1h"
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
START = pd.Timestamp("2025-03-01", tz="UTC")
N_BARS = 150  # paper-traded bars
EXTRA = 48  # bars the longer backtest sees beyond the paper window
TOL = 1e-9


def scenario_settings(name: str) -> PipelineSettings:
    base = PipelineSettings()
    risk = {"min_hold_bars": 4, "confidence_threshold": 0.05}
    costs: dict = {}
    if name == "taker":
        risk |= {"take_profit_atr_multiple": 1.5}
    elif name == "maker":
        costs |= {"order_type": "maker"}
        risk |= {"take_profit_atr_multiple": 2.0}
    elif name == "liquidation":  # far stops, huge size: the margin call comes first
        risk |= {
            "atr_stop_multiple": 30.0,
            "base_risk": 100.0,
            "max_risk_per_trade": 100.0,
            "portfolio_heat": 1000.0,
            "volatility_reference": 5.0,
            "max_leverage": 40.0,
        }
    return base.model_copy(
        update={
            "risk": base.risk.model_copy(update=risk),
            "costs": base.costs.model_copy(update=costs),
        }
    )


def market(seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Candles, funding (every 8h), predictions (five class probabilities) and the features the
    sizer reads, for [START - 1 bar, START + N_BARS + EXTRA)."""
    rng = np.random.default_rng(seed)
    n = N_BARS + EXTRA + 1
    ts = pd.date_range(START - pd.Timedelta(TF), periods=n, freq=TF, tz="UTC")
    settings = PipelineSettings()
    vol_col = f"rv_{settings.risk.volatility_window}"
    atr_col = f"atr_pct_{settings.risk.atr_period}"
    candles, preds, feats = [], [], []
    for k, sym in enumerate(SYMBOLS):
        ret = rng.normal(0, 0.01, n)
        close = 100.0 * (k + 1) * np.exp(np.cumsum(ret))
        open_ = np.concatenate([[close[0] / np.exp(ret[0])], close[:-1]])
        open_ = open_ * np.exp(rng.normal(0, 0.002, n))  # small gaps at the open
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.006, n)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.006, n)))
        candles.append(
            pd.DataFrame(
                {"timestamp": ts, "symbol": sym, "open": open_, "high": high}
                | {"low": low, "close": close, "volume": 1.0}
            )
        )
        probs = rng.dirichlet(np.full(5, 0.35), n)
        cls = probs.argmax(axis=1)
        frame = pd.DataFrame(probs, columns=PROB_COLUMNS)
        frame.insert(0, "symbol", sym)
        frame.insert(0, "timestamp", ts)
        preds.append(frame.assign(signal=cls - 2, confidence=probs.max(axis=1) - 0.2))
        feats.append(
            pd.DataFrame(
                {"timestamp": ts, "symbol": sym}
                | {vol_col: rng.uniform(0.006, 0.014, n), atr_col: rng.uniform(0.008, 0.02, n)}
            )
        )
    settle = ts[(ts.hour % 8 == 0)]
    funding = pd.DataFrame(
        [(t, s, float(rng.normal(1e-4, 3e-4))) for t in settle for s in SYMBOLS],
        columns=["timestamp", "symbol", "funding_rate"],
    )
    return (
        pd.concat(candles, ignore_index=True),
        funding,
        pd.concat(preds, ignore_index=True),
        pd.concat(feats, ignore_index=True),
    )


def _span(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)]


def _engine(path: Path):
    engine = make_engine(f"sqlite:///{path / 'cryptoml.db'}")
    upgrade(engine)
    return engine


def _trader(engine, settings: PipelineSettings, run: str) -> PaperTrader:
    return PaperTrader(
        engine,
        run_name=run,
        model_version="replay-test",
        settings=settings,
        timeframe=TF,
        initial_equity=settings.costs.initial_equity,  # the backtest's, to compare equity
    )


def _inputs(settings: PipelineSettings):
    candles, funding, preds, feats = market()
    decisions = paper_adapter.decisions(preds, feats, timeframe=TF, settings=settings)
    end = START + N_BARS * pd.Timedelta(TF)
    inputs = bar_inputs(candles, decisions, funding, timeframe=TF, start=START, end=end)
    return candles, funding, preds, feats, decisions, inputs, end


def _expected_fills(trades: pd.DataFrame, settings: PipelineSettings) -> pd.DataFrame:
    """The backtest's round trips as fills, written out here independently of the trader."""
    rate = (
        settings.costs.maker_fee
        if settings.costs.order_type == "maker"
        else (settings.costs.taker_fee)
    )
    d = np.where(trades["side"] == "long", 1, -1)
    entry_fee = rate * trades["quantity"] * trades["entry_price"]
    entries = pd.DataFrame(
        {"symbol": trades["symbol"], "bar": trades["entry_time"], "side": d}
        | {"quantity": trades["quantity"], "reason": "entry", "price": trades["entry_price"]}
        | {"fee": entry_fee}
    )
    exits = pd.DataFrame(
        {"symbol": trades["symbol"], "bar": trades["exit_time"], "side": -d}
        | {"quantity": trades["quantity"], "reason": trades["exit_reason"]}
        | {"price": trades["exit_price"], "fee": trades["fees"] - entry_fee}
    )[trades["exit_reason"] != "end"]  # a backtest's end of data is no event of a live account
    return _canonical(pd.concat([entries, exits], ignore_index=True))


def _canonical(fills: pd.DataFrame) -> pd.DataFrame:
    out = fills[paper_adapter.FILL_COLUMNS].copy()
    out["bar"] = pd.to_datetime(out["bar"], utc=True).astype("datetime64[ns, UTC]")
    out["side"] = out["side"].astype(np.int64)
    keys = ["bar", "symbol", "reason", "side", "price"]
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _max_abs(a: pd.Series | np.ndarray, b: pd.Series | np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def assert_matches_backtest(trader: PaperTrader, engine, run: str, settings, data) -> dict:
    """Everything the paper trader recorded vs the backtest; returns the max abs differences."""
    candles, funding, _, _, decisions, inputs, end = data
    common = simulation_options(settings, TF)[0]
    backtest = simulate(_span(candles, START, end), _span(funding, START, end), decisions, **common)
    far = START + (N_BARS + EXTRA) * pd.Timedelta(TF)
    longer = simulate(_span(candles, START, far), _span(funding, START, far), decisions, **common)
    ledger = trader.ledger
    assert ledger is not None and trader.last_bar == inputs[-1].bar == end - pd.Timedelta(TF)
    diffs = {}
    # equity at every bar close: the longer backtest (no end-of-data close inside the window)
    marks = equity_marks(engine, run)
    assert marks.index.equals(longer.equity.index[:N_BARS])
    diffs["equity_vs_longer"] = _max_abs(marks, longer.equity.iloc[:N_BARS])
    diffs["equity_vs_window"] = _max_abs(marks.iloc[:-1], backtest.equity.iloc[:-1])
    # fills in the database
    recorded = _canonical(orders_frame(engine, run))
    expected = _expected_fills(backtest.trades, settings)
    pd.testing.assert_frame_equal(
        recorded.drop(columns=["quantity", "price", "fee"]),
        expected.drop(columns=["quantity", "price", "fee"]),
    )
    for col in ("quantity", "price", "fee"):
        diffs[f"fill_{col}"] = _max_abs(recorded[col], expected[col])
    # closed round trips (fees, funding, pnl per trade) of the re-simulation window (the bars
    # after the last flat close, simulated from that close's equity) and the open positions
    closed = backtest.trades[backtest.trades["exit_reason"] != "end"]
    if trader.window_start is not None:
        entry = pd.to_datetime(closed["entry_time"], utc=True)
        closed = closed[entry > trader.window_start]
    closed = closed.reset_index(drop=True)
    mine = ledger.closed.sort_values(["exit_time", "symbol"], kind="stable").reset_index(drop=True)
    closed = closed.sort_values(["exit_time", "symbol"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, closed, rtol=0, atol=TOL)
    ends = backtest.trades[backtest.trades["exit_reason"] == "end"].sort_values("symbol")
    with engine.connect() as conn:
        pos = pd.DataFrame(
            conn.execute(sa.select(paper_positions).where(paper_positions.c.run == run))
            .mappings()
            .all()
        )
    pos = pos.sort_values("symbol") if len(pos) else pd.DataFrame(columns=["symbol"])
    assert list(pos["symbol"]) == list(ends["symbol"])
    if len(ends):
        assert list(pos["direction"]) == [1 if s == "long" else -1 for s in ends["side"]]
        diffs["open_quantity"] = _max_abs(pos["quantity"], ends["quantity"])
        diffs["open_entry_price"] = _max_abs(pos["entry_price"], ends["entry_price"])
    # fees and funding: recorded so far + what the backtest's end-of-data close adds
    open_entry_fee = float(
        recorded.merge(
            ends[["symbol", "entry_time"]],
            left_on=["symbol", "bar"],
            right_on=["symbol", "entry_time"],
        )
        .query("reason == 'entry'")["fee"]
        .sum()
    )
    end_exit_fees = float(ends["fees"].sum()) - open_entry_fee
    diffs["fees"] = abs(float(recorded["fee"].sum()) + end_exit_fees - backtest.fees_paid)
    if trader.window_start is None:
        diffs["funding"] = abs(ledger.funding_paid - backtest.funding_paid)
    # the account closed out now IS the backtest of the window
    out = trader.close_out()
    diffs["close_out_equity"] = _max_abs(out.equity, backtest.equity)
    pd.testing.assert_frame_equal(out.trades, backtest.trades, rtol=0, atol=TOL)
    assert run_state(engine, run)["cash"] == pytest.approx(ledger.cash, abs=TOL)
    assert max(diffs.values()) <= TOL, diffs
    return {"backtest": backtest, "diffs": diffs}


@pytest.mark.parametrize("name", ["taker", "maker", "liquidation"])
def test_paper_replay_reproduces_the_backtest(tmp_path, name) -> None:
    settings = scenario_settings(name)
    data = _inputs(settings)
    _, _, preds, feats, decisions, inputs, _ = data
    # the paper trader's decisions ARE the backtest's (same function, same cost filter)
    _, columns, returns_by_class, _ = simulation_options(settings, TF)
    pd.testing.assert_frame_equal(
        decisions,
        decisions_from_predictions(
            preds, feats, timeframe=TF, returns_by_class=returns_by_class, **columns
        ),
    )
    engine = _engine(tmp_path)
    trader = _trader(engine, settings, "replay")
    assert replay(trader, inputs) == N_BARS
    result = assert_matches_backtest(trader, engine, "replay", settings, data)
    reasons = set(result["backtest"].trades["exit_reason"])
    trades = result["backtest"].trades
    # a liquidation leaves (almost) nothing to trade with; the others trade a lot
    assert len(trades) >= (5 if name == "liquidation" else 30), "too few trades to compare"
    if name == "taker":
        assert {"take_profit", "stop", "time"} <= reasons, reasons
    if name == "maker":  # entries paid the maker fee (limit at the open)
        fills = orders_frame(engine, "replay")
        entry = fills[fills["reason"] == "entry"]
        rate = entry["fee"] / (entry["quantity"] * entry["price"])
        np.testing.assert_allclose(rate, settings.costs.maker_fee, rtol=1e-9)
    if name == "liquidation":
        assert "liquidation" in reasons, reasons
    print(f"[{name}] {len(trades)} trades, max abs diffs: {result['diffs']}")  # noqa: T201


def test_the_cost_filter_is_in_force(tmp_path) -> None:
    """Without the expected-move filter the same predictions would trade more."""
    settings = scenario_settings("taker")
    candles, funding, _, _, decisions, _, end = _inputs(settings)
    common = simulation_options(settings, TF)[0]
    kept = simulate(_span(candles, START, end), _span(funding, START, end), decisions, **common)
    off = common | {"risk": settings.risk.model_copy(update={"edge_cost_multiple": None})}
    more = simulate(_span(candles, START, end), _span(funding, START, end), decisions, **off)
    assert len(more.trades) > len(kept.trades)


CHILD = """
import sys
from pathlib import Path
from cryptoml_pipeline_tests import test_paper_replay as t
path = Path(sys.argv[1])
settings = t.scenario_settings("taker")
engine = t._engine(path)
trader = t._trader(engine, settings, "killed")
t.replay(trader, t._inputs(settings)[5], bar_delay=float(sys.argv[2]))
"""


def test_kill_9_mid_run_and_restart_give_exactly_the_backtest(tmp_path) -> None:
    settings = scenario_settings("taker")
    data = _inputs(settings)
    engine = _engine(tmp_path)  # schema first, so the parent can poll the cursor
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), "0.02"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    target = START + 60 * pd.Timedelta(TF)
    deadline = time.monotonic() + 180
    state = None
    while time.monotonic() < deadline and proc.poll() is None:
        state = run_state(engine, "killed")
        if state and state["last_bar"] and state["last_bar"] >= target:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[0].decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = run_state(engine, "killed")["last_bar"]
    assert target <= killed_at < data[5][-1].bar, "the process was not killed mid-run"
    restart = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), "0"], env=env, capture_output=True
    )
    assert restart.returncode == 0, restart.stderr.decode()
    trader = _trader(engine, settings, "killed")  # resumes and re-checks
    assert orders_frame(engine, "killed")["client_order_id"].is_unique
    result = assert_matches_backtest(trader, engine, "killed", settings, data)
    print(f"[kill -9 at {killed_at}] max abs diffs: {result['diffs']}")  # noqa: T201


def test_crash_before_the_commit_resumes_exactly(tmp_path, monkeypatch) -> None:
    """Killed after a bar is simulated but before its database commit: the bar is simulated
    again on restart and nothing is lost or duplicated."""
    settings = scenario_settings("maker")
    data = _inputs(settings)
    engine = _engine(tmp_path)
    crash_bar = data[5][70].bar
    original = PaperTrader._commit

    def crashing(self, bar, *args):
        if bar == crash_bar:
            raise RuntimeError("killed before the commit")
        return original(self, bar, *args)

    monkeypatch.setattr(PaperTrader, "_commit", crashing)
    with pytest.raises(RuntimeError, match="before the commit"):
        replay(_trader(engine, settings, "crash"), data[5])
    assert run_state(engine, "crash")["last_bar"] == crash_bar - pd.Timedelta(TF)
    monkeypatch.setattr(PaperTrader, "_commit", original)
    trader = _trader(engine, settings, "crash")
    assert trader.last_bar == crash_bar - pd.Timedelta(TF)  # the uncommitted bar was not kept
    assert replay(trader, data[5]) == N_BARS - 70
    assert_matches_backtest(trader, engine, "crash", settings, data)
