"""The dashboard's live panel: accounts written by the live service itself (``LiveService`` in
replay mode, bar by bar), one with its ``expired`` guard tripped twice and still tripped and a
per-symbol notional cap that scales entries down, one killed by the kill file; the page in
headless Chromium shows each account's last bar, equity and guards with their counts, all read
back from the database and checked against the service's own counters and the backtest of the
account's bars. With no account the panel
says so. The screenshot is kept as a test artifact (``$CRYPTOML_TEST_ARTIFACTS`` or
``output/test-artifacts``)."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from cryptoml_pipeline.dashboard.data import DashboardData
from cryptoml_pipeline.dashboard.live_accounts import (
    EMPTY_NOTE,
    NOT_RECORDED,
    BarMarks,
    guard_rows,
    rising_edges,
)
from cryptoml_pipeline.dashboard.server import make_server
from cryptoml_pipeline.live.paper import account_bars, equity_marks, run_state
from cryptoml_pipeline.live.service import LiveOptions, LiveService
from cryptoml_pipeline.registry.db import open_database
from cryptoml_pipeline.registry.deployment_store import deploy
from cryptoml_pipeline.settings import profile_settings
from cryptoml_pipeline_tests.db_fixtures import skip_or_fail
from cryptoml_pipeline_tests.test_dashboard import ARTIFACTS, _chromium
from cryptoml_pipeline_tests.test_trading_realtime import Deployed, build_deployed

START = pd.Timestamp("2025-03-05", tz="UTC")
STEP = pd.Timedelta(hours=1)
OLD_TRAIN_END = "2024-12-01T00:00:00+00:00"  # > max_model_age_days before the replayed bars
EXPIRED_BARS = {*range(0, 6), *range(12, 24)}  # the model is expired at these bars: 2 trips
NOTIONAL_CAP = 0.05  # x equity: binds (the fixture's entries are sized ~0.07-0.1 x equity)
CAP_COUNT = "max_notional_per_symbol_entries"


@dataclass(frozen=True)
class Accounts:
    dep: Deployed
    expired_trips: int  # the service's own count (its Prometheus counter)
    capped: int  # entries the cap scaled down or skipped in the backtest of the account's bars
    url: str


def _deploy(dep: Deployed) -> None:
    """The fixture model trading often, with a per-symbol notional cap (a recorded threshold)."""
    risk = dep.settings.risk.model_copy(
        update={
            "edge_cost_multiple": None,
            "confidence_threshold": 0.2,
            "max_notional_per_symbol": NOTIONAL_CAP,
        }
    )
    settings = dep.settings.model_copy(update={"risk": risk, "min_hold_bars": 3})
    manifest = dict(dep.model.manifest) | {
        "version": "dash-a",
        "settings": settings.model_dump(mode="json"),
    }
    deploy(dep.output_dir, dep.model, manifest)


def _service(dep: Deployed, run: str, hours: int) -> LiveService:
    return LiveService(
        LiveOptions(
            output_dir=dep.output_dir,
            data_dir=dep.store.root,
            run_name=run,
            replay=(START, START + hours * STEP),
        )
    )


def _expiring_account(dep: Deployed) -> tuple[int, int]:
    """24 bars; the served model is expired at EXPIRED_BARS (a warning only in replay). Returns
    the service's count of expired trips and the backtest's count of capped entries."""
    service = _service(dep, "expiring", 24)
    data_manifest = service.served.model.manifest["data"]
    fresh = data_manifest["train_end"]
    for i, data in enumerate(service.warm_up()):
        data_manifest["train_end"] = OLD_TRAIN_END if i in EXPIRED_BARS else fresh
        service.step_bar(data, data.bar + STEP)
    data_manifest["train_end"] = fresh
    backtest = service.trader.close_out()  # the simulator over exactly the account's bars
    return service.guards.trips["expired"], int((backtest.guard_counts or {})[CAP_COUNT])


def _killed_account(dep: Deployed) -> None:
    """8 bars, then the kill file: the service sees it at the next bar, then flattens and stops."""
    service = _service(dep, "killed", 12)
    for i, data in enumerate(service.warm_up()):
        if i == 8:
            service.guards.kill_file.write_text("stop")
        service.step_bar(data, data.bar + STEP)
        if service.killed.is_set():
            break
    service.kill()


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Accounts]:
    dep = build_deployed(tmp_path_factory.mktemp("dash_live"))
    _deploy(dep)
    trips, capped = _expiring_account(dep)
    _killed_account(dep)
    data = DashboardData(
        open_database(dep.output_dir), profile_settings("tiny"), "paper", dep.output_dir
    )
    srv = make_server(data, 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield Accounts(dep, trips, capped, f"http://127.0.0.1:{srv.server_address[1]}")
    srv.shutdown()
    srv.server_close()


class _Tables(HTMLParser):
    """The text of every table cell inside the element with id ``section``, per table class."""

    def __init__(self, section: str) -> None:
        super().__init__()
        self.section, self.depth = section, 0
        self.tables: dict[str, list[list[str]]] = {}
        self.table: str | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if self.depth:
            self.depth += tag == "section"
        elif tag == "section" and a.get("id") == self.section:
            self.depth = 1
        if not self.depth:
            return
        if tag == "table":
            self.table = a.get("class") or ""
            self.tables[self.table] = []
        elif tag == "tr" and self.table is not None:
            self.tables[self.table].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if not self.depth:
            return
        if tag in ("td", "th") and self.cell is not None and self.table is not None:
            self.tables[self.table][-1].append("".join(self.cell).strip())
            self.cell = None
        elif tag == "table":
            self.table = None
        elif tag == "section":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def _records(rows: list[list[str]]) -> list[dict[str, str]]:
    head, *body = rows
    return [dict(zip(head, r, strict=True)) for r in body]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        return resp.read()


def _expected(dep: Deployed, run: str) -> dict[str, object]:
    """What the database holds for ``run``, read with the live package's own readers."""
    engine = open_database(dep.output_dir)
    state = run_state(engine, run)
    marks = equity_marks(engine, run)
    return {
        "last_bar": pd.Timestamp(state["last_bar"]).isoformat(),
        "bars": len(marks),
        "mark": float(marks.iloc[-1]),
        "cash": float(state["cash"]),
        "last_guards": account_bars(engine, run)[-1]["guards"],
    }


def test_rising_edges_and_not_recorded() -> None:
    assert rising_edges([]) == 0
    assert rising_edges([True, True, False, True, False, False, True]) == 3
    # an account record without thresholds, bars without guard states: nothing is inferred
    marks = BarMarks(
        equity=pd.Series([1.0, 2.0]), guards=[None, None], counts=[None] * 2, closes={}
    )
    rows = {r["guard"]: r for r in guard_rows({"mode": "live"}, marks)}
    for name in ("stale", "expired", "degraded", "max_notional_total"):
        assert rows[name]["threshold"] == rows[name]["trips"] == NOT_RECORDED, rows[name]
    assert (rows["kill"]["tripped"], rows["kill"]["trips"]) == ("no", 0)  # killed_at: recorded


def test_no_account_is_an_explicit_empty_state(tmp_path: Path) -> None:
    data = DashboardData(open_database(tmp_path), profile_settings("tiny"), "paper", tmp_path)
    payload = data.payload("live")
    assert (payload["rows"], payload["guards"], payload["note"]) == ([], [], EMPTY_NOTE)
    assert data.plot("live")[:4] == b"\x89PNG"


def test_the_service_records_what_the_panel_shows(accounts: Accounts) -> None:
    payload = json.loads(_get(f"{accounts.url}/api/live"))
    rows = {r["account"]: r for r in payload["rows"]}
    assert set(rows) == {"expiring", "killed"} and payload["note"] is None
    for run in rows:
        want = _expected(accounts.dep, run)
        assert rows[run]["last_bar"] == want["last_bar"] and rows[run]["bars"] == want["bars"]
        assert (rows[run]["mode"], rows[run]["feed"], rows[run]["model"]) == (
            "paper",
            "replay",
            "dash-a",
        )
    assert rows["expiring"]["bars"] == 24 and rows["killed"]["bars"] == 9
    assert rows["expiring"]["equity"] == _expected(accounts.dep, "expiring")["mark"]
    # the kill flattened after the last bar: the account is its cash
    assert rows["killed"]["equity"] == _expected(accounts.dep, "killed")["cash"]
    assert rows["killed"]["positions"] == "none" and rows["killed"]["exposure"] == 0
    assert rows["expiring"]["trades"] > 0
    guards = {(g["account"], g["guard"]): g for g in payload["guards"]}
    assert accounts.expired_trips == 2  # the service's own counter agrees with the records
    assert guards["expiring", "expired"]["trips"] == accounts.expired_trips
    assert guards["expiring", "expired"]["tripped"] == "yes"
    assert _expected(accounts.dep, "expiring")["last_guards"]["expired"] is True
    assert guards["killed", "expired"]["trips"] == 0
    assert (guards["killed", "kill"]["tripped"], guards["killed", "kill"]["trips"]) == ("yes", 1)
    assert guards["expiring", "kill"]["trips"] == 0
    cap = guards["expiring", "max_notional_per_symbol"]
    assert str(NOTIONAL_CAP) in cap["threshold"]
    assert cap["trips"] == accounts.capped > 0  # the per-bar records add up to the backtest's
    assert guards["expiring", "max_notional_total"]["threshold"] == "off"
    assert guards["expiring", "daily_loss_limit"]["threshold"] == "off"
    assert _get(f"{accounts.url}/plot/live.png")[:4] == b"\x89PNG"


@pytest.mark.chromium
def test_live_panel_in_headless_chromium(accounts: Accounts, tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        skip_or_fail("chromium not installed (apt-get install chromium; .ci/run does)")
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    base += ["--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    base += ["--virtual-time-budget=15000", "--window-size=1400,2600"]
    dom = subprocess.run(
        [*base, "--dump-dom", f"{accounts.url}/"], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-ready="yes"' in html, html[:2000]
    assert 'id="panel-live" data-status="ok"' in html
    assert '<div id="errors"></div>' in html
    parser = _Tables("panel-live")
    parser.feed(html)
    shown = {r["account"]: r for r in _records(parser.tables["accounts"])}
    guards = {(g["account"], g["guard"]): g for g in _records(parser.tables["guards"])}
    for run in ("expiring", "killed"):
        want = _expected(accounts.dep, run)
        row = shown[run]
        assert row["last_bar"] == want["last_bar"] and row["bars"] == str(want["bars"])
        equity = want["cash"] if run == "killed" else want["mark"]
        assert float(row["equity"]) == pytest.approx(equity, abs=1e-4)  # shown to 4 decimals
    assert "expired" in shown["expiring"]["guards_tripped"].split(", ")
    assert "kill" in shown["killed"]["guards_tripped"].split(", ")
    assert "expired" not in shown["killed"]["guards_tripped"]
    expired = guards["expiring", "expired"]
    assert (expired["tripped"], expired["trips"]) == ("yes", str(accounts.expired_trips))
    assert (guards["killed", "kill"]["tripped"], guards["killed", "kill"]["trips"]) == ("yes", "1")
    assert guards["expiring", "max_notional_per_symbol"]["trips"] == str(accounts.capped)
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard_live_accounts.png"
    snap = subprocess.run(
        [*base, f"--screenshot={shot}", f"{accounts.url}/"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert snap.returncode == 0 and shot.stat().st_size > 10_000, snap.stderr[-2000:]
