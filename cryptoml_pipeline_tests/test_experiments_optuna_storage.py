"""The sweep's shared Optuna storage: PostgreSQL when configured, else one SQLite file that
separate processes share; the password never reaches the log."""

from __future__ import annotations

import logging
import multiprocessing as mp
from pathlib import Path

import optuna
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.experiments import optuna_storage
from cryptoml_pipeline.experiments.optuna_storage import (
    STUDY_FILE,
    is_postgresql,
    open_study,
    study_storage,
)

PG_URL = "postgresql://dagster:s3cr3t-pw@db.internal:5432/cryptoml"


def _worker(fallback_dir: str, study_name: str, offset: int, n: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = study_storage(None, Path(fallback_dir))
    study = open_study(storage, study_name, direction="minimize")
    for i in range(n):
        trial = study.ask()
        trial.set_user_attr("worker", offset)
        study.tell(trial, float(offset + i))


def test_two_processes_share_one_sqlite_study(tmp_path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # the parent creates the study first (as the sweep does before fanning out)
    open_study(study_storage(None, tmp_path), "quick+horizon=8", direction="minimize")
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(str(tmp_path), "quick+horizon=8", offset, 3))
        for offset in (100, 200)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert (tmp_path / STUDY_FILE).is_file()
    study = optuna.load_study(study_name="quick+horizon=8", storage=study_storage(None, tmp_path))
    completed = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(t.value for t in completed) == [100, 101, 102, 200, 201, 202]
    assert {t.user_attrs["worker"] for t in completed} == {100, 200}
    assert study.best_value == 100


def test_open_study_loads_an_existing_study(tmp_path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = study_storage(None, tmp_path)
    first = open_study(storage, "s", direction="maximize")
    first.tell(first.ask(), 1.0)
    again = open_study(study_storage(None, tmp_path), "s", direction="maximize")
    assert len(again.trials) == 1


def test_non_postgres_urls_fall_back_to_sqlite(tmp_path) -> None:
    storage = study_storage(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "optuna")
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert (tmp_path / "optuna" / STUDY_FILE).is_file()
    assert not (tmp_path / "registry.db").exists()


def test_postgres_url_gives_an_rdb_storage_without_logging_the_password(
    tmp_path, monkeypatch, caplog
) -> None:
    opened: list[tuple[str, dict]] = []

    class FakeRDB:
        def __init__(self, url: str, engine_kwargs: dict | None = None) -> None:
            opened.append((url, engine_kwargs or {}))

    monkeypatch.setattr(optuna_storage.optuna.storages, "RDBStorage", FakeRDB)
    with caplog.at_level(logging.DEBUG, logger="cryptoml_pipeline"):
        storage = study_storage(PG_URL, tmp_path)
    assert isinstance(storage, FakeRDB)
    url, kwargs = opened[0]
    assert url.startswith("postgresql+psycopg2://dagster:s3cr3t-pw@db.internal")
    assert kwargs["pool_pre_ping"] is True
    assert "s3cr3t-pw" not in caplog.text and "db.internal" in caplog.text
    assert not (tmp_path / STUDY_FILE).exists()  # nothing written locally


def test_unreachable_postgres_fails_without_the_password(tmp_path, monkeypatch) -> None:
    class Refused:
        def __init__(self, url: str, engine_kwargs: dict | None = None) -> None:
            raise RuntimeError(f"could not connect to {url}")

    monkeypatch.setattr(optuna_storage.optuna.storages, "RDBStorage", Refused)
    monkeypatch.setattr(optuna_storage.time, "sleep", lambda _s: None)
    with pytest.raises(InputError) as err:
        study_storage(PG_URL, tmp_path)
    assert "s3cr3t-pw" not in str(err.value) and "db.internal" in str(err.value)


def test_is_postgresql() -> None:
    assert is_postgresql(PG_URL)
    assert is_postgresql("postgresql+psycopg2://u@h/db")
    assert not is_postgresql(None) and not is_postgresql("")
    assert not is_postgresql("sqlite:///x.db")
    with pytest.raises(InputError):
        is_postgresql("not a url")
