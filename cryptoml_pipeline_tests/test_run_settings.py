"""The run's settings are resolved once per run and flow through the graph as the
``run_settings`` asset (stored as JSON by the project IO manager, never pickled)."""

import ast
import json
from pathlib import Path

import dagster as dg
import pytest

import cryptoml_pipeline
from cryptoml_pipeline.defs.assets.run_settings import run_settings
from cryptoml_pipeline.defs.io_manager import ArtifactIOManager
from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.settings import PipelineSettings, profile_settings

ASSETS_DIR = Path(cryptoml_pipeline.__file__).parent / "defs" / "assets"
# the landing assets (ingest_job) read the resource: they land days on an instance where the main
# chain may never have run (see defs/assets/run_settings.py)
RESOURCE_READERS = {"run_settings.py", "landing.py"}


@dg.asset
def reader_a(run_settings: PipelineSettings) -> dict:
    return {"profile": run_settings.profile, "type": type(run_settings).__name__}


@dg.asset
def reader_b(run_settings: PipelineSettings) -> dict:
    return {"profile": run_settings.profile}


def test_run_settings_are_stored_as_json_and_load_back_equal(tmp_path) -> None:
    pipeline = PipelineResource(
        profile="tiny", start="2025-01-01", end="2025-05-01", output_dir=str(tmp_path)
    )
    resources = {"pipeline": pipeline, "io_manager": ArtifactIOManager(base_dir=str(tmp_path))}
    instance = dg.DagsterInstance.ephemeral()
    first = dg.materialize([run_settings], resources=resources, instance=instance)
    assert first.success
    stored = tmp_path / "assets" / "run_settings.json"
    assert stored.is_file() and not list(tmp_path.rglob("*.pkl"))
    assert json.loads(stored.read_text()) == pipeline.settings().model_dump(mode="json")
    meta = first.asset_materializations_for_node("run_settings")[0].metadata
    assert meta["profile"].value == "tiny"
    # another run loads the stored value: the same settings, as the model class
    later = dg.materialize(
        [run_settings, reader_a],
        selection=[reader_a.key],
        resources=resources | {"pipeline": PipelineResource(profile="demo")},
        instance=instance,
    )
    assert later.success
    # the stored (tiny) settings, not this run's resource (demo)
    assert later.output_for_node("reader_a") == {"profile": "tiny", "type": "PipelineSettings"}
    expected = profile_settings("tiny").data.model_copy(
        update={
            "start": pipeline.settings().data.start,
            "end": pipeline.settings().data.end,
        }
    )
    loaded = PipelineSettings.model_validate(json.loads(stored.read_text()))
    assert loaded == pipeline.settings() and loaded.data == expected


def test_settings_are_resolved_once_per_run(tmp_path, monkeypatch) -> None:
    calls = []
    resolve = PipelineResource._resolve

    def counting(self):
        calls.append(self.profile)
        return resolve(self)

    monkeypatch.setattr(PipelineResource, "_resolve", counting)
    result = dg.materialize(
        [run_settings, reader_a, reader_b],
        resources={
            "pipeline": PipelineResource(profile="tiny"),
            "io_manager": ArtifactIOManager(base_dir=str(tmp_path)),
        },
    )
    assert result.success and calls == ["tiny"]


def test_the_resource_caches_its_settings_per_run() -> None:
    pipeline = PipelineResource(profile="tiny")
    assert pipeline.settings() is pipeline.settings()
    first = pipeline.settings()
    pipeline.setup_for_execution(dg.build_init_resource_context())  # a new run reads again
    assert pipeline.settings() is not first and pipeline.settings() == first


def _settings_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "settings"
    ]


def test_assets_read_the_run_settings_asset_not_the_resource() -> None:
    offenders = {
        p.name: lines
        for p in sorted(ASSETS_DIR.glob("*.py"))
        if p.name not in RESOURCE_READERS and (lines := _settings_calls(p))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    ("job", "materializes"),
    [
        ("prepare_job", True),
        ("retrain_job", True),
        ("nightly_job", True),
        ("train_folds_job", False),  # fold runs load what the chain's first run stored
        ("evaluate_job", False),
        ("experiment_job", False),
        ("experiment_leaderboard_job", False),
        ("ingest_job", False),  # landing reads the resource
    ],
)
def test_jobs_that_start_a_chain_resolve_the_settings(job, materializes) -> None:
    from cryptoml_pipeline.definitions import defs

    keys = defs.resolve_job_def(job).asset_layer.executable_asset_keys
    assert (dg.AssetKey("run_settings") in keys) is materializes
