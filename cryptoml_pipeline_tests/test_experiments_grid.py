"""Grid files of ``cryptoml experiment``: format, validation (one line naming the key), stable
configuration names, the shipped quick grid and the selected configuration's YAML."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.experiments.grid import (
    GRID_KEYS,
    MAX_NAME_LENGTH,
    SWEPT_SETTINGS,
    configuration_names,
    configuration_settings,
    grid_keys,
    grid_to_selected_yaml,
    load_grid,
)
from cryptoml_pipeline.experiments.rules import DEFAULT_SELECTION_RULE
from cryptoml_pipeline.settings import PipelineSettings, apply_overrides, profile_settings

REPO = Path(__file__).resolve().parents[1]
QUICK = REPO / "examples" / "grids" / "quick.yaml"
SAFE = re.compile(r"^[A-Za-z0-9_.=-]+$")

GRID = """\
name: test
selection_rule: best_walk_forward_net_sharpe
model: gbm
cpcv: {n_groups: 6, k_test: 2}
fixed:
  tuning.n_trials: 0
parameters:
  target.kind: [vol_scaled_return, triple_barrier]
  target.horizon: [8, 24]
  risk.edge_cost_multiple: [1.5, 2.5]
optuna:
  n_trials: 3
  space:
    gbm.learning_rate: {low: 0.01, high: 0.1, log: true}
    gbm.num_leaves: {low: 7, high: 63, type: int}
    gbm.feature_fraction: {choices: [0.5, 0.8]}
"""


@pytest.fixture(scope="module")
def base() -> PipelineSettings:
    return profile_settings("demo")


def write(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_loads_the_documented_format(tmp_path, base) -> None:
    grid = load_grid(write(tmp_path, GRID), base)
    assert grid.name == "test" and grid.model == "gbm"
    assert (grid.n_groups, grid.k_test, grid.cpcv_splits) == (6, 2, 15)
    assert grid.selection_rule == "best_walk_forward_net_sharpe"
    assert len(grid.configurations) == 8
    assert grid.optuna_trials == 3
    assert grid.optuna_space["gbm.num_leaves"].type == "int"
    assert grid.optuna_space["gbm.learning_rate"].log is True
    assert grid.optuna_space["gbm.feature_fraction"].choices == (0.5, 0.8)
    config = grid.configuration("edge_cost_multiple=2.5.horizon=8.kind=triple_barrier")
    assert config.params == {
        "target.kind": "triple_barrier",
        "target.horizon": 8,
        "risk.edge_cost_multiple": 2.5,
    }
    settings = configuration_settings(grid, config, base)
    assert settings.target.kind == "triple_barrier" and settings.target.horizon == 8
    assert settings.risk.edge_cost_multiple == 2.5 and settings.tuning.n_trials == 0
    assert settings.strategy.model == "gbm"
    assert settings.walk_forward == base.walk_forward  # untouched settings keep the base's


def test_defaults_name_rule_model_and_cpcv(tmp_path, base) -> None:
    grid = load_grid(write(tmp_path, "parameters:\n  target.horizon: [8]\n", "my-grid.yaml"), base)
    assert grid.name == "my-grid"
    assert grid.selection_rule == DEFAULT_SELECTION_RULE
    assert (grid.model, grid.n_groups, grid.k_test) == ("gbm", 6, 2)
    assert grid.optuna_trials == 0 and grid.optuna_space == {}
    assert [c.name for c in grid.configurations] == ["horizon=8"]


def test_names_are_stable_under_key_order_and_change_with_values(tmp_path, base) -> None:
    a = load_grid(write(tmp_path, GRID, "a.yaml"), base)
    reordered = GRID.replace(
        "  target.kind: [vol_scaled_return, triple_barrier]\n  target.horizon: [8, 24]\n",
        "  target.horizon: [8, 24]\n  target.kind: [vol_scaled_return, triple_barrier]\n",
    ).replace("name: test\n", "")
    reordered = "name: test\n" + reordered.replace("model: gbm\n", "") + "model: gbm\n"
    b = load_grid(write(tmp_path, reordered, "b.yaml"), base)
    assert {c.name: c.params for c in a.configurations} == {
        c.name: c.params for c in b.configurations
    }
    changed = load_grid(write(tmp_path, GRID.replace("[8, 24]", "[8, 12]"), "c.yaml"), base)
    assert {c.name for c in changed.configurations} != {c.name for c in a.configurations}
    assert "edge_cost_multiple=1.5.horizon=12.kind=triple_barrier" in {
        c.name for c in changed.configurations
    }


def test_names_are_safe_unique_and_short() -> None:
    combos = [
        {"data.symbols": ["BTC/USDT", "ETH/USDT"], "gbm.num_threads": 2, "training.num_threads": 4},
        {"data.symbols": ["BTC_USDT", "ETH_USDT"], "gbm.num_threads": 2, "training.num_threads": 4},
        {"data.symbols": ["X" * 90], "gbm.num_threads": 1, "training.num_threads": None},
        {"data.symbols": ["a"], "gbm.num_threads": 1, "training.num_threads": None},
        {"data.symbols": ["A"], "gbm.num_threads": 1, "training.num_threads": None},
    ]
    names = configuration_names(combos)
    assert len(set(names)) == len(names)
    assert len({n.lower() for n in names}) == len(names)  # case-insensitive file systems
    for name in names:
        assert SAFE.match(name) and len(name) <= MAX_NAME_LENGTH, name
        assert not set("|,[]/+") & set(name)
    # shared last components are told apart by their group
    assert "gbm.num_threads=2" in names[0] and "training.num_threads=4" in names[0]
    # a collision after sanitising ('/' -> '_') gets the hash suffix on both sides
    assert re.search(r"-[0-9a-f]{8}$", names[0]) and re.search(r"-[0-9a-f]{8}$", names[1])
    assert re.search(r"-[0-9a-f]{8}$", names[2])  # too long
    assert names[3] != names[4]
    assert configuration_names(combos) == names  # deterministic


def test_quick_grid(base) -> None:
    grid = load_grid(QUICK, profile_settings("demo"))
    assert grid.name == "quick"
    assert len(grid.configurations) <= 8
    assert (grid.n_groups, grid.k_test) == (6, 2)
    assert grid.cpcv_splits == 15  # trainings per configuration
    assert grid.model == "gbm" and grid.optuna_trials == 0
    assert set(grid.parameters) == {"target.kind", "target.horizon", "risk.edge_cost_multiple"}
    for config in grid.configurations:
        settings = configuration_settings(grid, config, base)
        assert settings.gbm.min_child_samples == base.gbm.min_child_samples  # regularisation kept
        assert SAFE.match(config.name)


def test_selected_yaml_round_trips_through_apply_overrides(tmp_path, base) -> None:
    grid = load_grid(write(tmp_path, GRID), base)
    for config in grid.configurations:
        text = grid_to_selected_yaml(grid, config)
        assert text.startswith("#") and grid.name in text and grid.selection_rule in text
        loaded = yaml.safe_load(text)
        assert apply_overrides(base, loaded) == configuration_settings(grid, config, base)


def test_selected_yaml_reads_as_a_run_config_file(tmp_path, base) -> None:
    from cryptoml_pipeline.defs.resources import load_config_file

    grid = load_grid(write(tmp_path, GRID), base)
    config = grid.configurations[-1]
    selected = write(tmp_path, grid_to_selected_yaml(grid, config), "selected.yaml")
    settings = apply_overrides(base, load_config_file(selected))
    assert settings == configuration_settings(grid, config, base)


def test_keys_are_documented() -> None:
    assert set(GRID_KEYS) == {
        "name",
        "selection_rule",
        "model",
        "cpcv",
        "fixed",
        "parameters",
        "optuna",
    }
    for path in ("target.kind", "target.horizon", "risk.edge_cost_multiple"):
        assert path in SWEPT_SETTINGS
    text = grid_keys()
    assert "walk_forward.expanding" in text and "data.training_history_days" in text


def test_every_documented_swept_setting_exists(tmp_path, base) -> None:
    fixed = "\n".join(f"  {p}: null" for p in SWEPT_SETTINGS)
    # paths are checked before values: a bad value fails on the first key, not on the path
    with pytest.raises(InputError) as err:
        load_grid(write(tmp_path, f"fixed:\n{fixed}\nparameters:\n  gbm.seed: [1]\n"), base)
    assert "unknown setting" in str(err.value) and "parameters.gbm.seed" in str(err.value)


BAD_CASES = [
    ("unknown top-level key", "paramters: {}\n", "paramters"),
    ("parameters missing", "name: x\n", "parameters"),
    ("unknown setting path", "parameters:\n  target.knd: [a]\n", "parameters.target.knd"),
    ("path below a leaf", "parameters:\n  target.kind.x: [a]\n", "parameters.target.kind.x"),
    ("unknown group", "parameters:\n  tagret.kind: [a]\n", "parameters.tagret.kind"),
    ("empty list", "parameters:\n  target.horizon: []\n", "parameters.target.horizon"),
    ("not a list", "parameters:\n  target.horizon: 8\n", "parameters.target.horizon"),
    ("duplicate value", "parameters:\n  target.horizon: [8, 8]\n", "parameters.target.horizon"),
    ("bad value", "parameters:\n  target.horizon: [8, 500]\n", "parameters.target.horizon"),
    ("bad kind", "parameters:\n  target.kind: [up_or_down]\n", "parameters.target.kind"),
    (
        "bad fixed value",
        "fixed:\n  gbm.num_leaves: 1\nparameters:\n  target.horizon: [8]\n",
        "fixed",
    ),
    (
        "unknown fixed path",
        "fixed:\n  gbm.leaves: 3\nparameters:\n  target.horizon: [8]\n",
        "fixed.gbm.leaves",
    ),
    (
        "fixed and parameters both",
        "fixed:\n  target.horizon: 8\nparameters:\n  target.horizon: [8, 24]\n",
        "parameters.target.horizon",
    ),
    (
        "group and member both",
        "fixed:\n  target: {horizon: 8}\nparameters:\n  target.kind: [classes]\n",
        "parameters.target.kind",
    ),
    (
        "combination invalid",
        # each value is valid alone with the base's vol windows; together they are not
        "parameters:\n  target.vol_window: [24, 168]\n"
        "  features.volatility_windows: [[24, 168], [168]]\n",
        "configuration volatility_windows=168.vol_window=24",
    ),
    (
        "bad rule",
        "selection_rule: best_luck\nparameters:\n  target.horizon: [8]\n",
        "selection_rule",
    ),
    ("bad model", "model: transformer\nparameters:\n  target.horizon: [8]\n", "model"),
    ("model via settings", "parameters:\n  strategy.model: [gbm]\n", "parameters.strategy.model"),
    ("bad slug", "name: my grid/1\nparameters:\n  target.horizon: [8]\n", "name"),
    (
        "cpcv k >= N",
        "cpcv: {n_groups: 6, k_test: 6}\nparameters:\n  target.horizon: [8]\n",
        "k_test",
    ),
    (
        "cpcv k = 0",
        "cpcv: {n_groups: 6, k_test: 0}\nparameters:\n  target.horizon: [8]\n",
        "k_test",
    ),
    (
        "cpcv N > 12",
        "cpcv: {n_groups: 13, k_test: 2}\nparameters:\n  target.horizon: [8]\n",
        "n_groups",
    ),
    ("cpcv unknown", "cpcv: {groups: 6}\nparameters:\n  target.horizon: [8]\n", "cpcv.groups"),
    ("cpcv not int", "cpcv: {n_groups: six}\nparameters:\n  target.horizon: [8]\n", "n_groups"),
    (
        "optuna unknown key",
        "optuna: {trials: 3}\nparameters:\n  target.horizon: [8]\n",
        "optuna.trials",
    ),
    (
        "optuna unknown path",
        "optuna:\n  n_trials: 2\n  space:\n    gbm.rate: {low: 0.1, high: 0.2}\n"
        "parameters:\n  target.horizon: [8]\n",
        "optuna.space.gbm.rate",
    ),
    (
        "optuna low >= high",
        "optuna:\n  n_trials: 2\n  space:\n    gbm.learning_rate: {low: 0.2, high: 0.1}\n"
        "parameters:\n  target.horizon: [8]\n",
        "optuna.space.gbm.learning_rate",
    ),
    (
        "optuna log with low 0",
        "optuna:\n  n_trials: 2\n  space:\n    gbm.lambda_l2: {low: 0, high: 10, log: true}\n"
        "parameters:\n  target.horizon: [8]\n",
        "optuna.space.gbm.lambda_l2",
    ),
    (
        "optuna bound out of range",
        "optuna:\n  n_trials: 2\n  space:\n    gbm.feature_fraction: {low: 0.5, high: 1.5}\n"
        "parameters:\n  target.horizon: [8]\n",
        "optuna.space.gbm.feature_fraction",
    ),
    (
        "optuna int with float bounds",
        "optuna:\n  n_trials: 2\n  space:\n    gbm.num_leaves: {low: 7.5, high: 63}\n"
        "parameters:\n  target.horizon: [8]\n",
        "optuna.space.gbm.num_leaves",
    ),
    (
        "optuna string number",
        "optuna:\n  n_trials: 2\n  space:\n    gbm.learning_rate: {low: 1e-3, high: 0.1}\n"
        "parameters:\n  target.horizon: [8]\n",
        "optuna.space.gbm.learning_rate.low",
    ),
    (
        "optuna empty choices",
        "optuna:\n  n_trials: 2\n  space:\n    gbm.lags: {choices: []}\n"
        "parameters:\n  target.horizon: [8]\n",
        "optuna.space.gbm.lags.choices",
    ),
    (
        "optuna trials without space",
        "optuna: {n_trials: 5}\nparameters:\n  target.horizon: [8]\n",
        "optuna.space",
    ),
    (
        "optuna searches a swept setting",
        "optuna:\n  n_trials: 2\n  space:\n    target.horizon: {low: 4, high: 24}\n"
        "parameters:\n  target.horizon: [8]\n",
        "optuna.space.target.horizon",
    ),
    ("duplicate key", "parameters:\n  target.horizon: [8]\n  target.horizon: [24]\n", "yaml"),
    ("not yaml", "parameters: [8\n", "yaml"),
    ("not a mapping", "- 8\n", "top level"),
]


@pytest.mark.parametrize(("case", "text", "key"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_grids_fail_on_one_line_naming_file_and_key(tmp_path, base, case, text, key) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_grid(path, base)
    message = str(err.value)
    assert "\n" not in message, case
    assert str(path) in message, message
    assert key in message, message


def test_missing_file(tmp_path, base) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_grid(tmp_path / "nope.yaml", base)


def test_optuna_dimensions_suggest_through_a_trial(tmp_path, base) -> None:
    import optuna

    grid = load_grid(write(tmp_path, GRID), base)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    values = {path: dim.suggest(trial) for path, dim in grid.optuna_space.items()}
    assert 0.01 <= values["gbm.learning_rate"] <= 0.1
    assert isinstance(values["gbm.num_leaves"], int) and 7 <= values["gbm.num_leaves"] <= 63
    assert values["gbm.feature_fraction"] in (0.5, 0.8)
