"""Grid files of ``cryptoml experiment --grid FILE``: a sweep over pipeline configurations.

A grid names a few dotted setting paths and a list of values for each; every combination of
values (the Cartesian product) is one :class:`Configuration`, evaluated walk-forward and by
combinatorial purged cross-validation (CPCV, ``n_groups`` groups, ``k_test`` test groups), then
ranked by the selection rule the file declares *before* the sweep (``experiments/rules.py``).
Format (docs/experiments.md)::

    name: quick                      # optional; default: the file's stem; a safe slug
    selection_rule: best_walk_forward_net_sharpe
    model: gbm                       # the model each configuration trains (only gbm now)
    cpcv: {n_groups: 6, k_test: 2}   # defaults 6 / 2; 1 <= k_test < n_groups <= 12
    fixed:                           # dotted overrides applied to every configuration
      tuning.n_trials: 0
    parameters:                      # dotted setting path -> list of values
      target.kind: [vol_scaled_return, triple_barrier]
      target.horizon: [8, 24]
    optuna:                          # optional search inside each configuration
      n_trials: 0
      space:
        gbm.learning_rate: {low: 0.01, high: 0.1, log: true}
        gbm.num_leaves: {low: 7, high: 63, type: int}
        gbm.feature_fraction: {choices: [0.5, 0.8]}

:func:`load_grid` validates the whole file before any work starts — every key, every setting
path and every combination's settings (built with :func:`~cryptoml_pipeline.settings.
apply_overrides`) — and raises :class:`~cryptoml_pipeline.errors.InputError` with one line naming
the file and the offending key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.experiments.rules import DEFAULT_SELECTION_RULE, SELECTION_RULES
from cryptoml_pipeline.settings import PipelineSettings, apply_overrides

# -- the keys a grid can use --------------------------------------------------------------------

GRID_KEYS: dict[str, str] = {
    "name": "the experiment's name (default: the file's stem); letters, digits, '_', '-', '.'",
    "selection_rule": f"how the winner is chosen, one of {sorted(SELECTION_RULES)} "
    f"(default {DEFAULT_SELECTION_RULE})",
    "model": "the model every configuration trains (default gbm; only gbm is supported)",
    "cpcv": "{n_groups: N, k_test: k}: combinatorial purged CV, C(N, k) trainings (default 6/2)",
    "fixed": "dotted setting path -> value, applied to every configuration",
    "parameters": "dotted setting path -> list of values; the configurations are their product",
    "optuna": "{n_trials: T, space: {path: {low, high[, log][, type]} | {choices: [...]}}}",
}
"""Top-level keys of a grid file and their meaning. ``fixed``, ``parameters`` and
``optuna.space`` accept any dotted path of :class:`~cryptoml_pipeline.settings.PipelineSettings`
(except ``strategy.model``: use ``model``; and ``experiment``, a sweep's provenance);
:data:`SWEPT_SETTINGS` lists the usual ones."""

SWEPT_SETTINGS: dict[str, str] = {
    "target.kind": "what the model learns: classes, vol_scaled_return or triple_barrier",
    "target.horizon": "bars ahead the target looks (1..168); also the minimum holding period",
    "target.barrier_multiple": "triple barrier: barrier distance in sigma * sqrt(horizon)",
    "target.vol_window": "bars of the target's trailing volatility (a features.volatility_window)",
    "risk.edge_cost_multiple": "enter only if |expected move| >= this x round-trip cost",
    "risk.confidence_threshold": "minimum model confidence to enter a trade",
    "walk_forward.expanding": "train each fold on all data before its test window",
    "walk_forward.train_days": "days of the (rolling) training window",
    "data.training_history_days": "universe history before start the models may train on",
    "gbm.n_estimators": "LightGBM trees (an upper bound with early stopping)",
    "gbm.learning_rate": "LightGBM shrinkage",
    "gbm.num_leaves": "LightGBM leaves per tree",
    "gbm.min_child_samples": "LightGBM minimum rows per leaf (regularisation)",
    "gbm.feature_fraction": "LightGBM share of features per tree",
    "gbm.bagging_fraction": "LightGBM share of rows per tree",
    "gbm.lambda_l2": "LightGBM L2 penalty on leaf values",
    "gbm.lags": "extra lagged copies of every feature, e.g. [1, 4]",
    "gbm.num_threads": "LightGBM threads per training (size the run queue by it)",
    "features.use_existing_features": "feature selection: the RSI/CCI/WaveTrend family on/off",
    "features.market_microstructure.enabled": "feature selection: microstructure family on/off",
    "features.cross_asset.enabled": "feature selection: cross-asset family on/off",
    "features.temporal.enabled": "feature selection: temporal/regime family on/off",
    "features.sentiment_flow.enabled": "feature selection: funding/open-interest family on/off",
    "features.pooled.enabled": "feature selection: the pooled family (vol units, ranks, basis, "
    "carry) on/off; the run's own settings must turn it on for the shared table",
    "features.pooled.exclude_raw_scale": "with the pooled family on: models skip raw-scale inputs",
}
"""Setting paths commonly swept, with a one-line meaning each (any other path is allowed)."""

SUPPORTED_MODELS: tuple[str, ...] = ("gbm",)
DEFAULT_CPCV = (6, 2)
MAX_CPCV_GROUPS = 12
MAX_CONFIGURATIONS = 1000
MAX_NAME_LENGTH = 80
_HASH_LENGTH = 8
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")
# set by the top-level ``model`` key / by a sweep's selected.yaml, never by a grid
_RESERVED: dict[str, str] = {
    "strategy.model": "set by the top-level key 'model'",
    "experiment": "the sweep's provenance, written by cryptoml experiment",
}


def grid_keys() -> str:
    """The keys a grid can use, as text (for ``--help`` and error messages)."""
    lines = [f"{key}: {meaning}" for key, meaning in GRID_KEYS.items()]
    lines.append("commonly swept settings (any PipelineSettings dotted path works):")
    lines += [f"  {path}: {meaning}" for path, meaning in SWEPT_SETTINGS.items()]
    return "\n".join(lines)


# -- data ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchDimension:
    """One hyper-parameter of the Optuna search inside a configuration."""

    path: str  # dotted setting path, e.g. gbm.learning_rate
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    type: str = "float"  # "float", "int" or "categorical"
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an ``optuna.Trial``."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.path, float(self.low), float(self.high), log=self.log)


@dataclass(frozen=True)
class Configuration:
    """One point of the grid: its stable name, its swept values (dotted path -> value) and the
    nested overrides (fixed + params + the model) that build its settings."""

    name: str
    params: dict[str, Any]
    overrides: dict


@dataclass(frozen=True)
class Grid:
    name: str
    path: Path
    selection_rule: str
    model: str
    n_groups: int
    k_test: int
    fixed: dict[str, Any]
    parameters: dict[str, tuple[Any, ...]]
    optuna_trials: int
    optuna_space: dict[str, SearchDimension]
    configurations: tuple[Configuration, ...]

    @property
    def cpcv_splits(self) -> int:
        """CPCV trainings per configuration: C(n_groups, k_test)."""
        return math.comb(self.n_groups, self.k_test)

    def configuration(self, name: str) -> Configuration:
        for config in self.configurations:
            if config.name == name:
                return config
        raise InputError(f"grid {self.path}: no configuration named {name!r}")


# -- loading ------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loader that refuses duplicate mapping keys (PyYAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


class _Checker:
    """Raises one-line :class:`InputError` s naming the grid file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> InputError:
        line = " ".join(f"grid {self.path}: {key}: {problem}".split())  # always one line
        return InputError(line)


def load_grid(path: str | Path, base: PipelineSettings) -> Grid:
    """Read and validate a grid file against ``base`` settings; see the module docstring."""
    file = Path(path)
    check = _Checker(file)
    if not file.is_file():
        raise InputError(f"grid file {file} does not exist")
    try:
        raw = yaml.load(file.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or first
        raise check.fail("yaml", f"not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise check.fail("(top level)", "a grid file holds a mapping of keys")
    unknown = sorted(str(k) for k in raw if k not in GRID_KEYS)
    if unknown:
        raise check.fail(unknown[0], f"unknown key (allowed: {', '.join(GRID_KEYS)})")

    name = raw.get("name", file.stem)
    if not isinstance(name, str) or not _SLUG.match(name):
        key = "name" if "name" in raw else "name (the file's stem)"
        raise check.fail(key, f"{name!r} is not a safe slug (letters, digits, '_', '-', '.')")
    rule = raw.get("selection_rule", DEFAULT_SELECTION_RULE)
    if rule not in SELECTION_RULES:
        raise check.fail("selection_rule", f"{rule!r} is not one of {sorted(SELECTION_RULES)}")
    model = raw.get("model", SUPPORTED_MODELS[0])
    if model not in SUPPORTED_MODELS:
        raise check.fail("model", f"{model!r} is not supported (supported: {SUPPORTED_MODELS})")
    n_groups, k_test = _cpcv(check, raw.get("cpcv"))

    fixed = _dotted_mapping(check, "fixed", raw.get("fixed"), required=False)
    parameters_raw = _dotted_mapping(check, "parameters", raw.get("parameters"), required=True)
    parameters: dict[str, tuple[Any, ...]] = {}
    for key, values in parameters_raw.items():
        if not isinstance(values, list):
            raise check.fail(f"parameters.{key}", "must be a list of values, e.g. [8, 24]")
        if not values:
            raise check.fail(f"parameters.{key}", "empty list (give at least one value)")
        canon = [_canonical(v) for v in values]
        dupes = sorted({c for c in canon if canon.count(c) > 1})
        if dupes:
            raise check.fail(f"parameters.{key}", f"value {dupes[0]} is listed twice")
        parameters[key] = tuple(values)
    _check_paths(check, fixed, parameters)
    trials, space = _optuna(check, base, raw.get("optuna"), fixed, parameters)

    n_configs = math.prod(len(v) for v in parameters.values())
    if n_configs > MAX_CONFIGURATIONS:
        raise check.fail("parameters", f"{n_configs} configurations > {MAX_CONFIGURATIONS}")

    model_override = {"strategy.model": model}
    # each value alone first, so that a bad value is reported against its own key
    _build(check, base, {**fixed, **model_override}, "fixed")
    for key, values in parameters.items():
        for value in values:
            _build(check, base, {**fixed, **model_override, key: value}, f"parameters.{key}")
    combos = [
        dict(zip(parameters, combo, strict=True))
        for combo in itertools.product(*parameters.values())
    ]
    names = configuration_names(combos)
    configurations = []
    for config_name, params in zip(names, combos, strict=True):
        overrides = nest_dotted({**fixed, **params, **model_override})
        _build(check, base, {**fixed, **params, **model_override}, f"configuration {config_name}")
        configurations.append(Configuration(name=config_name, params=params, overrides=overrides))
    return Grid(
        name=name,
        path=file,
        selection_rule=rule,
        model=model,
        n_groups=n_groups,
        k_test=k_test,
        fixed=fixed,
        parameters=parameters,
        optuna_trials=trials,
        optuna_space=space,
        configurations=tuple(configurations),
    )


def configuration_settings(
    grid: Grid, config: Configuration, base: PipelineSettings
) -> PipelineSettings:
    """The settings one configuration runs with (``base`` + fixed + its params + the model)."""
    try:
        return apply_overrides(base, config.overrides)
    except ValueError as exc:
        raise _Checker(grid.path).fail(f"configuration {config.name}", _first_error(exc)) from None


def grid_to_selected_yaml(grid: Grid, config: Configuration) -> str:
    """One configuration's overrides as the nested YAML ``cryptoml run --config`` reads, with a
    comment header naming the grid and its selection rule."""
    header = [
        f"# Configuration {config.name} of grid {grid.name!r} ({grid.path}),",
        f"# selected by the rule declared before the sweep: {grid.selection_rule}",
        f"# (maximises {SELECTION_RULES[grid.selection_rule]}).",
        "# Run it with: cryptoml run --config THIS_FILE",
    ]
    body = yaml.safe_dump(_plain(config.overrides), sort_keys=False, default_flow_style=False)
    return "\n".join(header) + "\n" + body


# -- names --------------------------------------------------------------------------------------


def _render(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "-".join(_render(v) for v in value) or "empty"
    if isinstance(value, dict):
        return _render([f"{k}={_render(v)}" for k, v in sorted(value.items())])
    return str(value)


def _short_keys(paths: list[str]) -> dict[str, str]:
    """Each path's shortest unique suffix of components (``target.horizon`` -> ``horizon``)."""
    out: dict[str, str] = {}
    for path in paths:
        parts = path.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            others = [p for p in paths if p != path]
            if not any(p == suffix or p.endswith("." + suffix) for p in others):
                out[path] = suffix
                break
        else:  # pragma: no cover - paths are unique
            out[path] = path
    return out


def _hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical(dict(params)).encode()).hexdigest()[:_HASH_LENGTH]


def configuration_names(combos: list[dict[str, Any]]) -> list[str]:
    """Stable, unique, filesystem- and partition-key-safe names of parameter combinations.

    A name depends on the values only: ``short_key=value`` pairs sorted by setting path and
    joined by ``.`` (short key: the last path component, longer where two paths share it), only
    ``[A-Za-z0-9_.=-]``. Names longer than :data:`MAX_NAME_LENGTH`, or that collide (also
    case-insensitively, for case-insensitive file systems), are shortened / suffixed with the
    first 8 hex digits of the SHA-256 of the parameters' canonical JSON.
    """
    paths = sorted({path for combo in combos for path in combo})
    short = _short_keys(paths)
    plain = []
    for combo in combos:
        parts = [f"{short[p]}={_render(combo[p])}" for p in sorted(combo)]
        plain.append(_UNSAFE.sub("_", ".".join(parts)) or "default")
    folded = [n.lower() for n in plain]
    names = []
    for combo, name, fold in zip(combos, plain, folded, strict=True):
        if len(name) > MAX_NAME_LENGTH or folded.count(fold) > 1:
            keep = name[: MAX_NAME_LENGTH - _HASH_LENGTH - 1].rstrip("._=-")
            name = f"{keep}-{_hash(combo)}"
        names.append(name)
    return names


# -- helpers ------------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _cpcv(check: _Checker, raw: Any) -> tuple[int, int]:
    if raw is None:
        return DEFAULT_CPCV
    if not isinstance(raw, dict):
        raise check.fail("cpcv", "must be a mapping {n_groups: N, k_test: k}")
    unknown = sorted(str(k) for k in raw if k not in ("n_groups", "k_test"))
    if unknown:
        raise check.fail(f"cpcv.{unknown[0]}", "unknown key (allowed: n_groups, k_test)")
    n = raw.get("n_groups", DEFAULT_CPCV[0])
    k = raw.get("k_test", DEFAULT_CPCV[1])
    for key, value in (("n_groups", n), ("k_test", k)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise check.fail(f"cpcv.{key}", f"{value!r} is not an integer")
    if not 2 <= n <= MAX_CPCV_GROUPS:
        raise check.fail("cpcv.n_groups", f"{n} is outside 2..{MAX_CPCV_GROUPS}")
    if not 1 <= k < n:
        raise check.fail("cpcv.k_test", f"{k} must satisfy 1 <= k_test < n_groups={n}")
    return n, k


def _dotted_mapping(check: _Checker, key: str, raw: Any, *, required: bool) -> dict[str, Any]:
    if raw is None:
        if required:
            raise check.fail(key, "missing (a mapping of dotted setting path -> list of values)")
        return {}
    if not isinstance(raw, dict):
        raise check.fail(key, "must be a mapping of dotted setting paths")
    if required and not raw:
        raise check.fail(key, "empty (name at least one setting to sweep)")
    for path in raw:
        if not isinstance(path, str) or not path:
            raise check.fail(f"{key}.{path}", "setting paths are dotted strings, e.g. gbm.lags")
    return dict(raw)


def _resolve(path: str) -> str | None:
    """None when ``path`` names a setting of PipelineSettings, else the problem."""
    model: type[BaseModel] | None = PipelineSettings
    walked: list[str] = []
    for part in path.split("."):
        if model is None:
            return f"{'.'.join(walked)} is a single setting, not a group"
        fields = model.model_fields
        if part not in fields:
            group = ".".join(walked) or "the settings"
            return f"unknown setting ({group} has: {', '.join(fields)})"
        annotation = fields[part].annotation
        walked.append(part)
        is_group = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation if is_group else None
    return None


def _check_paths(check: _Checker, fixed: dict, parameters: dict) -> None:
    for section, mapping in (("fixed", fixed), ("parameters", parameters)):
        for path in mapping:
            for reserved, why in _RESERVED.items():
                if path == reserved or path.startswith(reserved + "."):
                    raise check.fail(f"{section}.{path}", why)
            problem = _resolve(path)
            if problem:
                raise check.fail(f"{section}.{path}", problem)
    both = sorted(set(fixed) & set(parameters))
    if both:
        raise check.fail(f"parameters.{both[0]}", "also set in fixed (set it in one place)")
    every = sorted([*fixed, *parameters])
    for a, b in itertools.permutations(every, 2):
        if b.startswith(a + "."):
            section = "parameters" if b in parameters else "fixed"
            raise check.fail(f"{section}.{b}", f"overlaps {a} (set a group or its members)")


def _number(check: _Checker, key: str, value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise check.fail(key, f"{value!r} is not a number (write 0.001 or 1.0e-3, not 1e-3)")
    return value


def _optuna(
    check: _Checker, base: PipelineSettings, raw: Any, fixed: dict, parameters: dict
) -> tuple[int, dict[str, SearchDimension]]:
    if raw is None:
        return 0, {}
    if not isinstance(raw, dict):
        raise check.fail("optuna", "must be a mapping {n_trials: T, space: {...}}")
    unknown = sorted(str(k) for k in raw if k not in ("n_trials", "space"))
    if unknown:
        raise check.fail(f"optuna.{unknown[0]}", "unknown key (allowed: n_trials, space)")
    trials = raw.get("n_trials", 0)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 0:
        raise check.fail("optuna.n_trials", f"{trials!r} is not an integer >= 0")
    space_raw = raw.get("space") or {}
    if not isinstance(space_raw, dict):
        raise check.fail("optuna.space", "must be a mapping of dotted setting path -> range")
    if trials > 0 and not space_raw:
        raise check.fail("optuna.space", f"missing: n_trials={trials} needs a search space")
    space: dict[str, SearchDimension] = {}
    for path, spec in space_raw.items():
        key = f"optuna.space.{path}"
        problem = _resolve(str(path))
        if problem:
            raise check.fail(key, problem)
        if path in fixed or path in parameters:
            raise check.fail(key, "also set in fixed/parameters (search it in one place)")
        space[path] = dim = _dimension(check, base, key, str(path), spec)
        probes = dim.choices if dim.type == "categorical" else (dim.low, dim.high)
        for probe in probes:
            _build(check, base, {**fixed, path: probe}, key)
    return trials, space


def _dimension(
    check: _Checker, base: PipelineSettings, key: str, path: str, spec: Any
) -> SearchDimension:
    if not isinstance(spec, dict):
        raise check.fail(key, "must be {low, high[, log][, type]} or {choices: [...]}")
    if "choices" in spec:
        extra = sorted(str(k) for k in spec if k != "choices")
        if extra:
            raise check.fail(f"{key}.{extra[0]}", "not allowed beside choices")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise check.fail(f"{key}.choices", "must be a non-empty list")
        return SearchDimension(path=path, type="categorical", choices=tuple(choices))
    unknown = sorted(str(k) for k in spec if k not in ("low", "high", "log", "type"))
    if unknown:
        raise check.fail(f"{key}.{unknown[0]}", "unknown key (allowed: low, high, log, type)")
    for bound in ("low", "high"):
        if bound not in spec:
            raise check.fail(f"{key}.{bound}", "missing")
    low = _number(check, f"{key}.low", spec["low"])
    high = _number(check, f"{key}.high", spec["high"])
    current = base
    for part in path.split("."):
        current = getattr(current, part)
    default_type = "int" if isinstance(current, int) and not isinstance(current, bool) else "float"
    kind = spec.get("type", default_type)
    if kind not in ("int", "float"):
        raise check.fail(f"{key}.type", f"{kind!r} is not int or float")
    if kind == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise check.fail(key, "type int needs integer low and high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise check.fail(f"{key}.log", f"{log!r} is not true or false")
    if not low < high:
        raise check.fail(key, f"low={low} must be below high={high}")
    if log and low <= 0:
        raise check.fail(key, f"log scale needs low > 0, got {low}")
    return SearchDimension(path=path, low=low, high=high, log=log, type=kind)


def nest_dotted(dotted: Mapping[str, Any]) -> dict:
    """``{"gbm.learning_rate": 0.05}`` -> ``{"gbm": {"learning_rate": 0.05}}``."""
    out: dict = {}
    for path, value in dotted.items():
        *groups, leaf = path.split(".")
        node = out
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = value
    return out


def _plain(value: Any) -> Any:
    """YAML-safe copy (tuples -> lists) of a nested override mapping."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _first_error(exc: ValueError) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if "input" in err and not isinstance(err["input"], dict):
            msg = f"{msg} (got {err['input']!r})"
        return f"{loc}: {msg}" if loc else msg
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _build(check: _Checker, base: PipelineSettings, dotted: dict, key: str) -> PipelineSettings:
    try:
        return apply_overrides(base, nest_dotted(dotted))
    except ValueError as exc:
        raise check.fail(key, _first_error(exc)) from None
