from pathlib import Path

import pandas as pd
import pytest

from cryptoml_pipeline import locations
from cryptoml_pipeline.locations import DATA_DIR_ENV, resolve_data_location


def _make_data(root: Path) -> Path:
    (root / "market").mkdir(parents=True)
    pd.DataFrame({"x": [1]}).to_parquet(root / "market" / "BTC_USDT-1h.parquet")
    return root


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(locations, "REPO_ROOT", tmp_path / "nowhere" / "repo")
    cwd = tmp_path / "work" / "project"
    cwd.mkdir(parents=True)
    return cwd


def test_explicit_dir_wins_even_if_missing(isolated: Path) -> None:
    loc = resolve_data_location("/does/not/exist", cwd=isolated)
    assert loc.kind == "parquet" and loc.path == Path("/does/not/exist")


def test_env_var_then_local_data_then_shared(isolated: Path, monkeypatch) -> None:
    shared = _make_data(isolated.parent / "shared" / "data")
    assert resolve_data_location(cwd=isolated).path == shared.resolve()
    local = _make_data(isolated / "data")
    assert resolve_data_location(cwd=isolated).path == local.resolve()
    monkeypatch.setenv(DATA_DIR_ENV, "/env/data")
    assert resolve_data_location(cwd=isolated).path == Path("/env/data")


def test_empty_local_data_dir_is_skipped(isolated: Path) -> None:
    (isolated / "data").mkdir()
    shared = _make_data(isolated.parent / "shared" / "data")
    assert resolve_data_location(cwd=isolated).path == shared.resolve()


def test_nothing_found_falls_back_to_synthetic_loudly(isolated: Path, caplog) -> None:
    loc = resolve_data_location(cwd=isolated)
    assert loc.kind == "synthetic" and loc.path is None
    assert "SYNTHETIC" in caplog.text
