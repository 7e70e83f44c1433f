"""Database engine for the registry, tracker and paper trader.

URL: ``$CRYPTOML_DB_URL`` (e.g. ``postgresql://user@127.0.0.1:5432/cryptoml``; the password, if
any, belongs in that variable or in ``~/.pgpass``, never in code), else a SQLite file
``OUTPUT/cryptoml.db``. The schema is created and upgraded by Alembic (``migrations/``).
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

DB_URL_ENV = "CRYPTOML_DB_URL"
DB_FILE = "cryptoml.db"
MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "cryptoml_alembic_version"  # never collides with Dagster's alembic_version


def database_url(output_dir: Path | str) -> str:
    """``$CRYPTOML_DB_URL`` or the default SQLite file under ``output_dir``."""
    url = os.environ.get(DB_URL_ENV)
    if url:
        return url
    return sqlite_url(output_dir)


def sqlite_url(output_dir: Path | str) -> str:
    """The default database: the SQLite file ``OUTPUT/cryptoml.db``."""
    return f"sqlite:///{Path(output_dir).resolve() / DB_FILE}"


def normalise_url(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg2://`` (SQLAlchemy 2.1 defaults to psycopg 3,
    which is not installed; dagster-postgres ships psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def redacted(url: str) -> str:
    """The URL with its password hidden, for logs."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (dashboard) never block the writer
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


def open_database(output_dir: Path | str) -> Engine:
    """Engine for the configured database, schema migrated to head."""
    engine = make_engine(database_url(output_dir))
    upgrade(engine)
    return engine
