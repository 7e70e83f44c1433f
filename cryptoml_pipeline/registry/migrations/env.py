"""Alembic environment: the engine comes from ``config.attributes['engine']`` (see db.py), or
from ``$CRYPTOML_DB_URL`` when the ``alembic`` command line is used."""

from alembic import context

from cryptoml_pipeline.registry.db import DB_URL_ENV, VERSION_TABLE, make_engine
from cryptoml_pipeline.registry.schema import metadata

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    import os

    engine = make_engine(os.environ[DB_URL_ENV])

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        version_table=VERSION_TABLE,  # Dagster's own storage uses "alembic_version"
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
