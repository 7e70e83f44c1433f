"""Model registry on SQLite and (marker ``postgres``) PostgreSQL: Alembic schema, lineage,
promotion, rollback, checksum verification."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.registry.db import database_url, make_engine, normalise_url, upgrade
from cryptoml_pipeline.registry.model_registry import (
    ArtifactIntegrityError,
    ModelRegistry,
    feature_hash,
)

pytest_plugins = ["cryptoml_pipeline_tests.db_fixtures"]

T0 = datetime(2025, 6, 1, tzinfo=UTC)
MANIFEST = {
    "timeframe": "1h",
    "symbols": ["BTC/USDT"],
    "feature_cols": ["rsi_14", "atr_pct_14"],
    "data_range": {"first": "2025-01-01T00:00:00+00:00", "last": "2025-05-31T23:00:00+00:00"},
    "model_config": {"d_model": 16},
    "label_config": {"prediction_horizon": 5},
}


def _artifact(tmp_path: Path, name: str, payload: bytes = b"weights") -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "model.pt").write_bytes(payload)
    (d / "manifest.json").write_text('{"a": 1}')
    return d


def test_schema_is_created_by_alembic_and_idempotent(engine) -> None:
    upgrade(engine)  # second upgrade is a no-op
    names = set(sa.inspect(engine).get_table_names())
    assert {"cryptoml_alembic_version", "model_versions", "predictions", "paper_orders"} <= names
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("select version_num from cryptoml_alembic_version")).scalar()
            == "0002"
        )


def test_register_records_lineage_and_checksums(engine, tmp_path) -> None:
    reg = ModelRegistry(engine)
    mv = reg.register(
        version="v1", artifact_dir=_artifact(tmp_path, "v1"), manifest=MANIFEST, now=T0
    )
    assert mv.stage == "candidate" and mv.timeframe == "1h" and mv.symbols == ["BTC/USDT"]
    assert mv.feature_hash == feature_hash(["rsi_14", "atr_pct_14"]) != feature_hash(["rsi_14"])
    assert set(mv.checksums) == {"model.pt", "manifest.json"}
    assert mv.data_start == datetime(2025, 1, 1, tzinfo=UTC)
    assert mv.config["label_config"] == {"prediction_horizon": 5} and mv.code_version
    # idempotent for the same files; refused for other files under the same version
    assert reg.register(version="v1", artifact_dir=tmp_path / "v1", manifest=MANIFEST) == mv
    with pytest.raises(InputError, match="already registered"):
        reg.register(version="v1", artifact_dir=_artifact(tmp_path, "x", b"o"), manifest=MANIFEST)


def test_promote_retires_previous_and_rollback_restores_it(engine, tmp_path) -> None:
    reg = ModelRegistry(engine)
    for i, name in enumerate(("v1", "v2")):
        reg.register(
            version=name,
            artifact_dir=_artifact(tmp_path, name, name.encode()),
            manifest=MANIFEST,
            now=T0 + timedelta(hours=i),
        )
    reg.promote("v1", "first", now=T0)
    reg.promote("v2", "better", now=T0 + timedelta(days=1))
    stages = {m.version: m.stage for m in reg.list_versions()}
    assert stages == {"v1": "retired", "v2": "deployed"}
    assert reg.deployed().version == "v2"
    back = reg.rollback("bad live results")
    assert back.version == "v1" and back.stage == "deployed"
    assert [m.version for m in reg.list_versions("retired")] == ["v2"]
    with pytest.raises(InputError, match="unknown stage"):
        reg.list_versions("live")
    events = [e["event"] for e in reg.events("v1")]
    assert events == ["registered", "promoted", "retired", "promoted"]


def test_corrupted_or_half_written_artifact_is_never_deployed(engine, tmp_path) -> None:
    reg = ModelRegistry(engine)
    d = _artifact(tmp_path, "v1")
    reg.register(version="v1", artifact_dir=d, manifest=MANIFEST)
    (d / "model.pt").write_bytes(b"weightz")  # bit rot / partial overwrite
    with pytest.raises(ArtifactIntegrityError, match="corrupted"):
        reg.promote("v1", "x")
    assert reg.deployed() is None
    (d / "model.pt").unlink()  # half-written: file missing
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        reg.verified_dir("v1")


def test_rollback_skips_corrupted_versions_and_fails_without_any(engine, tmp_path) -> None:
    reg = ModelRegistry(engine)
    with pytest.raises(InputError, match="no earlier deployed model"):
        reg.rollback()
    dirs = {}
    for i, name in enumerate(("v1", "v2", "v3")):
        dirs[name] = _artifact(tmp_path, name, name.encode())
        reg.register(version=name, artifact_dir=dirs[name], manifest=MANIFEST)
        reg.promote(name, "x", now=T0 + timedelta(days=i))
    (dirs["v2"] / "model.pt").write_bytes(b"junk")
    assert reg.rollback().version == "v1"  # v2 (the latest retired) is corrupted


def test_reject_keeps_candidate_with_reason(engine, tmp_path) -> None:
    reg = ModelRegistry(engine)
    reg.register(version="v1", artifact_dir=_artifact(tmp_path, "v1"), manifest=MANIFEST)
    reg.reject("v1", "kept as candidate: accuracy 0.30 < deployed 0.35 + margin 0.01")
    mv = reg.require("v1")
    assert mv.stage == "candidate" and mv.reason.startswith("kept as candidate")


def test_database_url_from_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("CRYPTOML_DB_URL", raising=False)
    assert database_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'cryptoml.db'}"
    monkeypatch.setenv("CRYPTOML_DB_URL", "postgresql://u:secret@h/db")
    assert database_url(tmp_path) == "postgresql://u:secret@h/db"
    assert normalise_url("postgresql://u:secret@h/db").startswith("postgresql+psycopg2://")
    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'x.db'}")  # creates the folder
    upgrade(engine)
    assert (tmp_path / "sub" / "x.db").exists()
