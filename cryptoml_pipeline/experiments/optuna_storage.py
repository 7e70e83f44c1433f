"""Where a sweep's Optuna studies live, so that parallel workers share one study.

On a deployment the instance's PostgreSQL (``$CRYPTOML_DB_URL``, the URL the model registry
uses — :mod:`cryptoml_pipeline.registry.db`) holds every study: each run of a configuration's
partition, on whichever pod, opens the same study by name with
``optuna.create_study(study_name=..., storage=..., load_if_exists=True)`` and adds its trials.
Anywhere else (no URL, or a SQLite registry) the studies go to one SQLite file under
``fallback_dir``, shared by the processes of one machine.

The URL's password is never logged (:func:`~cryptoml_pipeline.registry.db.redacted`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.registry.db import DB_URL_ENV, normalise_url, redacted

logger = logging.getLogger(__name__)

STUDY_FILE = "optuna.db"
SQLITE_TIMEOUT_S = 60  # a writer waits this long for another process's lock
_CREATE_ATTEMPTS = 3


def is_postgresql(db_url: str | None) -> bool:
    """Whether ``db_url`` is a PostgreSQL URL (any driver, e.g. ``postgresql+psycopg2``)."""
    if not db_url:
        return False
    try:
        return make_url(db_url).get_backend_name() == "postgresql"
    except ArgumentError:
        raise InputError(f"${DB_URL_ENV} is not a database URL") from None


def sqlite_study_url(fallback_dir: Path) -> str:
    return f"sqlite:///{Path(fallback_dir).resolve() / STUDY_FILE}"


def study_storage(db_url: str | None, fallback_dir: Path) -> optuna.storages.BaseStorage | str:
    """An Optuna storage that several processes share: an RDB storage on the instance's
    PostgreSQL when ``db_url`` is a postgresql URL, else the SQLite file
    ``fallback_dir/optuna.db``. Pass it to ``optuna.create_study(..., load_if_exists=True)``
    (or :func:`open_study`)."""
    if is_postgresql(db_url):
        assert db_url is not None
        url = normalise_url(db_url)  # postgresql:// -> postgresql+psycopg2://
        logger.info("Optuna studies on PostgreSQL %s", redacted(url))
        return _rdb(url, {"pool_pre_ping": True})
    fallback_dir = Path(fallback_dir)
    fallback_dir.mkdir(parents=True, exist_ok=True)
    url = sqlite_study_url(fallback_dir)
    logger.info("Optuna studies in %s", url)
    return _rdb(url, {"connect_args": {"timeout": SQLITE_TIMEOUT_S}})


def _rdb(url: str, engine_kwargs: dict) -> optuna.storages.RDBStorage:
    # two workers starting at once may race on creating Optuna's tables: retry briefly
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except Exception as exc:  # sqlalchemy OperationalError/IntegrityError on the race
            if attempt == _CREATE_ATTEMPTS:
                raise InputError(
                    f"Optuna storage {redacted(url)} cannot be opened: {type(exc).__name__}"
                ) from None
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def open_study(
    storage: optuna.storages.BaseStorage | str,
    study_name: str,
    *,
    direction: str = "maximize",
    seed: int | None = None,
) -> optuna.Study:
    """Create ``study_name`` in ``storage``, or load it when another worker already did."""
    sampler = optuna.samplers.TPESampler(seed=seed) if seed is not None else None
    return optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction=direction,
        sampler=sampler,
        load_if_exists=True,
    )
