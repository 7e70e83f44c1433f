import json

import pandas as pd
import pytest

from cryptoml_pipeline.registry.artifact_store import read_value, write_value


def test_dataframe_round_trip_keeps_tz(tmp_path) -> None:
    df = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC"),
            "x": [1.0, 2.0, 3.0],
        }
    )
    path = write_value(tmp_path / "a", df)
    assert path.suffix == ".parquet"
    pd.testing.assert_frame_equal(read_value(tmp_path / "a"), df)


def test_json_and_bundle_round_trip(tmp_path) -> None:
    write_value(tmp_path / "plan", [{"key": "2024-01-01"}])
    assert read_value(tmp_path / "plan") == [{"key": "2024-01-01"}]
    frame = pd.DataFrame({"a": [1, 2]})
    write_value(tmp_path / "b", {"equity": frame, "kpis": {"sharpe": 1.5}})
    back = read_value(tmp_path / "b")
    assert back["kpis"] == {"sharpe": 1.5}
    pd.testing.assert_frame_equal(back["equity"], frame)
    # overwriting a bundle replaces it whole (no stale frames left behind)
    write_value(tmp_path / "b", {"trades": frame, "kpis": {}})
    assert set(json.loads((tmp_path / "b" / "bundle.json").read_text())["frames"]) == {"trades"}
    assert not (tmp_path / "b" / "equity.parquet").exists()


def test_unsupported_type_is_refused_not_pickled(tmp_path) -> None:
    with pytest.raises(TypeError, match="cannot store"):
        write_value(tmp_path / "x", object())
    with pytest.raises(FileNotFoundError, match="materialize"):
        read_value(tmp_path / "missing")
