"""The package's floor plan, enforced: every import of ``cryptoml_pipeline`` points down.

:data:`LAYERS` orders the top-level packages and modules, lowest first. A module may import its
own top-level package or anything on a LOWER layer; packages on one layer never import each other.
Every import counts: module level, inside functions, under ``TYPE_CHECKING`` and
``importlib.import_module("cryptoml_pipeline...")`` with a literal name. Modules other than
``__init__.py`` may not be re-export shims (a body of nothing but imports). There are no import
cycles between modules either (an ``__init__`` importing its own submodules aside).

Reading the list tells which packages a component may use: the live service (``live``) stands on
``monitoring``, ``evaluation``, ``strategy``, ``execution``, ``registry``, ``modeling``,
``features``, ``market`` and the ground floor -- never on ``reporting``, ``experiments``,
``dashboard``, ``defs`` or ``cli``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = "cryptoml_pipeline"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / ROOT

# lowest first; one line per layer, with what it is
LAYERS: list[tuple[str, ...]] = [
    ("errors",),  # the project's exception types
    ("timing", "locations"),  # UTC/timeframe helpers; where data, output and Dagster home live
    ("settings",),  # every typed configuration with the spec's defaults, profiles
    ("market",),  # exchange access (ccxt), parquet store, schemas, repair, synthetic market
    ("features",),  # causal feature families, feature table, causality check
    ("modeling",),  # labels, folds, the prediction schema, the model zoo (ZooModel), nets, training
    ("execution", "registry"),  # decisions + kernel + backtest | database, registry, artifacts
    ("strategy",),  # from predictions to decisions: rules, integrator, combining members
    ("evaluation",),  # walk-forward evaluation, model comparison, metrics, statistics, controls
    ("monitoring",),  # deploy gate, performance tracker, drift, health, retrain policy
    ("live",),  # the served model's loader, market tail, fast features, signal, paper trading
    ("reporting", "experiments"),  # report.json/html | configuration sweeps, CPCV, PBO
    ("dashboard",),  # the monitoring web page
    ("defs",),  # Dagster wiring only: assets, checks, resources, jobs, schedules, sensors
    ("definitions",),  # the one dg.Definitions
    ("cli",),  # the `cryptoml` command
]


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (resolved to a module of the tree when possible)
    line: int


def module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def collect_sources(package_dir: Path) -> dict[str, tuple[Path, str]]:
    """Dotted module name -> (path, source) for every ``.py`` file of the package."""
    base = package_dir.parent
    return {
        module_name(p, base): (p, p.read_text(encoding="utf-8"))
        for p in sorted(package_dir.rglob("*.py"))
    }


def _resolve(target: str, modules: Iterable[str]) -> str:
    """The longest prefix of ``target`` that is a module of the tree (``pkg.name`` -> ``pkg``
    when ``name`` is an attribute, ``pkg.sub`` when it is a submodule)."""
    known = set(modules)
    while target not in known and "." in target:
        target = target.rsplit(".", 1)[0]
    return target


def imports_of(
    name: str, path: Path, source: str, modules: Iterable[str], root: str = ROOT
) -> list[Import]:
    """Every import of a ``root`` module anywhere in ``source`` (lazy ones included)."""
    modules = list(modules)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            # `from pkg import sub` imports the submodule `pkg.sub`; else it is `pkg`
            targets = [_resolve(f"{base}.{a.name}", modules) for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            targets = [node.args[0].value]
        found.extend(
            Import(name, _resolve(target, modules), node.lineno)
            for target in targets
            if target == root or target.startswith(root + ".")
        )
    return found


def top_level(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(imports: Iterable[Import], layers: list[tuple[str, ...]]) -> list[str]:
    """Upward imports and imports between packages of one layer, one line each."""
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    out = []
    for imp in imports:
        src, dst = top_level(imp.source), top_level(imp.target)
        if src == dst or ROOT in (src, dst):
            continue
        if src not in rank or dst not in rank:
            out.append(f"{imp.source}:{imp.line} -> {imp.target}: {src!r} or {dst!r} unlisted")
        elif rank[dst] > rank[src]:
            out.append(f"{imp.source}:{imp.line} -> {imp.target}: upward ({src} < {dst})")
        elif rank[dst] == rank[src]:
            out.append(f"{imp.source}:{imp.line} -> {imp.target}: same layer ({src}, {dst})")
    return out


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    nodes = set(edges) | {t for ts in edges.values() for t in ts}
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def module_edges(imports: Iterable[Import]) -> dict[str, set[str]]:
    """Module -> modules it imports, without a package ``__init__`` importing its own children
    (re-exports in ``__init__`` are allowed; the child importing its parent package is what
    would close a real cycle and stays counted)."""
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target == imp.source or imp.target.startswith(imp.source + "."):
            continue
        edges.setdefault(imp.source, set()).add(imp.target)
    return edges


def reexport_shims(sources: Mapping[str, tuple[Path, str]]) -> list[str]:
    """Modules (not ``__init__.py``) whose body is only imports, a docstring and ``__all__``."""
    out = []
    for name, (path, source) in sources.items():
        if path.name == "__init__.py":
            continue
        body = ast.parse(source).body
        meaningful = [
            s
            for s in body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
            and not (
                isinstance(s, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in s.targets)
            )
        ]
        if meaningful and all(isinstance(s, ast.Import | ast.ImportFrom) for s in meaningful):
            out.append(name)
    return out


def all_imports(sources: Mapping[str, tuple[Path, str]]) -> list[Import]:
    return [
        imp for name, (path, src) in sources.items() for imp in imports_of(name, path, src, sources)
    ]


@pytest.fixture(scope="module")
def tree() -> tuple[dict[str, tuple[Path, str]], list[Import]]:
    sources = collect_sources(PACKAGE_DIR)
    return sources, all_imports(sources)


def test_every_top_level_package_and_module_is_on_exactly_one_layer(tree) -> None:
    sources, _ = tree
    listed = [name for layer in LAYERS for name in layer]
    assert len(listed) == len(set(listed)), "a name is on two layers"
    present = {top_level(m) for m in sources if m != ROOT}
    assert present - set(listed) == set(), "top-level packages/modules missing from LAYERS"
    assert set(listed) - present == set(), "LAYERS names packages that do not exist"


def test_no_upward_or_sideways_import(tree) -> None:
    _, imports = tree
    assert layer_violations(imports, LAYERS) == []


def test_no_cycles_between_top_level_packages(tree) -> None:
    _, imports = tree
    edges: dict[str, set[str]] = {}
    for imp in imports:
        src, dst = top_level(imp.source), top_level(imp.target)
        if src != dst:
            edges.setdefault(src, set()).add(dst)
    assert cycles(edges) == []


def test_no_cycles_between_modules(tree) -> None:
    _, imports = tree
    assert cycles(module_edges(imports)) == []


def test_no_reexport_only_modules_outside_init(tree) -> None:
    sources, _ = tree
    assert reexport_shims(sources) == []


def test_the_retired_packages_are_gone() -> None:
    for name in ("trading", "management", "serving"):
        assert not (PACKAGE_DIR / name).exists(), name
        assert not (PACKAGE_DIR / f"{name}.py").exists(), name


# --- the checker itself catches what it must (on a synthetic tree) ----------------------------


def _fake_tree(tmp_path: Path, files: dict[str, str]) -> dict[str, tuple[Path, str]]:
    for rel, text in files.items():
        path = tmp_path / ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return collect_sources(tmp_path / ROOT)


def test_checker_sees_lazy_type_checking_relative_and_dynamic_imports(tmp_path: Path) -> None:
    sources = _fake_tree(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": "def f():\n    from cryptoml_pipeline.high import b\n",
            "low/c.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from cryptoml_pipeline.high.b import X\n"
            ),
            "low/d.py": (
                "import importlib\nm = importlib.import_module('cryptoml_pipeline.high.b')\n"
            ),
            "low/e.py": "from ..high import b\n",
            "high/__init__.py": "",
            "high/b.py": "from cryptoml_pipeline.low.a import f\nX = 1\n",
            "side/__init__.py": "from cryptoml_pipeline.low import a\n",
            "side2/__init__.py": "import cryptoml_pipeline.side\n",
        },
    )
    layers = [("low",), ("high",), ("side", "side2")]
    bad = layer_violations(all_imports(sources), layers)
    upward = [b for b in bad if "upward" in b]
    assert {b.split(":")[0] for b in upward} == {
        "cryptoml_pipeline.low.a",
        "cryptoml_pipeline.low.c",
        "cryptoml_pipeline.low.d",
        "cryptoml_pipeline.low.e",
    }
    assert [b for b in bad if "same layer" in b] == [
        "cryptoml_pipeline.side2:1 -> cryptoml_pipeline.side: same layer (side2, side)"
    ]
    assert cycles(module_edges(all_imports(sources))) == [
        ["cryptoml_pipeline.high.b", "cryptoml_pipeline.low.a"]
    ]


def test_checker_flags_reexport_shims_but_not_init_or_real_modules(tmp_path: Path) -> None:
    sources = _fake_tree(
        tmp_path,
        {
            "__init__.py": "",
            "pkg/__init__.py": "from cryptoml_pipeline.pkg.real import g\n__all__ = ['g']\n",
            "pkg/real.py": "from cryptoml_pipeline.pkg import other\n\ndef g():\n    return 1\n",
            "pkg/other.py": "X = 1\n",
            "pkg/shim.py": (
                '"""Moved."""\nfrom cryptoml_pipeline.pkg.real import g\n__all__ = ["g"]\n'
            ),
        },
    )
    assert reexport_shims(sources) == ["cryptoml_pipeline.pkg.shim"]
