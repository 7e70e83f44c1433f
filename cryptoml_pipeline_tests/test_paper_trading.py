"""Paper trading: orders, fills and positions persisted; killed at any point (SIGKILL of the
real ``cryptoml paper`` process, or a crash inside a bar's transaction) it resumes without
duplicating or losing an order. Runs on SQLite and (marker ``postgres``) PostgreSQL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cryptoml_pipeline.live import paper as paper_module
from cryptoml_pipeline.live.paper import PaperTrader, orders_frame, replay, run_state
from cryptoml_pipeline.live.paper_feed import build_feed, load_market
from cryptoml_pipeline.registry.candidates import load_verified
from cryptoml_pipeline.registry.model_registry import ModelRegistry
from cryptoml_pipeline_tests.mgmt_helpers import deploy_tiny_model

pytest_plugins = ["cryptoml_pipeline_tests.db_fixtures"]

START, END = "2025-06-01", "2025-06-05"
COLUMNS = ["symbol", "bar", "side", "quantity", "reason", "price", "fee"]


def _trading_settings(deployed, *, as_cli: bool = False):
    """The tiny 1-epoch model's expected moves never clear the backtest's cost filter, so these
    persistence tests switch it off to get orders (the filter: test_paper_replay.py)."""
    if as_cli:  # what `cryptoml paper` trades with: the settings in the model's manifest
        return deployed.settings
    risk = deployed.settings.risk.model_copy(update={"edge_cost_multiple": None})
    return deployed.settings.model_copy(update={"risk": risk})


def _feed(deployed, shared_data, *, as_cli: bool = False):
    model = load_verified(ModelRegistry(deployed.engine), deployed.version)
    start, end = pd.Timestamp(START, tz="UTC"), pd.Timestamp(END, tz="UTC")
    market = load_market(shared_data, deployed.settings, start, end, live=False)
    return build_feed(market, model, _trading_settings(deployed, as_cli=as_cli), start, end)


def _trader(deployed, name: str, out: Path, *, as_cli: bool = False) -> PaperTrader:
    return PaperTrader(
        deployed.engine,
        run_name=name,
        model_version=deployed.version,
        settings=_trading_settings(deployed, as_cli=as_cli),
        timeframe="1h",
        initial_equity=deployed.settings.paper.initial_equity,
    )


def _cli(out: Path, shared_data: Path, run: str, db_url: str, *extra: str) -> subprocess.Popen:
    env = os.environ | {"CRYPTOML_DB_URL": db_url}
    cmd = [sys.executable, "-m", "cryptoml_pipeline.cli", "paper", "--output-dir", str(out)]
    cmd += ["--data-dir", str(shared_data), "--symbols", "BTC/USDT"]
    cmd += ["--start", START, "--end", END, "--run-name", run, *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_replay_persists_orders_fills_and_positions(tmp_path, shared_data) -> None:
    deployed = deploy_tiny_model(shared_data, tmp_path)
    feed = _feed(deployed, shared_data)
    trader = _trader(deployed, "ref", tmp_path)
    assert replay(trader, feed.inputs) == 96  # 4 days of 1h bars
    orders = orders_frame(deployed.engine, "ref")
    assert len(orders) > 0 and orders["price"].notna().all()  # every order has its fill
    assert orders["client_order_id"].is_unique
    assert (orders["fee"] > 0).all() and set(orders["reason"]) <= {
        "entry",
        "stop",
        "time",
        "flip",
        "take_profit",
        "liquidation",
    }  # never "end": a live account's data does not end
    # every fill happens at a bar open in the window, after the decision's bar
    assert orders["bar"].min() >= pd.Timestamp(START, tz="UTC")
    assert orders["bar"].max() < pd.Timestamp(END, tz="UTC")
    state = run_state(deployed.engine, "ref")
    assert state["last_bar"] == pd.Timestamp(END, tz="UTC") - pd.Timedelta("1h")
    assert state["cash"] != state["initial_equity"]  # fees were paid
    # a second replay over the same bars does nothing (cursor)
    again = _trader(deployed, "ref", tmp_path)
    assert replay(again, feed.inputs) == 0 and len(orders_frame(deployed.engine, "ref")) == len(
        orders
    )


def test_crash_inside_a_bar_loses_and_duplicates_nothing(tmp_path, shared_data, monkeypatch):
    deployed = deploy_tiny_model(shared_data, tmp_path)
    feed = _feed(deployed, shared_data)
    replay(_trader(deployed, "ref", tmp_path), feed.inputs)
    reference = orders_frame(deployed.engine, "ref")[COLUMNS]
    crash_bar = reference["bar"].iloc[len(reference) // 2]  # a bar that places orders

    original = PaperTrader._commit

    def crashing(self, bar, ledger, new, *args):
        if bar == crash_bar:
            with self.engine.begin() as conn:  # half of the bar's writes, then the crash
                conn.execute(paper_module.paper_runs.update().values(cash=-1.0))
                raise RuntimeError("simulated crash inside the bar's transaction")
        return original(self, bar, ledger, new, *args)

    monkeypatch.setattr(PaperTrader, "_commit", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        replay(_trader(deployed, "crash", tmp_path), feed.inputs)
    assert run_state(deployed.engine, "crash")["last_bar"] < crash_bar
    monkeypatch.setattr(PaperTrader, "_commit", original)
    replay(_trader(deployed, "crash", tmp_path), feed.inputs)  # restart
    resumed = orders_frame(deployed.engine, "crash")[COLUMNS]
    pd.testing.assert_frame_equal(resumed, reference)
    ref_state, state = run_state(deployed.engine, "ref"), run_state(deployed.engine, "crash")
    assert state["cash"] == pytest.approx(ref_state["cash"], rel=1e-12)


def test_sigkill_mid_run_then_restart_matches_an_uninterrupted_run(
    tmp_path, shared_data, db_url
) -> None:
    deployed = deploy_tiny_model(shared_data, tmp_path, url=db_url)
    reference_feed = _feed(deployed, shared_data, as_cli=True)
    replay(_trader(deployed, "ref", tmp_path, as_cli=True), reference_feed.inputs)
    reference = orders_frame(deployed.engine, "ref")[COLUMNS]

    proc = _cli(tmp_path, shared_data, "killed", db_url, "--bar-delay", "0.05")
    start = pd.Timestamp(START, tz="UTC")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = run_state(deployed.engine, "killed")
        if state and state["last_bar"] and state["last_bar"] >= start + pd.Timedelta(hours=30):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = run_state(deployed.engine, "killed")["last_bar"]
    assert (
        start + pd.Timedelta(hours=30)
        <= killed_at
        < pd.Timestamp(END, tz="UTC") - pd.Timedelta("1h")
    ), "the process was not killed mid-run"

    restart = _cli(tmp_path, shared_data, "killed", db_url)
    output = restart.communicate(timeout=120)[0].decode()
    assert restart.returncode == 0, output
    resumed = orders_frame(deployed.engine, "killed")
    assert resumed["client_order_id"].is_unique
    pd.testing.assert_frame_equal(resumed[COLUMNS], reference)
    ref_state, state = run_state(deployed.engine, "ref"), run_state(deployed.engine, "killed")
    assert state["cash"] == pytest.approx(ref_state["cash"], rel=1e-12)
    assert state["last_bar"] == ref_state["last_bar"]
