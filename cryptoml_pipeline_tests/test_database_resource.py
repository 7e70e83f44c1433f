"""The registry/tracker database as a Dagster resource: URL from ``dg.EnvVar`` in production, the
SQLite file under the output directory by default; one engine per run; the secret never logged."""

import logging

import dagster as dg
import sqlalchemy as sa

from cryptoml_pipeline.definitions import build_definitions
from cryptoml_pipeline.defs import resources
from cryptoml_pipeline.defs.resources import DatabaseResource, MarketDataResource, PipelineResource
from cryptoml_pipeline.registry.db import DB_FILE, DB_URL_ENV


def test_default_is_the_sqlite_file_under_the_output_dir_created_on_first_use(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    database = DatabaseResource.for_output_dir(tmp_path / "out")
    assert database.url == f"sqlite:///{(tmp_path / 'out' / DB_FILE).resolve()}"
    assert not (tmp_path / "out").exists()  # nothing until a run uses it
    engine = database.engine()
    assert database.engine() is engine  # one engine per run
    assert "model_versions" in sa.inspect(engine).get_table_names()
    assert database.registry().deployed() is None
    database.teardown_after_execution(None)
    assert database._engine is None


def test_production_url_comes_from_the_environment_as_an_env_var(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'prod.db'}"
    monkeypatch.setenv(DB_URL_ENV, url)
    database = DatabaseResource.for_output_dir(tmp_path / "out")
    assert isinstance(database.url, dg.EnvVar) and database.url.env_var_name == DB_URL_ENV
    defs = build_definitions(
        PipelineResource(profile="tiny", output_dir=str(tmp_path / "out")),
        MarketDataResource(kind="synthetic"),
    )
    assert isinstance(defs.resources["database"].url, dg.EnvVar)

    @dg.asset
    def probe(database: DatabaseResource) -> str:
        return str(database.engine().url)

    result = dg.materialize([probe], resources={"database": database})
    assert result.output_for_node("probe") == url
    assert (tmp_path / "prod.db").is_file() and not (tmp_path / "out").exists()


def test_the_password_is_never_logged(monkeypatch, caplog) -> None:
    monkeypatch.setattr(resources, "make_engine", lambda url: sa.create_engine("sqlite://"))
    monkeypatch.setattr(resources, "upgrade", lambda engine: None)
    database = DatabaseResource(url="postgresql://user:s3cret-pw@db.example:5432/cryptoml")
    assert "s3cret-pw" not in database.redacted_url and "db.example" in database.redacted_url
    with caplog.at_level(logging.DEBUG):
        database.engine()
    assert "db.example" in caplog.text and "s3cret-pw" not in caplog.text
