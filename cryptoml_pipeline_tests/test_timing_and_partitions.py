import dagster as dg
import pandas as pd
import pytest

from cryptoml_pipeline.defs.assets.modeling import sync_fold_partitions
from cryptoml_pipeline.defs.partitions import FOLDS
from cryptoml_pipeline.evaluation.walk_forward import _window_return
from cryptoml_pipeline.timing import (
    bars_per_day,
    known_at,
    timeframe_to_timedelta,
    to_utc,
)


def test_timeframes() -> None:
    assert timeframe_to_timedelta("5m") == pd.Timedelta(minutes=5)
    assert timeframe_to_timedelta("4h") == pd.Timedelta(hours=4)
    assert bars_per_day("1h") == 24
    for bad in ("1x", "h", "", "1.5h"):
        with pytest.raises(ValueError, match="unsupported timeframe"):
            timeframe_to_timedelta(bad)


def test_row_known_one_bar_after_its_open_and_fills_at_next_open() -> None:
    ts = pd.Series(pd.to_datetime(["2025-01-01 10:00"], utc=True))
    assert known_at(ts, "1h").iloc[0] == pd.Timestamp("2025-01-01 11:00", tz="UTC")
    assert known_at(ts, "4h").iloc[0] == pd.Timestamp("2025-01-01 14:00", tz="UTC")


def test_to_utc_localises_naive_and_converts_aware() -> None:
    assert to_utc("2025-01-01").tzinfo is not None
    assert to_utc(pd.Timestamp("2025-01-01 02:00", tz="Europe/Berlin")).hour == 1


def test_fold_partitions_follow_the_current_plan_only() -> None:
    with dg.instance_for_test() as instance:
        sync_fold_partitions(instance, ["2025-01-01", "2025-04-01"])
        sync_fold_partitions(instance, ["2025-04-01", "2025-07-01"])  # a later window
        assert sorted(instance.get_dynamic_partitions(FOLDS)) == ["2025-04-01", "2025-07-01"]


def test_fold_return_starts_from_the_mark_before_the_window() -> None:
    idx = pd.date_range("2025-01-01", periods=4, freq="D", tz="UTC")
    equity = pd.Series([100.0, 110.0, 121.0, 133.1], index=idx)
    assert _window_return(equity, idx[1], idx[3]) == pytest.approx(0.21)  # 100 -> 121
    assert _window_return(equity, idx[0], idx[1]) == pytest.approx(0.0)
    assert (
        _window_return(equity, idx[3] + pd.Timedelta(days=1), idx[3] + pd.Timedelta(days=2)) is None
    )


def test_settings_refuse_overlapping_tests_and_unknown_risk_columns() -> None:
    from pydantic import ValidationError

    from cryptoml_pipeline.settings import (
        FeatureConfig,
        PipelineSettings,
        RiskConfig,
        WalkForwardConfig,
    )

    with pytest.raises(ValidationError, match="overlap"):
        WalkForwardConfig(test_days=30, step_days=10)
    with pytest.raises(ValidationError, match="volatility_window"):
        PipelineSettings(risk=RiskConfig(volatility_window=100))
    with pytest.raises(ValidationError, match="atr_period"):
        PipelineSettings(features=FeatureConfig(atr_period=10))
    PipelineSettings(features=FeatureConfig(atr_period=10), risk=RiskConfig(atr_period=10))
