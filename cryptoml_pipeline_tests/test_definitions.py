import ast
from pathlib import Path

import dagster as dg

import cryptoml_pipeline

PKG = Path(cryptoml_pipeline.__file__).parent
# Dagster wiring: defs/, definitions.py and the command lines (which launch jobs and build
# resources). Everything else is domain.
WIRING = {"defs", "definitions.py", "cli"}
DOMAIN = sorted(
    p.name
    for p in PKG.iterdir()
    if p.name not in WIRING
    and ((p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py"))
)


def _imports(path: Path) -> set[str]:
    """Every module a file imports (top-level and lazy, inside functions), dotted names whole."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _domain_files() -> list[Path]:
    return [
        p
        for name in DOMAIN
        for p in ((PKG / name).rglob("*.py") if (PKG / name).is_dir() else [PKG / name])
    ]


def test_layering_covers_every_domain_package() -> None:
    assert {"market", "features", "modeling", "execution", "registry", "strategy"} <= set(DOMAIN)
    assert {"evaluation", "monitoring", "live", "reporting"} <= set(DOMAIN)
    assert {"dashboard", "experiments"} <= set(DOMAIN)
    assert "defs" not in DOMAIN and "definitions.py" not in DOMAIN


def test_domain_packages_never_import_dagster() -> None:
    """Dependencies point one way: defs/ -> domain -> nothing of Dagster (nor of defs/)."""
    offenders = {
        str(p.relative_to(PKG)): sorted(bad)
        for p in _domain_files()
        if (
            bad := {
                m
                for m in _imports(p)
                if m.split(".")[0] in {"dagster", "dagster_postgres", "dagster_webserver"}
                or m.startswith(("cryptoml_pipeline.defs", "cryptoml_pipeline.definitions"))
            }
        )
    }
    assert offenders == {}


def test_dg_config_only_in_defs() -> None:
    offenders = [
        str(p.relative_to(PKG))
        for p in PKG.rglob("*.py")
        if any(base in p.read_text() for base in ("(dg.Config)", "(dg.ConfigurableResource)"))
        and "defs" not in p.relative_to(PKG).parts
    ]
    assert offenders == []


def test_definitions_load_with_expected_graph() -> None:
    from cryptoml_pipeline.definitions import defs

    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    expected = {
        "ohlcv_raw",
        "funding_raw",
        "dataset_info",
        "ohlcv",
        "funding",
        "feature_table",
        "label_table",
        "fold_plan",
        "fold_model",
        "fold_predictions",
        "oos_predictions",
        "backtest",
        "backtest_report",
        "candidate_model",
        "deployed_model",
        "latest_signals",
    }
    assert expected <= keys
    jobs = {j.name for j in repo.get_all_jobs()}
    assert {"prepare_job", "train_folds_job", "evaluate_job", "retrain_job", "nightly_job"} <= jobs
    assert isinstance(
        repo.asset_graph.get(dg.AssetKey("fold_model")).partitions_def,
        dg.DynamicPartitionsDefinition,
    )


def test_workspace_code_location_validates(tmp_path) -> None:
    """What `dagster dev` / `make ui` loads: workspace.yaml -> cryptoml_pipeline.definitions."""
    import os
    import subprocess
    import sys

    repo = PKG.parent
    dagster_cli = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster_cli), "definitions", "validate", "-w", str(repo / "workspace.yaml")],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=180,
        env=dict(os.environ, DAGSTER_HOME=str(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "All code locations passed validation" in proc.stdout + proc.stderr


_IMPORT_PROBE = """
import os, socket, sqlalchemy
before = dict(os.environ)
calls = []
def _connect(self, *args):
    calls.append(("connect", repr(args)))
    raise OSError("network at import")
socket.socket.connect = _connect
_engine = sqlalchemy.create_engine
def _create_engine(*args, **kwargs):
    calls.append(("create_engine", repr(args)))
    return _engine(*args, **kwargs)
sqlalchemy.create_engine = _create_engine
import cryptoml_pipeline.definitions as d
assert d.defs is not None
ours = [k for k in set(os.environ) | set(before) if k.startswith(("CRYPTOML", "DAGSTER"))]
changed = [k for k in ours if os.environ.get(k) != before.get(k)]
print("CHANGED", changed)
print("CALLS", calls)
"""


def test_importing_definitions_has_no_side_effects(tmp_path) -> None:
    """What the webserver/daemon do at start-up: import the module. No directory or file is
    created (cwd, DAGSTER_HOME, output dir), no environment variable of ours is written, no
    database engine is built and nothing is connected to."""
    import os
    import subprocess
    import sys

    cwd, home, dagster_home = tmp_path / "cwd", tmp_path / "home", tmp_path / "dagster_home"
    for d in (cwd, home, dagster_home):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRYPTOML_", "DAGSTER_"))} | {
        "HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),  # matplotlib's own font cache, not ours
        "PYTHONPATH": str(PKG.parent),
        "CRYPTOML_OUTPUT_DIR": str(tmp_path / "out"),
        "CRYPTOML_DB_URL": f"sqlite:///{tmp_path / 'db' / 'registry.sqlite'}",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CHANGED []" in proc.stdout and "CALLS []" in proc.stdout, proc.stdout
    created = sorted(
        str(p.relative_to(tmp_path))
        for p in tmp_path.rglob("*")
        if not p.is_relative_to(tmp_path / "mpl")
    )
    assert created == ["cwd", "dagster_home", "home"]
