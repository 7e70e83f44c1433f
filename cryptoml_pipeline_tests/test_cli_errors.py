"""The CLI as a user runs it: bad arguments -> one line on stderr, exit code 2, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryptoml_pipeline_tests.conftest import SHARED_DATA


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DAGSTER_HOME=str(cwd / "dh"))
    return subprocess.run(
        [sys.executable, "-m", "cryptoml_pipeline.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        # XRP has a perpetual with funding in the shared data; ADA has no file at all
        (["--symbols", "ADA/USDT"], "traded symbol 'ADA/USDT' has no 1h perpetual candles"),
        (["--symbols", "AVAX/USDT"], "only spot candles: it can be a --universe member"),
        (["--symbols", "BTC/USDT", "--universe", "ADA/USDT"], "universe member 'ADA/USDT'"),
        (["--symbols", " , "], "no symbols"),
        (["--start", "2031-01-01", "--end", "2031-02-01"], "outside"),
        (["--start", "not-a-date"], "not-a-date"),
        (["--profile", "huge"], "huge"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = run_cli("run", "--data-dir", str(SHARED_DATA), *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "WARNING" not in ln]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "output").exists()


def test_missing_data_dir_exit_2(tmp_path: Path) -> None:
    proc = run_cli("run", "--data-dir", str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "nope" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_data_dir_without_market_files_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run_cli("run", "--data-dir", str(tmp_path / "empty"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "no market" in proc.stderr


def test_full_profile_refuses_cpu_without_flag(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():  # on a GPU machine the profile is allowed: nothing to refuse
        return
    proc = run_cli("run", "--data-dir", str(SHARED_DATA), "--profile", "full", cwd=tmp_path)
    assert proc.returncode == 2
    assert "--allow-cpu" in proc.stderr and "Traceback" not in proc.stderr


def test_failed_run_is_summarised_by_the_root_cause() -> None:
    from types import SimpleNamespace as NS

    from cryptoml_pipeline.cli.run import _first_error

    root = NS(message="InputError: fold X: no valid labeled sequences\n", cause=None)
    wrapper = NS(message="DagsterExecutionStepExecutionError: Error in op", cause=root)
    ok = NS(is_step_failure=False)
    failed = NS(is_step_failure=True, step_key="fold_model", step_failure_data=NS(error=wrapper))
    assert _first_error(NS(all_events=[ok, failed])) == (
        "step fold_model: InputError: fold X: no valid labeled sequences"
    )
    assert _first_error(NS(all_events=[ok])) == "the run failed"
