"""Dagster's current conventions: ``dg`` loads the project (``[tool.dg]`` in pyproject.toml) and
every asset module of ``defs/assets`` is one asset group, named for its domain."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cryptoml_pipeline

REPO = Path(cryptoml_pipeline.__file__).parent.parent


def test_each_asset_module_is_one_group_of_its_own() -> None:
    import dagster as dg

    from cryptoml_pipeline.definitions import ASSET_MODULES, defs

    names = []
    for module in ASSET_MODULES:
        specs = [s for a in dg.load_assets_from_modules([module]) for s in a.specs]
        assert specs, f"{module.__name__} defines no asset"
        assert {s.group_name for s in specs} == {module.GROUP}, module.__name__
        names.append(module.GROUP)
    assert len(names) == len(set(names)), f"modules share a group: {sorted(names)}"
    graph = defs.get_repository_def().asset_graph
    assert {n.group_name for n in graph.asset_nodes} == set(names)


def _dg() -> Path:
    path = Path(sys.executable).with_name("dg")
    if not path.exists():
        found = shutil.which("dg")
        if found is None:
            pytest.skip("dg (dagster-dg-cli) is not installed: make install")
        path = Path(found)
    return path


def test_dg_check_and_list_defs(tmp_path) -> None:
    """What CI runs (``.venv/bin/dg check defs``), and ``dg list defs`` sees the graph."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOML_")}
    env |= {"DAGSTER_HOME": str(tmp_path), "CRYPTOML_OUTPUT_DIR": str(tmp_path / "out")}
    check = subprocess.run(
        [str(_dg()), "check", "defs"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert check.returncode == 0, (check.stdout + check.stderr)[-3000:]
    assert "All definitions loaded successfully" in check.stdout + check.stderr
    listed = subprocess.run(
        [str(_dg()), "list", "defs", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    defs = json.loads(listed.stdout)
    groups = {a["asset_key"]: a["group_name"] for a in defs["assets"]}
    assert groups["run_settings"] == "settings" and groups["backtest"] == "evaluation"
    jobs = {j["name"] for j in defs["jobs"]}
    assert {"prepare_job", "train_folds_job", "evaluate_job", "ingest_job"} <= jobs
