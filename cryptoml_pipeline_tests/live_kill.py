"""``kill -9`` trials of ``cryptoml live --execute`` against the exchange simulator (used by
``benchmarks/live_kill.py`` and, one trial, by ``test_live_execution.py``).

The simulator (``exchange_sim.ExchangeSim``) runs in a thread of THIS process, so it outlives
the service, which runs as a real subprocess: ``cryptoml live --execute --exchange-url <sim>
--exchange-clock``. The service's clock is the simulator's (``GET /fapi/v1/time``, asked once a
poll), which moves ``TICK`` per ask up to the end of the window and stands still while the
service is dead: the run covers the same simulated bars whatever the wall clock does.

A trial: a fresh copy of the deployed fixture and a fresh simulator; the service is started,
SIGKILLed at a random moment (``time``: a random delay after the account's first bar, within the
reference's bar loop; ``order``: right after the simulator accepted the k-th order, before the
answer reaches the service -- the "sent, not recorded" moment), restarted with the same
``--run-name`` and let run to the end of the window, then stopped (SIGTERM). The orders the
simulator received (client order id, side, quantity) are compared with those of a never-killed
reference run: ``lost`` (a reference order never received), ``doubled`` (an id POSTed more than
once: the simulator, like Binance, refuses the second), ``extra`` / ``different`` (an order the
reference did not send / sent with another side or quantity); also the final positions and the
paper account's fills.

A kill BEFORE the account's first committed bar is not a ``time`` moment: the restart is then a
new account, which starts at the exchange's current bar (later than the reference's start, as
the killed process's polls moved the clock), so its first entry carries a later bar's id; the
positions and fills equal, the ids not (seen once in a first version of these trials).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cryptoml_pipeline.live.exchange import KEY_ENV, SECRET_ENV
from cryptoml_pipeline_tests.exchange_sim import ExchangeSim, StepClock

H = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2025-03-08 00:10", tz="UTC")  # the service starts here (simulated clock)
TICK_MS = 30 * 60_000  # the simulated clock moves this much per poll
RUN = "kill"
PAPER_COLUMNS = ["symbol", "bar", "side", "quantity", "reason", "price", "fee"]


@dataclass
class RunResult:
    orders: dict[str, tuple[str, str]]  # client id -> (side, quantity) as the simulator has it
    posted: list[str]  # every order POST's client id, in order
    positions: dict[str, float]
    paper: pd.DataFrame  # the paper account's fills
    executed_bar: str | None
    seconds: float
    loop_seconds: float  # from the account's first committed bar to the end (the bar loop)
    returncodes: list[int] = field(default_factory=list)
    killed_after_orders: int | None = None  # orders the simulator held at the kill
    stderr_tail: str = ""


class Window:
    """The simulated clock of one run: ``bars`` hours from ``T0``."""

    def __init__(self, bars: int) -> None:
        self.clock = StepClock(T0)
        self.stop_ms = int((T0 + bars * H).value // 10**6)
        self.last_bar = (T0 + bars * H).floor("h") - H  # the last bar that closes in it

        self.ticks = 0  # polls so far

    def tick(self) -> None:
        with self.clock.lock:
            self.ticks += 1
            self.clock.ms = min(self.clock.ms + TICK_MS, self.stop_ms)


def _command(dep: Any, sim: ExchangeSim, output_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cryptoml_pipeline.cli",
        "live",
        "--execute",
        "--exchange-url",
        sim.url,
        "--exchange-clock",
        "--poll-seconds",
        "0.02",
        "--bar-deadline",
        "2400",
        "--run-name",
        RUN,
        "--port",
        "0",
        "--data-dir",
        str(dep.store.root),
        "--output-dir",
        str(output_dir),
    ]


def _env() -> dict[str, str]:
    return os.environ | {KEY_ENV: "test-key", SECRET_ENV: "test-secret", "PYTHONHASHSEED": "0"}


def _executed(output_dir: Path) -> tuple[str | None, bool]:
    path = output_dir / "live" / f"{RUN}.execution.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, False
    return state.get("executed_bar"), state.get("intent") is None


def _has_bar(output_dir: Path) -> bool:
    """Whether the account has committed a bar (it exists: a restart resumes it)."""
    import sqlalchemy as sa

    path = output_dir / "cryptoml.db"
    if not path.is_file():
        return False
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT last_bar FROM paper_runs WHERE name = :n"), {"n": RUN}
            ).first()
    except sa.exc.OperationalError:  # not created yet, or locked
        return False
    finally:
        engine.dispose()
    return row is not None and row[0] is not None


def _run_to_end(
    cmd: list[str], output_dir: Path, window: Window, timeout: float, log: Path
) -> tuple[int, str, float | None]:
    """Run the service until its executor has executed the window's last bar and it polls
    again, then SIGTERM."""
    last, ticks = window.last_bar.isoformat(), window.ticks
    first_bar = None  # monotonic time the account's first bar was seen committed
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=_env())
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if first_bar is None and _has_bar(output_dir):
                    first_bar = time.monotonic()
                done, idle = _executed(output_dir)
                if done == last and idle and window.ticks > ticks:
                    break
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, log.read_text(errors="replace")[-2000:], first_bar


def _run_in_process(
    dep: Any, sim: ExchangeSim, output_dir: Path, window: Window, timeout: float
) -> int:
    import threading

    from cryptoml_pipeline.live.service import LiveOptions, LiveService

    service = LiveService(
        LiveOptions(
            output_dir=output_dir,
            data_dir=dep.store.root,
            run_name=RUN,
            poll_seconds=0.02,
            execute=True,
            exchange_url=sim.url,
            exchange_clock=True,
            bar_deadline=pd.Timedelta(seconds=2400),
        )
    )
    last, deadline = window.last_bar.isoformat(), time.monotonic() + timeout

    def watch() -> None:
        while time.monotonic() < deadline and _executed(output_dir) != (last, True):
            time.sleep(0.05)
        service.stop()

    threading.Thread(target=watch, daemon=True).start()
    return service.run()


def run_once(
    dep: Any,
    workdir: Path,
    bars: int,
    *,
    kill_after_s: float | None = None,
    kill_at_order: int | None = None,
    timeout: float = 300.0,
    in_process: bool = False,
) -> RunResult:
    """One run of the service over ``bars`` simulated hours; with ``kill_after_s`` or
    ``kill_at_order`` it is SIGKILLed once and restarted. ``in_process``: the service object in
    this process instead (the same options as the command; the keys must be in the
    environment), a cheaper reference."""
    from cryptoml_pipeline.live.paper import orders_frame
    from cryptoml_pipeline.registry.db import open_database

    if workdir.exists():
        shutil.rmtree(workdir)
    output_dir = workdir / "output"
    shutil.copytree(dep.output_dir, output_dir)
    window = Window(bars)
    sim = ExchangeSim(dep.candles, dep.funding, timeframe_ms=3_600_000, clock=window.clock)
    sim.on_time = window.tick
    sim.start()
    log = workdir / "service.stderr"
    codes: list[int] = []
    killed_after: int | None = None
    tail, first_bar = "", None
    t0 = time.monotonic()
    try:
        cmd = _command(dep, sim, output_dir)
        if in_process:
            codes.append(_run_in_process(dep, sim, output_dir, window, timeout))
        elif kill_after_s is not None or kill_at_order is not None:
            with open(log, "ab") as err:
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=_env())
            if kill_at_order is not None:
                seen = {"n": 0}

                def die(order: dict[str, Any]) -> None:  # accepted, the answer not yet sent
                    seen["n"] += 1
                    if seen["n"] == kill_at_order:
                        os.kill(proc.pid, signal.SIGKILL)

                sim.on_order = die
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()  # fewer orders than k: it never died on its own
                sim.on_order = None
            else:  # kill_after_s after the account's first bar: a moment of the bar loop
                deadline = time.monotonic() + timeout
                while not _has_bar(output_dir) and proc.poll() is None:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
                try:
                    proc.wait(timeout=kill_after_s)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
            codes.append(proc.wait(timeout=60))
            killed_after = len(sim.orders)
        if not in_process:
            code, tail, first_bar = _run_to_end(cmd, output_dir, window, timeout, log)
            codes.append(code)
    finally:
        sim.stop()
    with sim.lock:
        orders = {cid: (str(o["side"]), str(o["origQty"])) for cid, o in sorted(sim.orders.items())}
        posted, positions = list(sim.posted), dict(sim.positions)
    engine = open_database(output_dir)
    paper = orders_frame(engine, RUN)[PAPER_COLUMNS].reset_index(drop=True)
    engine.dispose()
    return RunResult(
        orders=orders,
        posted=posted,
        positions={k: v for k, v in positions.items() if v},
        paper=paper,
        executed_bar=_executed(output_dir)[0],
        seconds=time.monotonic() - t0,
        loop_seconds=time.monotonic() - (first_bar or t0),
        returncodes=codes,
        killed_after_orders=killed_after,
        stderr_tail=tail,
    )


def compare(reference: RunResult, trial: RunResult) -> dict[str, Any]:
    """Lost / doubled / extra / different orders of ``trial`` against ``reference``."""
    ref, got = reference.orders, trial.orders
    posts = Counter(trial.posted)
    lost = sorted(set(ref) - set(got))
    extra = sorted(set(got) - set(ref))
    different = sorted(c for c in set(ref) & set(got) if ref[c] != got[c])
    doubled = sorted(c for c, n in posts.items() if n > 1)
    try:
        pd.testing.assert_frame_equal(trial.paper, reference.paper, check_exact=True)
        paper_equal = True
    except AssertionError:
        paper_equal = False
    return {
        "reference_orders": len(ref),
        "orders": len(got),
        "lost": len(lost),
        "doubled": len(doubled),
        "extra": len(extra),
        "different": len(different),
        "positions_equal": trial.positions == reference.positions,
        "paper_fills_equal": paper_equal,
        "finished": trial.executed_bar == reference.executed_bar,
        "ids": {"lost": lost, "doubled": doubled, "extra": extra, "different": different},
    }


def plan_kills(n: int, seed: int, reference: RunResult) -> list[dict[str, Any]]:
    """``n`` kill moments: alternately a random moment of the bar loop (a delay after the
    account's first committed bar, uniform within the reference's loop) and right after a
    random order (1 .. the reference's order count)."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        if k % 2 == 0:
            out.append(
                {
                    "mode": "time",
                    "kill_after_s": round(rng.uniform(0.0, 1.0) * reference.loop_seconds, 2),
                }
            )
        else:
            out.append(
                {"mode": "order", "kill_at_order": rng.randint(1, max(1, len(reference.orders)))}
            )
    return out
