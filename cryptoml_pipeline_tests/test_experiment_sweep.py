"""``cryptoml experiment``: a tiny sweep on the synthetic market, killed mid-way (``kill -9``) and
resumed without redoing finished (configuration, split) partitions; the leaderboard, its HTML
page and ``selected.yaml``; bad grids refused before any work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from cryptoml_pipeline.cli import main
from cryptoml_pipeline.defs.partitions import experiment_partitions
from cryptoml_pipeline.defs.resources import PipelineResource

# two configurations that differ only in a decision setting: one training serves both
GRID = """\
name: tinysweep
selection_rule: best_walk_forward_net_sharpe
model: gbm
cpcv: {n_groups: 4, k_test: 2}
parameters:
  risk.edge_cost_multiple: [null, 0.5]  # no cost filter, and a low one: the tiny model trades
"""
N_PARTITIONS = 2 * (2 + 6)  # configurations x (2 walk-forward folds + C(4, 2) CPCV splits)
KEY = dg.AssetKey("experiment_predictions")


def _args(grid: Path, out: Path) -> list[str]:
    common = ["--profile", "tiny", "--synthetic", "--output-dir", str(out)]
    return ["experiment", "--grid", str(grid), *common]


def _materializations(home: Path) -> dict[str, int]:
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        records = instance.fetch_materializations(KEY, limit=10_000).records
    counts: dict[str, int] = {}
    for r in records:
        counts[r.partition_key] = counts.get(r.partition_key, 0) + 1
    return counts


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Start the sweep in a subprocess, kill -9 it after a few partitions, rerun in process."""
    tmp = tmp_path_factory.mktemp("sweep")
    grid, out, home = tmp / "tinysweep.yaml", tmp / "out", tmp / "dagster_home"
    grid.write_text(GRID)
    env = os.environ | {"DAGSTER_HOME": str(home)}
    log = tmp / "first.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cryptoml_pipeline.cli", *_args(grid, out)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if "[cryptoml] 4/" in log.read_text():
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the sweep ended before it could be killed:\n{log.read_text()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    before = _materializations(home)
    old_home = os.environ.get("DAGSTER_HOME")
    rerun_log = tmp / "second.log"
    with rerun_log.open("w") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "cryptoml_pipeline.cli", *_args(grid, out)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=600,
        )
    assert proc.returncode == 0, rerun_log.read_text()[-3000:]
    after = _materializations(home)
    if old_home is not None:
        os.environ["DAGSTER_HOME"] = old_home
    return {
        "out": out,
        "grid": grid,
        "before": before,
        "after": after,
        "second_log": rerun_log.read_text(),
    }


def test_a_killed_sweep_resumes_without_redoing_finished_partitions(sweep):
    before, after = sweep["before"], sweep["after"]
    assert len(before) >= 4  # killed after the 4th partition had started
    assert len(after) == N_PARTITIONS
    assert all(after[k] == 1 for k in before), "a finished partition was trained again"
    assert all(n == 1 for n in after.values())
    assert f"{len(before)}/{N_PARTITIONS} partitions already finished" in sweep["second_log"]
    for key in after:  # every partition is a (configuration, split) key of the grid
        dims = experiment_partitions.get_partition_key_from_str(key).keys_by_dimension
        assert dims["configuration"].startswith("tinysweep+")
        assert dims["split"].split("-")[0] in {"wf", "cpcv"}


def test_leaderboard_lists_every_configuration_with_selection_statistics(sweep):
    out = sweep["out"]
    found = [p for p in out.rglob("leaderboard.json")]
    assert found == [out / "experiments" / "tinysweep" / "leaderboard.json"]
    board = json.loads(found[0].read_text())
    summary = board["summary"]
    assert summary["n_configurations"] == 2
    assert summary["selection_rule"] == "best_walk_forward_net_sharpe"
    assert summary["dsr_trials"] >= summary["n_configurations"]
    assert summary["pbo"] is None or 0.0 <= summary["pbo"] <= 1.0
    assert summary["dsr"] is None or 0.0 <= summary["dsr"] <= 1.0
    rows = {r["name"]: r for r in board["configurations"]}
    assert len(rows) == 2 and summary["selected"] in rows
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert ok, board["configurations"]
    for row in ok:
        assert row["cpcv_n_paths"] == 3  # C(4,2) * 2 / 4
        assert row["walk_forward_net_sharpe"] is not None
        assert set(row["cpcv_path_sharpe_quantiles"]) >= {"min", "median", "max"}
    # the best walk-forward net Sharpe was picked (the rule declared in the grid)
    best = max(ok, key=lambda r: r["walk_forward_net_sharpe"])
    assert summary["selected"] == best["name"]
    html = (out / "experiments" / "tinysweep" / "leaderboard.html").read_text()
    assert all(name in html for name in rows)


def test_selected_yaml_promotes_the_pick_with_the_sweeps_trial_count(sweep):
    out = sweep["out"]
    board = json.loads((out / "experiments" / "tinysweep" / "leaderboard.json").read_text())
    selected = out / "experiments" / "tinysweep" / "selected.yaml"
    settings = PipelineResource(profile="tiny", config_file=str(selected)).settings()
    pick = next(r for r in board["configurations"] if r["name"] == board["summary"]["selected"])
    assert settings.risk.edge_cost_multiple == pick["params"]["risk.edge_cost_multiple"]
    assert settings.controls.n_trials == board["summary"]["dsr_trials"]
    assert settings.experiment is not None
    assert settings.experiment.grid == "tinysweep"
    assert settings.experiment.configuration == pick["name"]
    assert yaml.safe_load(selected.read_text())["experiment"]["pbo"] == board["summary"]["pbo"]


def test_a_bad_grid_is_one_line_and_exit_2_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    grid = tmp_path / "bad.yaml"
    grid.write_text(GRID.replace("risk.edge_cost_multiple", "risk.edge_cost_multipel"))
    code = main(_args(grid, tmp_path / "out"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "edge_cost_multipel" in err[0]
    assert not (tmp_path / "out" / "experiments").exists()
    assert not (tmp_path / "home").exists()
