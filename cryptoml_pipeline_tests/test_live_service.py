"""``cryptoml live``: replay through the live service equals the backtest (``cryptoml parity``),
also after a SIGKILL of the real process and a restart with the same ``--run-name``; the HTTP
API (signal, health, metrics, kill); guards; a newly deployed model picked up at the next bar
without a restart; flags that contradict the model's manifest fail with one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from cryptoml_pipeline.cli import main
from cryptoml_pipeline.live.paper import account_bars, orders_frame, run_state
from cryptoml_pipeline.live.service import LiveOptions, LiveService
from cryptoml_pipeline.registry.db import open_database
from cryptoml_pipeline.registry.deployment_store import deploy
from cryptoml_pipeline_tests.test_trading_realtime import Deployed, build_deployed

START, END = "2025-03-05", "2025-03-09"
N_BARS = 96
COLUMNS = ["symbol", "bar", "side", "quantity", "reason", "price", "fee"]


def _redeploy(dep: Deployed, version: str) -> None:
    """The fixture model with trading settings that trade often (no cost filter, a low entry
    threshold, short holds), deployed as ``version``."""
    settings = dep.settings
    risk = settings.risk.model_copy(
        update={"edge_cost_multiple": None, "confidence_threshold": 0.2}
    )
    settings = settings.model_copy(update={"risk": risk, "min_hold_bars": 3})
    manifest = dict(dep.model.manifest) | {
        "version": version,
        "settings": settings.model_dump(mode="json"),
    }
    deploy(dep.output_dir, dep.model, manifest)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    dep = build_deployed(tmp_path_factory.mktemp("live"))
    _redeploy(dep, "live-a")
    return dep


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _live(dep: Deployed, run: str, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "cryptoml_pipeline.cli", "live", "--replay", START, END]
    cmd += ["--data-dir", str(dep.store.root), "--output-dir", str(dep.output_dir)]
    return [*cmd, "--run-name", run, *extra]


def _get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _parity(dep: Deployed, run: str, capsys) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["parity", "--run-name", run, "--output-dir", str(dep.output_dir)])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_replay_equals_the_backtest_and_the_api_serves_it(env: Deployed, capsys) -> None:
    ref = subprocess.run(
        _live(env, "ref", "--exit-at-end", "--port", "0"), capture_output=True, timeout=300
    )
    assert ref.returncode == 0, ref.stderr.decode()
    code, result = _parity(env, "ref", capsys)
    assert code == 0, result
    assert result["bars"] == N_BARS and result["trades_equal"] is True
    assert result["first_divergence"] is None
    assert result["equity_max_abs_diff"] <= 1e-6 * 1000.0
    orders = orders_frame(open_database(env.output_dir), "ref")
    assert len(orders) >= 6 and {"entry"} < set(orders["reason"])  # it traded and exited

    # the service keeps serving after the last bar; the API from memory
    port = _free_port()
    proc = subprocess.Popen(
        _live(env, "api", "--port", str(port)), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline, health = time.monotonic() + 180, {}
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _get(port, "/health")
            except OSError:
                time.sleep(0.2)
                continue
            assert status == 200  # also while warming up
            health = json.loads(body)
            if health["replay_finished"]:
                break
            time.sleep(0.2)
        assert health.get("replay_finished"), proc.communicate(timeout=5)
        last = pd.Timestamp(END, tz="UTC") - pd.Timedelta(hours=1)
        assert health["last_bar"] == "2025-03-08T23:00:00+00:00" == last.isoformat()
        assert health["lag_bars"] == 0 and health["model_version"] == "live-a"
        assert set(health["guards"]) == {"stale", "expired", "degraded", "kill"}
        status, body = _get(port, "/signal?symbol=BTC/USDT")
        record = json.loads(body)
        assert status == 200 and record["symbol"] == "BTC/USDT"
        assert record["bar_open"] == last.isoformat()
        assert record["model"]["version"] == "live-a" and record["model"]["deployed"] is True
        assert {"signal", "confidence", "expected_return", "decision", "fills_at"} <= set(record)
        assert _get(port, "/signal?symbol=SOL/USDT")[0] == 404  # a universe member, untraded
        status, body = _get(port, "/signal")
        assert [r["symbol"] for r in json.loads(body)] == ["BTC/USDT", "ETH/USDT"]
        status, body = _get(port, "/metrics")
        text = body.decode()
        assert status == 200 and f"cryptoml_live_bars_processed_total {N_BARS}.0" in text
        assert "cryptoml_live_bar_seconds_bucket" in text and "cryptoml_live_equity " in text
        assert 'cryptoml_live_guard_trips_total{guard="kill"}' not in text
        # the same account as the reference run
        engine = open_database(env.output_dir)
        pd.testing.assert_frame_equal(
            orders_frame(engine, "api")[COLUMNS], orders_frame(engine, "ref")[COLUMNS]
        )
        assert _get(port, "/kill", "POST")[0] == 202  # flatten and stop
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read().decode()
    assert "killed:" in stderr and "flattened" in stderr
    assert run_state(open_database(env.output_dir), "api") is not None
    with open_database(env.output_dir).connect() as conn:
        from cryptoml_pipeline.registry.schema import paper_positions

        assert conn.execute(paper_positions.select()).all() == [] or all(
            r.run != "api" for r in conn.execute(paper_positions.select()).all()
        )
    # a killed account = the backtest that ends at its last bar
    code, result = _parity(env, "api", capsys)
    assert code == 0, result
    # and it is not resumed
    again = subprocess.run(_live(env, "api", "--exit-at-end", "--port", "0"), capture_output=True)
    assert again.returncode == 2 and b"was killed" in again.stderr


def test_sigkill_mid_run_then_restart_equals_the_backtest(env: Deployed, capsys) -> None:
    engine = open_database(env.output_dir)
    proc = subprocess.Popen(
        _live(env, "killed", "--bar-delay", "0.1", "--port", "0", "--exit-at-end"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = pd.Timestamp(START, tz="UTC") + pd.Timedelta(hours=30)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        state = run_state(engine, "killed")
        if state and state["last_bar"] and state["last_bar"] >= target:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = run_state(engine, "killed")["last_bar"]
    assert target <= killed_at < pd.Timestamp(END, tz="UTC") - pd.Timedelta(hours=1)
    restart = subprocess.run(
        _live(env, "killed", "--exit-at-end", "--port", "0"), capture_output=True, timeout=300
    )
    assert restart.returncode == 0, restart.stderr.decode()
    assert b"resuming account 'killed'" in restart.stderr
    bars = [ln["bar"] for ln in account_bars(engine, "killed")]
    assert len(bars) == len(set(bars)) == N_BARS  # nothing lost or doubled
    resumed = orders_frame(engine, "killed")
    assert resumed["client_order_id"].is_unique
    code, result = _parity(env, "killed", capsys)
    assert code == 0 and result["first_divergence"] is None, result


def test_guards_hot_swap_and_bounded_state(env: Deployed, tmp_path: Path) -> None:
    options = LiveOptions(
        output_dir=env.output_dir,
        data_dir=env.store.root,
        run_name="swap",
        replay=(pd.Timestamp(START, tz="UTC"), pd.Timestamp("2025-03-07", tz="UTC")),
    )
    service = LiveService(options)
    service.served.model.manifest["data"]["train_end"] = "2024-12-01T00:00:00+00:00"  # old
    step = pd.Timedelta(hours=1)
    windows, tails, flats = [], [], []
    for i, data in enumerate(service.warm_up()):
        if i == 10:
            _redeploy(env, "live-b")  # same weights and rules, a new version
        service.step_bar(data, data.bar + step)
        windows.append(len(service.trader.window))
        flats.append(service.trader.flat)
        tails.append(len(service.tail.candles))
    # a newly deployed model is served from the next bar on, without a restart
    assert service.served.version == "live-b"
    models = [ln["model"] for ln in account_bars(service.engine, "swap")]
    assert models[:11] == ["live-a"] * 11 and set(models[11:]) == {"live-b"}
    # the old model was expired (a warning only in replay: decisions were still made, the
    # account traded); the new one is not
    health = service.health()
    assert health["guards"]["expired"] == {"tripped": False, "trips": 1}
    assert health["model_version"] == "live-b" and not service.guards.blocking
    assert len(orders_frame(service.engine, "swap")) > 0
    assert 'guard="expired"} 1.0' in service.metrics.render().decode()
    # bounded: the re-simulation window restarts at flat closes; the tail is trimmed
    for k in range(1, len(windows)):  # after a flat close the window holds one bar
        assert windows[k] == (1 if flats[k - 1] else windows[k - 1] + 1)
    assert max(tails) == tails[-1] and len(set(tails[len(tails) // 2 :])) == 1
    # the kill file: flatten and stop
    service.guards.kill_file.write_text("stop")
    service._check_guards(service.last_bar, service.last_bar + step)
    assert service.killed.is_set() and service.guards.blocking
    service.kill()
    assert run_state(service.engine, "swap")["cash"] == pytest.approx(service.trader.equity())
    _redeploy(env, "live-a")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["live", "--symbols", "SOL/USDT"], "does not trade ['SOL/USDT']"),
        (["live", "--host", "0.0.0.0"], "CRYPTOML_LIVE_TOKEN"),
        (["live", "--execute"], "--execute"),
        (["paper", "--profile", "tiny", "--start", START], "manifest"),
        (["paper", "--timeframe", "4h", "--start", START], "contradicts"),
        (["paper", "--symbols", "SOL/USDT", "--start", START], "does not trade"),
    ],
)
def test_flags_that_contradict_the_manifest_fail_with_one_line(
    env: Deployed, capsys, monkeypatch, argv, message
) -> None:
    monkeypatch.delenv("CRYPTOML_LIVE_TOKEN", raising=False)
    paths = ["--data-dir", str(env.store.root), "--output-dir", str(env.output_dir)]
    if argv[0] == "live":
        paths += ["--replay", START, END, "--port", "0", "--exit-at-end", "--run-name", "flags"]
    capsys.readouterr()
    assert main([*argv, *paths]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("cryptoml: error")]
    assert len(errors) == 1 and message in errors[0], err
