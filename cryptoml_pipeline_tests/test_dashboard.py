"""The monitoring dashboard: JSON endpoints and, in a real headless Chromium, the page loads
with no console errors and every panel has data. The screenshot is kept as a test artifact
(``$CRYPTOML_TEST_ARTIFACTS`` or ``output/test-artifacts``)."""

import json
import os
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from cryptoml_pipeline.dashboard.data import PANELS, DashboardData
from cryptoml_pipeline.dashboard.server import make_server
from cryptoml_pipeline.live.paper import PaperTrader, replay
from cryptoml_pipeline.live.paper_feed import build_feed, load_market
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.monitoring.tracker import ModelPerformanceTracker
from cryptoml_pipeline.registry.candidates import load_verified
from cryptoml_pipeline.registry.model_registry import ModelRegistry
from cryptoml_pipeline_tests.db_fixtures import skip_or_fail
from cryptoml_pipeline_tests.mgmt_helpers import deploy_tiny_model

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("CRYPTOML_TEST_ARTIFACTS", REPO / "output" / "test-artifacts"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("dash")
    deployed = deploy_tiny_model(shared_data, out)
    # the tiny 1-epoch model's expected moves never clear the default cost filter (2x round-trip
    # cost): switch it off so the paper panel has orders (the filter: test_paper_replay.py)
    risk = deployed.settings.risk.model_copy(update={"edge_cost_multiple": None})
    settings = deployed.settings.model_copy(update={"risk": risk})
    model = load_verified(ModelRegistry(deployed.engine), deployed.version)
    start, end = pd.Timestamp("2025-06-01", tz="UTC"), pd.Timestamp("2025-06-04", tz="UTC")
    market = load_market(shared_data, settings, start, end + pd.Timedelta(days=1), live=False)
    feed = build_feed(market, model, settings, start, end)
    tracker = ModelPerformanceTracker(deployed.engine)
    tracker.record_predictions(deployed.version, feed.predictions, horizon=5, timeframe="1h")
    labels = make_labels(market.candles, settings.target, settings.labels, timeframe="1h")
    tracker.fill_outcomes(labels, now=end.to_pydatetime())
    trader = PaperTrader(
        deployed.engine,
        run_name="paper",
        model_version=deployed.version,
        settings=settings,
        timeframe="1h",
        initial_equity=1000.0,
    )
    replay(trader, feed.inputs)
    data = DashboardData(deployed.engine, settings, "paper")
    srv = make_server(data, 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        return resp.read()


def test_every_endpoint_has_data(server) -> None:
    assert server.startswith("http://127.0.0.1:")
    for panel in PANELS:
        payload = json.loads(_get(f"{server}/api/{panel}"))
        assert payload, panel
    assert json.loads(_get(f"{server}/api/registry"))["deployed"].startswith("tiny-")
    # 3 days of 1h bars + the bar before the window (its decision fills at the first open)
    assert json.loads(_get(f"{server}/api/predictions"))["n"] == 73
    rolling = json.loads(_get(f"{server}/api/rolling"))["latest"]
    assert 0 <= rolling["accuracy"] <= 1
    assert json.loads(_get(f"{server}/api/paper"))["n_orders"] > 0
    # the tracker has live records: they are shown, not the walk-forward fallback
    predictions = json.loads(_get(f"{server}/api/predictions"))
    assert (predictions["source"], predictions["note"]) == ("live", None)
    # no feature_importance partitions stored here: the weight-norm proxy, labelled as such
    importance = json.loads(_get(f"{server}/api/importance"))
    assert importance["source"] == "weight_norm" and "proxy" in importance["label"]
    assert importance["rows"] and set(importance["rows"][0]) == {"feature", "share"}
    for plot in ("backtest", "predictions", "rolling", "confidence", "importance"):
        assert _get(f"{server}/plot/{plot}.png")[:4] == b"\x89PNG"
    with pytest.raises(urllib.error.HTTPError):
        _get(f"{server}/../pyproject.toml")


def _importance_table(fold: str, values: dict[str, float]) -> pd.DataFrame:
    from cryptoml_pipeline.modeling.importance import IMPORTANCE_COLUMNS

    rows = [
        {
            "fold": fold,
            "feature": name,
            "family": "technical",
            "importance_logloss": value,
            "importance_logloss_std": 0.0,
            "importance_accuracy": value / 10,
            "base_logloss": 1.5,
            "base_accuracy": 0.3,
            "n_rows": 100,
        }
        for name, value in values.items()
    ]
    return pd.DataFrame(rows, columns=IMPORTANCE_COLUMNS)


def test_importance_panel_prefers_stored_permutation_importance(tmp_path) -> None:
    from cryptoml_pipeline.registry.artifact_store import write_value
    from cryptoml_pipeline.registry.db import open_database
    from cryptoml_pipeline.settings import profile_settings

    data = DashboardData(
        open_database(tmp_path), profile_settings("tiny"), "paper", output_dir=tmp_path
    )
    # nothing deployed, nothing stored: says so
    empty = data.payload("importance")
    assert (empty["source"], empty["rows"]) == ("none", [])
    assert "no feature importance" in empty["label"]
    root = tmp_path / "assets" / "feature_importance"
    # importance disabled stores empty tables: still nothing to show
    write_value(root / "fold_00", _importance_table("fold_00", {}))
    assert data.payload("importance")["source"] == "none"
    write_value(root / "fold_00", _importance_table("fold_00", {"rsi": 0.04, "atr": -0.01}))
    write_value(root / "fold_01", _importance_table("fold_01", {"rsi": 0.02, "atr": 0.03}))
    imp = data.payload("importance")
    assert imp["source"] == "permutation" and imp["folds"] == ["fold_00", "fold_01"]
    assert "permutation importance" in imp["label"] and "2 fold(s)" in imp["label"]
    rows = {r["feature"]: r for r in imp["rows"]}
    assert [r["feature"] for r in imp["rows"]] == ["rsi", "atr"]  # by mean over folds
    assert rows["rsi"]["mean_delta_logloss"] == pytest.approx(0.03)
    assert rows["atr"]["mean_delta_logloss"] == pytest.approx(0.01)
    assert rows["atr"]["positive_share"] == pytest.approx(0.5)
    assert data.plot("importance")[:4] == b"\x89PNG"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.chromium
def test_page_in_headless_chromium(server, tmp_path) -> None:
    browser = _chromium()
    if browser is None:
        skip_or_fail("chromium not installed (apt-get install chromium; .ci/run does)")
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    base += ["--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    base += ["--virtual-time-budget=15000", "--window-size=1400,2200"]
    dom = subprocess.run(
        [*base, "--dump-dom", f"{server}/"], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-ready="yes"' in html, html[:2000]
    for panel in ("predictions", "rolling", "importance", "confidence", "signals", "registry"):
        assert f'id="panel-{panel}" data-status="ok"' in html, panel
    assert 'id="panel-paper" data-status="ok"' in html
    # live records: the prediction panels say nothing about a fallback
    assert "walk-forward (out-of-sample) predictions" not in html
    # no run report in this output folder: the backtest panel says why it is empty
    assert 'id="panel-backtest" data-status="empty"' in html
    assert "walk-forward backtest unavailable: reports/report.json not found" in html
    assert '<div id="errors"></div>' in html  # window.onerror / failed fetches would be listed
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # the page logs nothing: any console message is an error here
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard_live.png"
    snap = subprocess.run(
        [*base, f"--screenshot={shot}", f"{server}/"], capture_output=True, text=True, timeout=120
    )
    assert snap.returncode == 0 and shot.stat().st_size > 10_000, snap.stderr[-2000:]
