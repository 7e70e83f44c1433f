"""``cryptoml live`` against the exchange, offline: ccxt's own ``binanceusdm`` client pointed at
the loopback simulator (``exchange_sim.py``) that serves the stored bars and funding and accepts
orders in Binance's REST shape. Bar integrity (late, missing, duplicated, revised, not closed),
429 / 5xx answers, ``--execute`` (a rejected order, a partial fill, a restart between sending an
order and recording it, reconciliation), and nothing sent without ``--execute``."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.live.bar_intake import BarIntake
from cryptoml_pipeline.live.exchange import KEY_ENV, SECRET_ENV, Executor, client_order_id
from cryptoml_pipeline.live.paper import account_bars
from cryptoml_pipeline.live.service import LiveOptions, LiveService
from cryptoml_pipeline_tests.exchange_sim import ExchangeSim, StepClock, binance_id
from cryptoml_pipeline_tests.live_kill import compare, run_once
from cryptoml_pipeline_tests.test_live_service import _redeploy
from cryptoml_pipeline_tests.test_trading_realtime import Deployed, build_deployed

H = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2025-03-08 00:10", tz="UTC")  # the service starts here (simulated clock)
TICK = pd.Timedelta(minutes=15)  # the clock moves this much per poll
DEADLINE = pd.Timedelta(minutes=40)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    dep = build_deployed(tmp_path_factory.mktemp("exec"))
    _redeploy(dep, "exec-a")
    return dep


class PollClock(StepClock):
    """The service's clock: each call (one per poll) moves it by ``TICK``; at ``stop_at`` the
    service is stopped."""

    def __init__(self, start: pd.Timestamp, stop_at: pd.Timestamp) -> None:
        super().__init__(start)
        self.stop_at = stop_at
        self.service: LiveService | None = None

    def tick(self) -> pd.Timestamp:
        self.advance(int(TICK / pd.Timedelta(milliseconds=1)))
        if self.now() >= self.stop_at and self.service is not None:
            self.service.stop()
        return self.now()


def _sim(dep: Deployed, clock: StepClock) -> ExchangeSim:
    return ExchangeSim(dep.candles, dep.funding, timeframe_ms=3_600_000, clock=clock).start()


def _service(
    dep: Deployed, sim: ExchangeSim, clock: PollClock, run: str, *, execute: bool
) -> LiveService:
    service = LiveService(
        LiveOptions(
            output_dir=dep.output_dir,
            data_dir=dep.store.root,
            run_name=run,
            poll_seconds=0.001,
            execute=execute,
            exchange_url=sim.url,
            bar_deadline=DEADLINE,
            clock=clock.tick,
        )
    )
    clock.service = service
    return service


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "test-key")
    monkeypatch.setenv(SECRET_ENV, "test-secret")


def _stored(dep: Deployed, symbol: str, bar: pd.Timestamp) -> list[float]:
    c = dep.candles
    row = c[(c["symbol"] == symbol) & (pd.to_datetime(c["timestamp"], utc=True) == bar)]
    return [float(row[k].iloc[0]) for k in ("open", "high", "low", "close")]


# --- bar intake rules (unit) ----------------------------------------------------------------
def _frame(rows: list[tuple]) -> pd.DataFrame:
    columns = ["timestamp", "symbol", "open", "high", "low", "close", "volume"]
    return pd.DataFrame(rows, columns=columns)


def test_bar_intake_rules() -> None:
    said: list[str] = []
    b0 = pd.Timestamp("2025-01-01", tz="UTC")
    intake = BarIntake(["A", "B"], H, pd.Timedelta(minutes=30), said.append)
    intake.start_after(b0, _frame([(b0, "A", 1, 2, 1, 1.5, 1), (b0, "B", 1, 1, 1, 1, 1)]))
    b1, b2, b3 = b0 + H, b0 + 2 * H, b0 + 3 * H
    ok = (1.0, 2.0, 0.5, 1.5, 3.0)
    # the forming bar b1 (not closed at b1 + 30 min) is never taken
    assert intake.offer(_frame([(b1, "A", *ok), (b1, "B", *ok)]), b1 + H / 2) == []
    assert intake.counts["not_closed"] == 2
    # closed, B missing: wait (late) ...
    assert intake.offer(_frame([(b1, "A", *ok)]), b2 + pd.Timedelta(minutes=5)) == []
    # ... an invalid B (high below close) is dropped (refetched) ...
    bad = (1.0, 1.0, 0.5, 1.5, 3.0)
    assert intake.offer(_frame([(b1, "B", *bad)]), b2 + pd.Timedelta(minutes=10)) == []
    assert intake.counts["invalid"] == 1
    # ... B arrives before the deadline: the bar is taken, counted late; A delivered twice
    [got] = intake.offer(_frame([(b1, "A", *ok), (b1, "B", *ok)]), b2 + pd.Timedelta(minutes=20))
    assert got.bar == b1 and got.candles is not None and len(got.candles) == 2
    assert intake.counts["late"] == 1 and intake.counts["duplicate"] == 1
    # b2: B never comes: skipped at the deadline (missing); its late arrival is ignored
    assert intake.offer(_frame([(b2, "A", *ok)]), b3 + pd.Timedelta(minutes=10)) == []
    [skip] = intake.offer(_frame([(b2, "A", *ok)]), b3 + pd.Timedelta(minutes=31))
    assert skip.bar == b2 and skip.candles is None and intake.counts["missing"] == 1
    intake.offer(_frame([(b2, "B", *ok)]), b3 + pd.Timedelta(minutes=40))
    assert intake.counts["ignored"] == 1
    # a revised candle of a processed bar: counted, not re-decided
    revised = (1.0, 2.0, 0.5, 1.6, 3.0)
    assert intake.offer(_frame([(b1, "A", *revised)]), b3 + H) == []
    assert intake.counts["revised"] == 1
    assert any("late" in s for s in said) and any("missing" in s for s in said)


# --- the service against the exchange simulator ----------------------------------------------
def test_live_polling_without_execute_sends_nothing_and_applies_the_bar_rules(
    env: Deployed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    clock = PollClock(T0, T0 + 12 * H)
    sim = _sim(env, clock)
    late_bar, missing_bar = T0.floor("h") + 3 * H, T0.floor("h") + 6 * H
    ms = int(late_bar.value // 10**6)
    sim.faults.late[(binance_id("SOL/USDT"), ms)] = ms + 3_600_000 + 20 * 60_000
    sim.faults.missing.add((binance_id("ETH/USDT"), int(missing_bar.value // 10**6)))
    sim.faults.errors += [("/fapi/v1/klines", 429), ("/fapi/v1/fundingRate", 503)]
    try:
        service = _service(env, sim, clock, "poll", execute=False)
        assert service.run() == 0
    finally:
        sim.stop()
    assert sim.posted == [] and not any(p.startswith("/fapi/v3") for _, p in sim.requests)
    health = service.health()
    events = health["bar_events"]
    assert events["late"] >= 1 and events["missing"] == 1 and events["not_closed"] >= 1
    metrics = service.metrics.render().decode()
    assert 'cryptoml_live_bar_events_total{kind="missing"} 1.0' in metrics
    errors = [ln for ln in metrics.splitlines() if ln.startswith("cryptoml_live_exchange_errors")]
    assert errors and float(errors[0].split()[-1]) >= 2
    bars = [pd.Timestamp(b["bar"]) for b in account_bars(service.engine, "poll")]
    assert late_bar in bars and missing_bar not in bars
    assert max(bars) + H <= clock.now()  # never a bar that had not closed
    for line in account_bars(service.engine, "poll"):  # closed values, never the forming bar's
        bar = pd.Timestamp(line["bar"])
        for symbol, ohlc in line["candles"].items():
            assert ohlc == pytest.approx(_stored(env, symbol, bar), rel=1e-8)


def test_execute_needs_keys_from_the_environment(env: Deployed, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    clock = PollClock(T0, T0 + H)
    sim = _sim(env, clock)
    try:
        with pytest.raises(InputError, match=KEY_ENV):
            _service(env, sim, clock, "nokeys", execute=True)
    finally:
        sim.stop()


class Crash(BaseException):
    """The process dies (a kill -9 between sending an order and recording it)."""


def test_execute_rejected_partial_restart_and_reconciliation(
    env: Deployed, keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = PollClock(T0, T0 + 30 * H)
    sim = _sim(env, clock)
    sim.faults.reject.append("cml")  # the first order is rejected
    sim.faults.partial.append(("cml", 0.5))  # the next one half filled
    sim.faults.errors.append(("/fapi/v1/order", 503))  # and one 5xx on the order path
    crash_after = {"n": 3}  # die after the 3rd accepted order, before recording it
    real_fill = Executor._fill

    def dying_fill(self, order, result):
        crash_after["n"] -= 1
        if crash_after["n"] == 0 and order.get("done") is None:
            raise Crash
        return real_fill(self, order, result)

    monkeypatch.setattr(Executor, "_fill", dying_fill)
    try:
        first = _service(env, sim, clock, "exec", execute=True)
        with pytest.raises(Crash):
            first.run()
        state = json.loads((env.output_dir / "live" / "exec.execution.json").read_text())
        assert state["intent"] is not None  # the interrupted bar: sent, not recorded
        posted_before = list(sim.posted)
        second = _service(env, sim, clock, "exec", execute=True)
        assert second.run() == 0
    finally:
        sim.stop()
    assert len(sim.posted) == len(set(sim.posted)), "an order was sent twice"
    assert set(posted_before) <= set(sim.posted)
    counts = second.executor.counts
    assert counts["found"] >= 1  # the order sent before the crash was taken, not resent
    assert first.executor.counts["rejected"] == 1 and first.executor.counts["partial"] == 1
    assert second.halted is None
    book = second.executor.book
    have = {s: sim.positions.get(binance_id(s), 0.0) for s in second.trading}
    assert all(abs(have[s] - book.get(s, 0.0)) < 1e-9 for s in second.trading)
    assert len(sim.orders) >= 4  # it traded
    ids = {o["clientOrderId"] for o in sim.orders.values()}
    assert all(len(i) <= 36 and i.startswith("cml") for i in ids)
    reduce = [o for o in sim.orders.values() if o["reduceOnly"]]
    assert reduce  # exits are reduce-only

    # someone trades the account by hand: the next reconciliation stops trading (one line)
    clock2 = PollClock(clock.now(), clock.now() + 6 * H)
    sim2 = _sim(env, clock2)
    sim2.positions = dict(sim.positions)
    sim2.orders = dict(sim.orders)
    sim2.positions[binance_id("BTC/USDT")] = sim2.positions.get(binance_id("BTC/USDT"), 0) + 1.0
    try:
        third = _service(env, sim2, clock2, "exec", execute=True)
        assert third.run() == 3
    finally:
        sim2.stop()
    assert "mismatch" in (third.halted or "") and "BTC/USDT" in third.halted
    assert third.health()["status"] == "halted"


def test_sigkill_of_the_real_process_after_an_accepted_order_then_restart(
    env: Deployed, keys, tmp_path: Path
) -> None:
    """One ``kill -9`` trial (``benchmarks/live_kill.py`` runs 20): ``cryptoml live --execute
    --exchange-clock`` as a real subprocess, SIGKILLed right after the simulator accepted its
    first order (before the answer arrived), restarted with the same ``--run-name``: the orders
    the simulator received equal a never-killed run's (nothing lost, nothing sent twice), and so
    do the positions and the paper fills."""
    reference = run_once(env, tmp_path / "reference", 12, in_process=True)
    assert reference.returncodes == [0] and reference.orders
    trial = run_once(env, tmp_path / "trial", 12, kill_at_order=1)
    assert trial.returncodes == [-signal.SIGKILL, 0], trial.stderr_tail
    assert trial.killed_after_orders is not None and trial.killed_after_orders >= 1
    result = compare(reference, trial)
    assert result["lost"] == result["doubled"] == result["extra"] == result["different"] == 0
    assert result["positions_equal"] and result["paper_fills_equal"] and result["finished"]
    assert "taken, not resent" in trial.stderr_tail


def test_client_order_ids_are_deterministic_and_legal() -> None:
    bar = pd.Timestamp("2025-03-08 05:00", tz="UTC")
    a = client_order_id("run", bar, "BTC/USDT", "e")
    assert a == client_order_id("run", bar, "BTC/USDT", "e")
    assert a != client_order_id("run", bar + H, "BTC/USDT", "e")
    assert a != client_order_id("run", bar, "ETH/USDT", "e")
    assert a != client_order_id("other", bar, "BTC/USDT", "e")
    assert len(a) <= 36 and a.isalnum()
