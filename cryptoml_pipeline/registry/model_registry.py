"""Model registry: versions with lineage, metrics, stage and artifact checksums.

Stages: ``candidate`` -> ``deployed`` -> ``retired``. Exactly one version is deployed at a time
(promotion retires the previous one in the same transaction). Artifacts are directories written
atomically (``modeling.persistence.save_model``); their SHA-256s are recorded at registration and
verified on every load, so a corrupted or half-written artifact can never be deployed or served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.modeling.persistence import file_sha256
from cryptoml_pipeline.registry.schema import STAGES, model_events, model_versions, utc

logger = logging.getLogger(__name__)


class ArtifactIntegrityError(DataValidationError):
    """A registered artifact is missing or does not match its recorded checksums."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    stage: str
    created_at: datetime
    deployed_at: datetime | None
    artifact_dir: Path
    checksums: dict[str, str]
    data_start: datetime | None
    data_end: datetime | None
    timeframe: str | None
    symbols: list[str]
    feature_hash: str
    feature_cols: list[str]
    config: dict[str, Any]
    code_version: str
    metrics: dict[str, Any]
    reason: str | None


def feature_hash(feature_cols: list[str]) -> str:
    """SHA-256 of the ordered feature list (a model only serves tables with the same list)."""
    return hashlib.sha256(json.dumps(list(feature_cols)).encode()).hexdigest()


def code_version() -> str:
    """The git commit of the code (``-dirty`` when modified), or the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"pkg-{version('cryptoml_pipeline')}"


def artifact_checksums(artifact_dir: Path) -> dict[str, str]:
    files = sorted(p for p in Path(artifact_dir).iterdir() if p.is_file())
    if not files:
        raise ArtifactIntegrityError(f"artifact directory {artifact_dir} is empty")
    return {p.name: file_sha256(p) for p in files}


def verify_artifact(artifact_dir: Path, checksums: dict[str, str]) -> None:
    """Raise :class:`ArtifactIntegrityError` unless every recorded file matches its SHA-256."""
    for name, expected in checksums.items():
        path = Path(artifact_dir) / name
        if not path.is_file():
            raise ArtifactIntegrityError(f"artifact file {path} is missing")
        actual = file_sha256(path)
        if actual != expected:
            raise ArtifactIntegrityError(
                f"artifact file {path} is corrupted: sha256 {actual[:12]} != recorded "
                f"{expected[:12]}"
            )


def _row_to_version(row: sa.Row) -> ModelVersion:
    m = row._mapping
    return ModelVersion(
        version=m["version"],
        stage=m["stage"],
        created_at=utc(m["created_at"]),  # type: ignore[arg-type]
        deployed_at=utc(m["deployed_at"]),
        artifact_dir=Path(m["artifact_dir"]),
        checksums=dict(m["checksums"]),
        data_start=utc(m["data_start"]),
        data_end=utc(m["data_end"]),
        timeframe=m["timeframe"],
        symbols=list(m["symbols"] or []),
        feature_hash=m["feature_hash"],
        feature_cols=list(m["feature_cols"]),
        config=dict(m["config"]),
        code_version=m["code_version"],
        metrics=dict(m["metrics"]),
        reason=m["reason"],
    )


def _parse_time(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).astimezone(UTC)


class ModelRegistry:
    """Registry operations on one database engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- writes --------------------------------------------------------------------------
    def register(
        self,
        *,
        version: str,
        artifact_dir: Path,
        manifest: dict[str, Any],
        metrics: dict[str, Any] | None = None,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> ModelVersion:
        """Register a saved artifact as a ``candidate`` (idempotent for the same version and
        checksums; a version re-registered with other files is refused)."""
        checksums = artifact_checksums(artifact_dir)
        existing = self.get(version)
        if existing is not None:
            if existing.checksums != checksums:
                raise InputError(f"model version {version} is already registered with other files")
            return existing
        data = manifest.get("data_range") or {}
        feature_cols = list(manifest.get("feature_cols") or [])
        at = now or datetime.now(UTC)
        config = {
            k: manifest.get(k)
            for k in ("model_config", "training_config", "label_config", "fold", "embargo_bars")
        }
        with self.engine.begin() as conn:
            conn.execute(
                model_versions.insert().values(
                    version=version,
                    stage="candidate",
                    created_at=at,
                    artifact_dir=str(Path(artifact_dir).resolve()),
                    checksums=checksums,
                    data_start=_parse_time(data.get("first")),
                    data_end=_parse_time(data.get("last")),
                    timeframe=manifest.get("timeframe"),
                    symbols=list(manifest.get("symbols") or []),
                    feature_hash=feature_hash(feature_cols),
                    feature_cols=feature_cols,
                    config=config,
                    code_version=code_version(),
                    metrics=metrics or {},
                    reason=reason,
                )
            )
            self._event(conn, version, "registered", reason, at)
        logger.info("registered model %s as candidate", version)
        return self.require(version)

    def update_metrics(self, version: str, metrics: dict[str, Any]) -> None:
        current = self.require(version)
        with self.engine.begin() as conn:
            conn.execute(
                model_versions.update()
                .where(model_versions.c.version == version)
                .values(metrics=current.metrics | metrics)
            )

    def reject(self, version: str, reason: str) -> None:
        """Keep ``version`` a candidate and record why it was not deployed."""
        self.require(version)
        with self.engine.begin() as conn:
            conn.execute(
                model_versions.update()
                .where(model_versions.c.version == version)
                .values(reason=reason)
            )
            self._event(conn, version, "rejected", reason)

    def promote(self, version: str, reason: str, now: datetime | None = None) -> ModelVersion:
        """Deploy ``version`` (checksums verified first); the previously deployed one retires."""
        target = self.require(version)
        verify_artifact(target.artifact_dir, target.checksums)
        at = now or datetime.now(UTC)
        with self.engine.begin() as conn:
            previous = conn.execute(
                sa.select(model_versions.c.version).where(model_versions.c.stage == "deployed")
            ).scalars()
            for old in previous:
                if old != version:
                    conn.execute(
                        model_versions.update()
                        .where(model_versions.c.version == old)
                        .values(stage="retired")
                    )
                    self._event(conn, old, "retired", f"replaced by {version}", at)
            conn.execute(
                model_versions.update()
                .where(model_versions.c.version == version)
                .values(stage="deployed", deployed_at=at, reason=reason)
            )
            self._event(conn, version, "promoted", reason, at)
        logger.info("promoted model %s: %s", version, reason)
        return self.require(version)

    def rollback(self, reason: str = "rollback") -> ModelVersion:
        """Re-deploy the most recently deployed retired version whose artifact verifies."""
        current = self.deployed()
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(model_versions)
                .where(model_versions.c.stage == "retired")
                .where(model_versions.c.deployed_at.is_not(None))
                .order_by(model_versions.c.deployed_at.desc())
            ).all()
        for row in rows:
            candidate = _row_to_version(row)
            try:
                verify_artifact(candidate.artifact_dir, candidate.checksums)
            except ArtifactIntegrityError as exc:
                logger.warning("cannot roll back to %s: %s", candidate.version, exc)
                continue
            where = f" from {current.version}" if current else ""
            return self.promote(candidate.version, f"{reason}{where}")
        raise InputError("no earlier deployed model with an intact artifact to roll back to")

    # --- reads ---------------------------------------------------------------------------
    def get(self, version: str) -> ModelVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(model_versions).where(model_versions.c.version == version)
            ).first()
        return _row_to_version(row) if row is not None else None

    def require(self, version: str) -> ModelVersion:
        found = self.get(version)
        if found is None:
            raise InputError(f"model version {version!r} is not in the registry")
        return found

    def deployed(self) -> ModelVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(model_versions).where(model_versions.c.stage == "deployed")
            ).first()
        return _row_to_version(row) if row is not None else None

    def list_versions(self, stage: str | None = None) -> list[ModelVersion]:
        query = sa.select(model_versions).order_by(model_versions.c.created_at, model_versions.c.id)
        if stage is not None:
            if stage not in STAGES:
                raise InputError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
            query = query.where(model_versions.c.stage == stage)
        with self.engine.connect() as conn:
            return [_row_to_version(r) for r in conn.execute(query).all()]

    def events(self, version: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(model_events).order_by(model_events.c.id)
        if version is not None:
            query = query.where(model_events.c.version == version)
        with self.engine.connect() as conn:
            return [
                dict(r._mapping) | {"at": utc(r._mapping["at"])} for r in conn.execute(query).all()
            ]

    def verified_dir(self, version: str) -> Path:
        """The artifact directory of ``version`` after its checksums verified."""
        mv = self.require(version)
        verify_artifact(mv.artifact_dir, mv.checksums)
        return mv.artifact_dir

    @staticmethod
    def _event(
        conn: sa.Connection,
        version: str,
        event: str,
        reason: str | None,
        at: datetime | None = None,
    ) -> None:
        conn.execute(
            model_events.insert().values(
                version=version, at=at or datetime.now(UTC), event=event, reason=reason
            )
        )
