"""The ONLY place that builds ``dg.Definitions`` and picks resources per environment.

``dagster dev`` / the webserver load ``defs`` (resources from environment variables);
``cryptoml run`` calls :func:`build_definitions` with its command-line arguments.
Importing this module has no side effects: environment variables are read, never written; no
directory is created and no database or network connection is opened (resources are clients
built when a run starts).
"""

from __future__ import annotations

import os

import dagster as dg

from cryptoml_pipeline.defs.assets import (
    controls,
    deployment,
    evaluation,
    experiments,
    features,
    importance,
    ingestion,
    landing,
    modeling,
    run_settings,
    tracking,
    zoo,
)
from cryptoml_pipeline.defs.checks import ALL_CHECKS
from cryptoml_pipeline.defs.io_manager import ArtifactIOManager
from cryptoml_pipeline.defs.jobs import (
    evaluate_job,
    experiment_job,
    experiment_leaderboard_job,
    ingest_job,
    nightly_job,
    prepare_job,
    retrain_job,
    train_folds_job,
)
from cryptoml_pipeline.defs.resources import (
    DatabaseResource,
    ExperimentResource,
    MarketDataResource,
    PipelineResource,
)
from cryptoml_pipeline.defs.schedules import ingest_job_schedule, nightly_job_schedule
from cryptoml_pipeline.defs.sensors import (
    degradation_sensor,
    model_health_sensor,
    retrain_evaluate_sensor,
    retrain_folds_sensor,
)
from cryptoml_pipeline.locations import resolve_data_location
from cryptoml_pipeline.settings import DEFAULT_SYMBOLS

ASSET_MODULES = [
    run_settings,
    ingestion,
    features,
    modeling,
    importance,
    controls,
    evaluation,
    deployment,
    landing,
    tracking,
    zoo,
    experiments,
]


def build_definitions(
    pipeline: PipelineResource,
    market: MarketDataResource,
    database: DatabaseResource | None = None,
    experiment: ExperimentResource | None = None,
) -> dg.Definitions:
    """``database``: default ``$CRYPTOML_DB_URL`` (as a ``dg.EnvVar``) when set, else the SQLite
    file under ``pipeline.output_dir``. Nothing is created or connected until a run uses it."""
    if database is None:
        database = DatabaseResource.for_output_dir(pipeline.output_dir)
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=ALL_CHECKS,
        jobs=[
            prepare_job,
            train_folds_job,
            evaluate_job,
            retrain_job,
            nightly_job,
            ingest_job,
            experiment_job,
            experiment_leaderboard_job,
        ],
        schedules=[nightly_job_schedule, ingest_job_schedule],
        sensors=[
            degradation_sensor,
            model_health_sensor,
            retrain_folds_sensor,
            retrain_evaluate_sensor,
        ],
        resources={
            "pipeline": pipeline,
            "market": market,
            "database": database,
            "experiment": experiment or ExperimentResource.from_env(),
            "landing": landing.landing_resource_from_env(),
            "io_manager": ArtifactIOManager(base_dir=pipeline.output_dir),
        },
    )


def resources_from_env() -> tuple[PipelineResource, MarketDataResource]:
    """Environment switch for the UI / daemon / docker-compose deployment."""
    symbols = os.environ.get("CRYPTOML_SYMBOLS", ",".join(DEFAULT_SYMBOLS))
    pipeline = PipelineResource(
        profile=os.environ.get("CRYPTOML_PROFILE", "demo"),
        symbols=[s.strip() for s in symbols.split(",") if s.strip()],
        timeframe=os.environ.get("CRYPTOML_TIMEFRAME", "1h"),
        start=os.environ.get("CRYPTOML_START") or None,
        end=os.environ.get("CRYPTOML_END") or None,
        output_dir=os.path.abspath(os.environ.get("CRYPTOML_OUTPUT_DIR", "output")),
    )
    kind = os.environ.get("CRYPTOML_MARKET_SOURCE")
    location = resolve_data_location()
    if kind == "ccxt":
        market = MarketDataResource(kind="ccxt", data_dir=str(location.path or "data"))
    elif location.kind == "synthetic" or kind == "synthetic":
        market = MarketDataResource(kind="synthetic")
    else:
        market = MarketDataResource(kind="parquet", data_dir=str(location.path))
    return pipeline, market


defs = build_definitions(*resources_from_env())
