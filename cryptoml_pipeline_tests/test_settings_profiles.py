"""The profiles live in YAML files shipped in the package (``cryptoml_pipeline/profiles/``);
:func:`profile_settings` must build exactly the settings the former Python construction built.

``_reference`` below is that construction, verbatim (before the move to YAML): every profile,
with and without data overrides, must compare ``==`` and dump identically."""

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

import cryptoml_pipeline
from cryptoml_pipeline.settings import (
    PROFILES,
    ControlsConfig,
    CrossAssetConfig,
    DataConfig,
    FeatureConfig,
    GbmConfig,
    ImportanceConfig,
    LstmCnnConfig,
    ModelConfig,
    PipelineSettings,
    PpoConfig,
    TemporalConfig,
    TrainingConfig,
    TuningConfig,
    WalkForwardConfig,
    profile_overrides,
    profile_settings,
)

PKG = Path(cryptoml_pipeline.__file__).parent


def _reference(profile: str, **data_overrides: object) -> PipelineSettings:
    if profile == "tiny":
        base = PipelineSettings(
            profile="tiny",
            data=DataConfig(
                symbols=("BTC/USDT",),
                universe=("BTC/USDT",),
                lookback_days=120,
                training_history_days=0,
            ),
            features=FeatureConfig(
                cross_asset=CrossAssetConfig(correlation_windows=(24, 72, 168)),
                temporal=TemporalConfig(regime_window=168),
                importance=ImportanceConfig(max_rows=300),
            ),
            walk_forward=WalkForwardConfig(train_days=60, test_days=30, step_days=30, max_folds=2),
            model=ModelConfig(
                d_model=16,
                nhead=2,
                num_layers=1,
                dim_feedforward=32,
                head_hidden=16,
                sequence_length=24,
            ),
            training=TrainingConfig(
                batch_size=128,
                epochs=1,
                early_stopping_patience=1,
                t0=1,
                max_batches_per_epoch=20,
                row_stride=1,
            ),
            gbm=GbmConfig(n_estimators=50, min_child_samples=50),
            lstm_cnn=LstmCnnConfig(
                sequence_length=16,
                conv_channels=8,
                lstm_hidden=16,
                attention_heads=2,
                min_train_samples=100,
            ),
            ppo=PpoConfig(total_timesteps=1024, n_steps=256),
            tuning=TuningConfig(n_trials=2),
        )
    elif profile == "demo":
        base = PipelineSettings(
            profile="demo",
            walk_forward=WalkForwardConfig(train_days=180, test_days=90, step_days=90),
            model=ModelConfig(
                d_model=64,
                nhead=4,
                num_layers=2,
                dim_feedforward=128,
                head_hidden=64,
                sequence_length=48,
            ),
            training=TrainingConfig(batch_size=256, epochs=6, early_stopping_patience=2, t0=2),
            lstm_cnn=LstmCnnConfig(
                sequence_length=24, conv_channels=32, lstm_hidden=64, attention_heads=4
            ),
            ppo=PpoConfig(total_timesteps=10_000),
            tuning=TuningConfig(n_trials=0),
            controls=ControlsConfig(shuffled_label_folds=None),
        )
    else:
        assert profile == "full"
        base = PipelineSettings(
            profile="full", requires_cuda=True, training=TrainingConfig(auto_batch_size=True)
        )
    if data_overrides:
        base = base.model_copy(update={"data": base.data.model_copy(update=data_overrides)})
    return base


DATA_OVERRIDES = {
    "none": {},
    "symbols": {"symbols": ("ETH/USDT",)},
    "timeframe": {"timeframe": "4h"},
    "symbols+timeframe": {"symbols": ("BTC/USDT", "SOL/USDT"), "timeframe": "15m"},
    "window": {
        "start": datetime(2025, 1, 1, tzinfo=UTC),
        "end": datetime(2025, 6, 1, tzinfo=UTC),
        "lookback_days": 90,
    },
    "universe": {"universe": ("BTC/USDT", "XRP/USDT"), "training_history_days": 30},
}


@pytest.mark.parametrize("overrides", DATA_OVERRIDES.values(), ids=DATA_OVERRIDES.keys())
@pytest.mark.parametrize("profile", PROFILES)
def test_yaml_profiles_equal_the_former_python_construction(profile, overrides) -> None:
    got, want = profile_settings(profile, **overrides), _reference(profile, **overrides)
    assert got == want
    assert got.profile == profile
    # same types too (tuples stay tuples, ints stay ints): the dumps are identical
    assert repr(got.model_dump(mode="python")) == repr(want.model_dump(mode="python"))
    assert got.model_dump(mode="json") == want.model_dump(mode="json")


def test_profiles_are_fresh_objects() -> None:
    """The YAML is read once, but every call builds new settings (no shared mutable state)."""
    a, b = profile_settings("demo"), profile_settings("demo")
    assert a == b and a is not b
    assert a.features.cross_asset.sectors is not b.features.cross_asset.sectors


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_files_hold_only_overrides_of_the_defaults(profile) -> None:
    raw = yaml.safe_load((PKG / "profiles" / f"{profile}.yaml").read_text())
    assert raw == profile_overrides(profile)
    assert "profile" not in raw  # set by profile_settings from the file's name
    defaults = PipelineSettings().model_dump(mode="json")
    for path, value in _leaves(raw):
        default = defaults
        for part in path.split("."):
            default = default[part]
        assert value != default, f"{profile}.yaml: {path} = {value!r} is the class default"


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        profile_settings("huge")  # type: ignore[arg-type]


def test_profile_files_are_package_data() -> None:
    """``pip install .`` ships the YAML files (setuptools package-data), no stale globs."""
    pyproject = tomllib.loads((PKG.parent / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["cryptoml_pipeline"]
    assert "profiles/*.yaml" in globs
    for pattern in globs:
        assert list(PKG.glob(pattern)), f"package-data glob {pattern!r} matches no file"
    assert sorted(p.stem for p in PKG.glob("profiles/*.yaml")) == sorted(PROFILES)
    assert not (PKG / "profiles" / "__init__.py").exists()  # data, not a package


@pytest.mark.parametrize("profile", PROFILES)
def test_settings_survive_the_json_round_trip_of_the_run_settings_asset(profile) -> None:
    """``run_settings`` is stored as JSON by the IO manager: it must come back equal."""
    settings = profile_settings(profile, **DATA_OVERRIDES["window"])
    text = json.dumps(settings.model_dump(mode="json"))
    back = PipelineSettings.model_validate(json.loads(text))
    assert back == settings
    assert back.model_dump(mode="json") == settings.model_dump(mode="json")
