"""The production deployment files: structure and secrets hygiene (no Docker engine here)."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_compose_has_the_four_services_and_a_postgres_healthcheck() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "user_code", "webserver", "daemon"}
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
