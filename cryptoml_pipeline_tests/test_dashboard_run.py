"""The dashboard right after a pipeline run (no live predictions tracked, nothing deployed, no paper
run): the prediction panels show the run's walk-forward predictions and say so, the backtest panel
shows the run's folds and equity curve, and every empty panel says why in one line. In headless
Chromium the page renders those panels with data; the screenshot is kept as a test artifact
(``$CRYPTOML_TEST_ARTIFACTS`` or ``output/test-artifacts``)."""

import io
import json
import subprocess
import threading
import urllib.request

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.dashboard.data import PANELS, DashboardData
from cryptoml_pipeline.dashboard.server import make_server
from cryptoml_pipeline.monitoring.tracker import ModelPerformanceTracker
from cryptoml_pipeline.registry.db import open_database
from cryptoml_pipeline.settings import profile_settings
from cryptoml_pipeline_tests.db_fixtures import skip_or_fail
from cryptoml_pipeline_tests.test_dashboard import ARTIFACTS, _chromium

FOLDS = {"2025-08-01": "2025-08-01", "2025-08-06": "2025-08-06"}
HOURS_PER_FOLD = 120
SYMBOLS = ("BTC/USDT", "ETH/USDT")
IMPORTANCE_OFF = "feature importance is disabled in this profile (importance.enabled = false)"


def _write_run(out) -> pd.DataFrame:
    """A finished run's artifacts, as the IO manager and write_report store them."""
    rng = np.random.default_rng(7)
    rows = []
    for fold in FOLDS:
        for ts in pd.date_range(fold, periods=HOURS_PER_FOLD, freq="h", tz="UTC"):
            for symbol in SYMBOLS:
                label = float(rng.integers(-2, 3))
                pred = int(np.clip(label + rng.integers(-1, 2), -2, 2))
                rows.append(
                    {
                        "timestamp": ts,
                        "symbol": symbol,
                        "fold": fold,
                        "expected_return": 0.001 * pred,
                        "confidence": float(rng.uniform(0.05, 0.9)),
                        "signal": pred,
                        "pred_class": pred + 2,
                        "label": label,
                    }
                )
    preds = pd.DataFrame(rows)
    preds.loc[preds.index[-4:], "label"] = np.nan  # the last bars' outcomes are not known yet
    assets = out / "assets"
    (assets / "backtest").mkdir(parents=True)
    preds.to_parquet(assets / "oos_predictions.parquet", index=False)
    labels = preds[["timestamp", "symbol", "label"]].assign(
        forward_return=0.002 * preds["label"].fillna(0) + 0.0005
    )
    labels.to_parquet(assets / "label_table.parquet", index=False)
    stamps = pd.date_range("2025-08-01", periods=2 * HOURS_PER_FOLD, freq="h", tz="UTC")
    equity = pd.DataFrame(
        {
            "timestamp": stamps,
            "strategy": 10_000 * np.exp(np.cumsum(rng.normal(2e-4, 2e-3, len(stamps)))),
            "buy_and_hold": 10_000 * np.exp(np.cumsum(rng.normal(0, 5e-3, len(stamps)))),
        }
    )
    equity.to_parquet(assets / "backtest" / "equity.parquet", index=False)
    folds = [
        {
            "fold": fold,
            "train_start": "2025-06-01T00:00:00+00:00",
            "train_end": f"{fold}T00:00:00+00:00",
            "test_start": f"{fold}T00:00:00+00:00",
            "test_end": (pd.Timestamp(fold) + pd.Timedelta(hours=HOURS_PER_FOLD)).isoformat(),
            "n_predictions": HOURS_PER_FOLD * len(SYMBOLS),
            "accuracy": 0.31,
            "strategy_return": 0.012,
        }
        for fold in FOLDS
    ]
    report = {
        "folds": folds,
        "strategy": {"total_return": 0.05, "sharpe": 1.1, "max_drawdown": 0.02},
        "features": {"importance": {"available": False, "reason": IMPORTANCE_OFF}},
    }
    (out / "reports").mkdir()
    (out / "reports" / "report.json").write_text(json.dumps(report))
    return preds


@pytest.fixture(scope="module")
def run_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    preds = _write_run(out)
    data = DashboardData(open_database(out), profile_settings("tiny"), "paper", output_dir=out)
    return data, preds


def test_walk_forward_predictions_fill_the_prediction_panels(run_output) -> None:
    data, preds = run_output
    note = (
        "no live predictions tracked yet — showing the run's walk-forward (out-of-sample) "
        f"predictions: {len(preds)} rows, 2025-08-01 to 2025-08-10"
    )
    predictions = data.payload("predictions")
    assert (predictions["source"], predictions["n"], predictions["note"]) == (
        "walk_forward",
        len(preds),
        note,
    )
    newest = predictions["rows"][0]  # newest first; its outcome is not known yet
    assert newest["symbol"] == "ETH/USDT" and newest["outcome"] is None
    assert newest["expected_return"] == pytest.approx(0.001 * newest["signal"])
    resolved = preds[preds["label"].notna()]
    hits = (resolved["pred_class"] - 2 == resolved["label"]).to_numpy(dtype=float)
    rolling = data.payload("rolling")
    assert rolling["note"] == note and rolling["n"] == len(resolved)
    window = data.settings.retrain.rolling_window
    assert rolling["latest"]["accuracy"] == pytest.approx(hits[-window:].mean())
    # forward returns come from the label table: the return metrics are there
    assert rolling["latest"]["avg_return_per_trade"] is not None
    r = data.settings.retrain
    assert rolling["acc_recent"] == pytest.approx(hits[-r.recent_window :].mean())
    confidence = data.payload("confidence")
    assert confidence["n"] == len(preds) and sum(h["count"] for h in confidence["hist"]) == len(
        preds
    )
    assert confidence["mean"] == pytest.approx(preds["confidence"].mean())
    signals = {row["signal"]: row for row in data.payload("signals")["rows"]}
    assert sum(row["count"] for row in signals.values()) == len(preds)


def test_backtest_panel_and_stated_reasons(run_output) -> None:
    data, _ = run_output
    backtest = data.payload("backtest")
    assert [row["fold"] for row in backtest["rows"]] == list(FOLDS)
    assert backtest["note"] is None and backtest["strategy"]["sharpe"] == 1.1
    importance = data.payload("importance")
    assert importance["rows"] == []
    assert importance["note"] == f"feature importance not computed in this run: {IMPORTANCE_OFF}"
    assert data.payload("registry")["note"].startswith("no model registered yet")
    assert data.payload("paper")["note"] == (
        "no paper-trading run 'paper' recorded yet — start one with `cryptoml paper`"
    )
    for name in ("backtest", "predictions", "rolling", "confidence", "importance"):
        assert data.plot(name)[:4] == b"\x89PNG", name


def test_an_empty_output_folder_says_why_for_every_panel(tmp_path) -> None:
    data = DashboardData(
        open_database(tmp_path), profile_settings("tiny"), "paper", output_dir=tmp_path
    )
    for panel in PANELS:
        payload = data.payload(panel)
        assert payload["note"], panel
        assert "\n" not in payload["note"], panel  # one line
    note = data.payload("predictions")["note"]
    assert note.startswith("no live predictions tracked and no walk-forward predictions: ")
    assert "assets/oos_predictions.parquet not found" in note
    # the empty plot writes the reason instead of drawing bare axes
    image = mpimg.imread(io.BytesIO(data.plot("predictions")), format="png")
    assert (image[..., 0] - image[..., 2] > 0.2).any()  # the red reason text


def test_live_records_replace_the_walk_forward_fallback(tmp_path) -> None:
    _write_run(tmp_path)
    engine = open_database(tmp_path)
    data = DashboardData(engine, profile_settings("tiny"), "paper", output_dir=tmp_path)
    live = pd.DataFrame(
        {
            "timestamp": pd.date_range("2025-09-01", periods=3, freq="h", tz="UTC"),
            "symbol": "BTC/USDT",
            "pred_class": [3, 2, 1],
            "signal": [1, 0, -1],
            "confidence": [0.4, 0.5, 0.6],
            **{c: [0.2] * 3 for c in ("p_m2", "p_m1", "p_0", "p_p1", "p_p2")},
        }
    )
    ModelPerformanceTracker(engine).record_predictions("v1", live, horizon=5, timeframe="1h")
    predictions = data.payload("predictions")
    assert (predictions["source"], predictions["n"]) == ("live", 3)
    assert predictions["note"].startswith("3 live prediction(s) tracked, none resolved yet")


@pytest.fixture(scope="module")
def run_server(run_output):
    data, _ = run_output
    srv = make_server(data, 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.chromium
def test_page_after_a_run_in_headless_chromium(run_server, tmp_path) -> None:
    browser = _chromium()
    if browser is None:
        skip_or_fail("chromium not installed (apt-get install chromium; .ci/run does)")
    with urllib.request.urlopen(f"{run_server}/api/predictions", timeout=30) as resp:
        assert json.loads(resp.read())["source"] == "walk_forward"
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    base += ["--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    base += ["--virtual-time-budget=15000", "--window-size=1400,2400"]
    dom = subprocess.run(
        [*base, "--dump-dom", f"{run_server}/"], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-ready="yes"' in html, html[:2000]
    for panel in ("backtest", "predictions", "rolling", "confidence", "signals"):
        assert f'id="panel-{panel}" data-status="ok"' in html, panel
    assert html.count("showing the run's walk-forward (out-of-sample) predictions") == 4
    for panel in ("importance", "registry", "paper"):
        assert f'id="panel-{panel}" data-status="empty"' in html, panel
    assert "feature importance not computed in this run" in html
    assert "no model registered yet" in html
    assert "no paper-trading run 'paper' recorded yet" in html
    assert "2025-08-06T00:00:00+00:00" in html  # the second fold's row in the backtest table
    assert '<div id="errors"></div>' in html
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    snap = subprocess.run(
        [*base, f"--screenshot={shot}", f"{run_server}/"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert snap.returncode == 0 and shot.stat().st_size > 30_000, snap.stderr[-2000:]
