"""deploy/k8s/values.yaml against the Dagster Helm chart's vendored values schema (the offline
equivalent of ``helm template``; no cluster, no network), plus the run-queue sizing rule."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from cryptoml_pipeline.settings import GbmConfig

REPO = Path(__file__).resolve().parents[1]
VALUES = REPO / "deploy" / "k8s" / "values.yaml"
SCHEMA = REPO / "deploy" / "k8s" / "schema" / "values.schema.json"


def _without_required(node: Any, in_then: bool = False) -> Any:
    """Helm validates chart defaults + user values; the defaults supply the ``required`` keys,
    so a user values file is checked without them (conditional ``then`` requirements kept)."""
    if isinstance(node, dict):
        return {
            key: _without_required(value, in_then or key == "then")
            for key, value in node.items()
            if not (key == "required" and isinstance(value, list) and not in_then)
        }
    if isinstance(node, list):
        return [_without_required(item, in_then) for item in node]
    return node


def _remote_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if str(node.get("$ref", "")).startswith("https://") else []
        return found + [ref for value in node.values() for ref in _remote_refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _remote_refs(item)]
    return []


def _offline_registry(schema: dict) -> Registry:
    """The Kubernetes object schemas the chart references on kubernetesjsonschema.dev, as
    accept-all schemas at every pointer used (no network)."""
    documents: dict[str, dict] = {}
    for ref in _remote_refs(schema):
        uri, _, pointer = ref.partition("#")
        node = documents.setdefault(uri, {})
        for part in pointer.strip("/").split("/"):
            node = node.setdefault(part, {})
    return Registry().with_resources(
        (uri, Resource.from_contents(doc, default_specification=DRAFT7))
        for uri, doc in documents.items()
    )


def _validator() -> jsonschema.Draft7Validator:
    schema = _without_required(json.loads(SCHEMA.read_text(encoding="utf-8")))
    return jsonschema.Draft7Validator(schema, registry=_offline_registry(schema))


def _errors(values: dict) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator().iter_errors(values)
    ]


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text(encoding="utf-8"))


def test_values_validate_against_the_chart_schema(values) -> None:
    assert _errors(values) == []


def test_schema_is_the_vendored_chart_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["title"] == "DagsterHelmValues"
    assert "K8sRunLauncher" in schema["definitions"]["RunLauncherType"]["enum"]
    assert "bdb8547fab497826eeec292bc160b549a0a329ef" in (SCHEMA.parent / "README.md").read_text()


def _bad(values: dict, edit) -> dict:
    bad = copy.deepcopy(values)
    edit(bad)
    return bad


BAD_EDITS = {
    "unknown run launcher type": lambda v: v["runLauncher"].update(type="SshRunLauncher"),
    "k8s launcher without its config": lambda v: v["runLauncher"].update(config={}),
    "misspelt daemon key": lambda v: v["dagsterDaemon"].update(
        runCoordinater=v["dagsterDaemon"].pop("runCoordinator")
    ),
    "non-integer tag limit": lambda v: v["dagsterDaemon"]["runCoordinator"]["config"][
        "queuedRunCoordinator"
    ]["tagConcurrencyLimits"][0].update(limit="four"),
    "unknown run coordinator": lambda v: v["dagsterDaemon"]["runCoordinator"].update(
        type="FifoRunCoordinator"
    ),
    "grpc args not a list": lambda v: v["dagster-user-deployments"]["deployments"][0].update(
        dagsterApiGrpcArgs="-m cryptoml_pipeline.definitions"
    ),
}


@pytest.mark.parametrize("case", list(BAD_EDITS))
def test_a_bad_copy_fails(values, case) -> None:
    assert _errors(_bad(values, BAD_EDITS[case])), case


def test_the_code_location_and_launcher(values) -> None:
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "cryptoml_pipeline.definitions"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    # DAGSTER_HOME of the image the user deployment runs
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert f"DAGSTER_HOME={values['global']['dagsterHome']}" in dockerfile
    for env_secrets in (
        deployment["envSecrets"],
        values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"],
        values["dagsterDaemon"]["envSecrets"],
        values["dagsterWebserver"]["envSecrets"],
    ):
        assert {"name": "cryptoml-env"} in env_secrets


def _walk(node: Any, path: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")
    else:
        yield path, node


def test_no_passwords_in_the_values_file(values) -> None:
    for path, value in _walk(values):
        leaf = path.rsplit(".", 1)[-1].lower()
        assert "password" not in leaf or leaf.endswith("secret"), path
        assert not (isinstance(value, str) and re.search(r"://[^/@\s]+:[^/@\s]+@", value)), path


def test_run_queue_fits_the_cores(values) -> None:
    """runs x LightGBM threads <= cores per node (the sizing comment in values.yaml)."""
    text = VALUES.read_text(encoding="utf-8")
    cores = int(re.search(r"cores per node: (\d+)", text).group(1))
    nodes = int(re.search(r"nodes in the run pool: (\d+)", text).group(1))
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    limits = {x["key"]: x["limit"] for x in queue["tagConcurrencyLimits"]}
    threads = GbmConfig().num_threads
    resources = values["runLauncher"]["config"]["k8sRunLauncher"]["resources"]
    assert int(resources["requests"]["cpu"]) == threads == int(resources["limits"]["cpu"])
    assert limits["cryptoml/experiment"] * threads <= cores * nodes
    assert limits["cryptoml/fold_training"] * threads <= cores * nodes
    assert max(limits.values()) <= queue["maxConcurrentRuns"]


def test_local_instance_limits_experiment_runs_too() -> None:
    instance = yaml.safe_load((REPO / "deploy" / "dagster.postgres.yaml").read_text())
    config = instance["run_coordinator"]["config"]
    limits = {x["key"]: x["limit"] for x in config["tag_concurrency_limits"]}
    assert 1 <= limits["cryptoml/experiment"] <= config["max_concurrent_runs"]
