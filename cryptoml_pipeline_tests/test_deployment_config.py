"""The production deployment files: structure and secrets hygiene (no Docker engine here)."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_compose_has_the_five_services_and_a_postgres_healthcheck() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "user_code", "webserver", "daemon", "live"}
    live = services["live"]  # paper fills (no --execute), host loopback only, token required
    assert "--execute" not in live["command"] and live["ports"] == ["127.0.0.1:8765:8765"]
    assert "CRYPTOML_LIVE_TOKEN" in live["environment"] and "/health" in str(live["healthcheck"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    for name in ("user_code", "webserver", "daemon"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "4000" in services["user_code"]["command"]
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]


def test_no_literal_secrets_in_deployment_files() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    assert "${DAGSTER_PG_PASSWORD:?" in compose  # must come from the environment
    instance = yaml.safe_load((REPO / "deploy" / "dagster.postgres.yaml").read_text())
    db = instance["storage"]["postgres"]["postgres_db"]
    assert db["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert db["scheme"] == "postgresql+psycopg2"


def test_default_instance_is_sqlite() -> None:
    instance = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert "storage" not in instance  # Dagster's default: SQLite under $DAGSTER_HOME
    assert instance["telemetry"]["enabled"] is False


def test_production_instance_queues_limits_and_retries_runs() -> None:
    instance = yaml.safe_load((REPO / "deploy" / "dagster.postgres.yaml").read_text())
    coordinator = instance["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    limits = {x["key"]: x["limit"] for x in coordinator["config"]["tag_concurrency_limits"]}
    assert limits["cryptoml/fold_training"] <= coordinator["config"]["max_concurrent_runs"]
    assert instance["run_retries"]["enabled"] is True and instance["run_retries"]["max_retries"] > 0
    assert instance["run_monitoring"]["enabled"] is True


def test_fold_runs_carry_the_concurrency_tag() -> None:
    from cryptoml_pipeline.defs.jobs import train_folds_job

    assert train_folds_job.tags["cryptoml/fold_training"] == "true"


def test_compose_points_the_registry_at_postgres_without_literal_secrets() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    url = compose["x-dagster-env"]["CRYPTOML_DB_URL"]
    assert url.startswith("postgresql+psycopg2://") and "${DAGSTER_PG_PASSWORD:?" in url


def test_production_instance_loads_in_dagster(tmp_path, monkeypatch) -> None:
    """The production dagster.yaml validates against Dagster's instance schema."""
    from dagster._core.instance.config import dagster_instance_config

    (tmp_path / "dagster.yaml").write_text((REPO / "deploy" / "dagster.postgres.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_retries"]["max_retries"] == 2
