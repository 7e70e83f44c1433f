"""A full small materialization on PostgreSQL: Dagster run/event/schedule storage via
dagster-postgres (a DAGSTER_HOME whose dagster.yaml points at the server) AND the registry /
tracker database (``CRYPTOML_DB_URL``). Skipped, with the reason, without PostgreSQL binaries."""

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from cryptoml_pipeline.cli import build_parser
from cryptoml_pipeline.cli.run import execute_pipeline, prepare_run
from cryptoml_pipeline.registry.db import open_database
from cryptoml_pipeline.registry.model_registry import ModelRegistry
from cryptoml_pipeline_tests.db_fixtures import fresh_pg_database

pytest_plugins = ["cryptoml_pipeline_tests.db_fixtures"]


def _instance_yaml(url: str) -> dict:
    parsed = sa.engine.make_url(url)
    return {
        "telemetry": {"enabled": False},
        "storage": {
            "postgres": {
                "postgres_db": {
                    "username": parsed.username,
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "hostname": parsed.host,
                    "port": parsed.port,
                    "db_name": parsed.database,
                    "scheme": "postgresql+psycopg2",
                }
            }
        },
    }


@pytest.mark.postgres
def test_full_materialization_on_postgres(tmp_path, shared_data, pg_server, monkeypatch) -> None:
    dagster_db, registry_db = fresh_pg_database(pg_server), fresh_pg_database(pg_server)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(_instance_yaml(dagster_db)))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "unused-trust-auth")
    monkeypatch.setenv("CRYPTOML_DB_URL", registry_db)
    out = tmp_path / "output"
    # the test is about the storage, not about edge: the tiny model deploys only with the cost
    # filter off (so it trades) and the walk-forward evidence thresholds lowered
    config = tmp_path / "storage_test.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "risk": {"edge_cost_multiple": None},
                "gate": {"min_dsr": 0.0, "min_rank_ic_t": -100.0, "min_trades": 0},
            }
        )
    )
    args = build_parser().parse_args(
        [
            *("run", "--profile", "tiny", "--symbols", "BTC/USDT", "--output-dir", str(out)),
            *("--data-dir", str(shared_data), "--end", "2025-06-01", "--config", str(config)),
        ]
    )
    report = execute_pipeline(*prepare_run(args))
    assert report["deployment"]["deployed"] is True, report["deployment"]["reason"]
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        runs = instance.get_runs()
        assert sorted({r.job_name for r in runs}) == [
            "evaluate_job",
            "prepare_job",
            "train_folds_job",
        ]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    engine = sa.create_engine(dagster_db)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from runs")).scalar() == len(runs)
    registry = ModelRegistry(open_database(out))  # CRYPTOML_DB_URL -> PostgreSQL
    assert registry.engine.dialect.name == "postgresql"
    assert registry.deployed().version == report["deployment"]["version"]
    assert not (out / "cryptoml.db").exists()  # nothing went to the SQLite default
