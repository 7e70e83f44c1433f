"""End to end: ``cryptoml run`` (tiny profile, synthetic market, two traded symbols pooled over a
three-symbol universe), then ``cryptoml signal``: the signal of the deployed model for a traded
symbol equals the model's prediction on the run's own feature table at that bar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.cli import main
from cryptoml_pipeline.live import load_served
from cryptoml_pipeline.registry.db import open_database
from cryptoml_pipeline.registry.model_registry import ModelRegistry

TRADED = "BTC/USDT,ETH/USDT"
UNIVERSE = "BTC/USDT,ETH/USDT,SOL/USDT"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("signal_e2e")
    out = tmp / "output"
    argv = ["run", "--profile", "tiny", "--synthetic", "--output-dir", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(tmp / "dagster_home"))
        code = main([*argv, "--symbols", TRADED, "--universe", UNIVERSE])
    if code != 0:  # only a blocking deploy-gate rejection may fail the run; its candidate stays
        registry = ModelRegistry(open_database(out))
        [candidate] = registry.list_versions(stage="candidate")
        assert (candidate.reason or "").startswith("rejected"), candidate.reason
    return out


def _serving_flags(out: Path) -> tuple[str, ...]:
    """``--candidate`` when the run did not deploy its model (no walk-forward evidence)."""
    return () if (out / "models" / "deployed" / "manifest.json").is_file() else ("--candidate",)


def _signal(out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["signal", "--output-dir", str(out), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_signal_after_a_multi_symbol_synthetic_run(tiny_run: Path, capsys) -> None:
    extra = _serving_flags(tiny_run)
    deployed = not extra
    if not deployed:  # without --candidate: one line with the candidate's reason, exit 2
        code, stdout, stderr = _signal(tiny_run, capsys, "--symbol", "ETH/USDT")
        assert code == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1
        assert "no model deployed" in stderr and "was not deployed: " in stderr
    code, stdout, stderr = _signal(tiny_run, capsys, "--symbol", "ETH/USDT", *extra)
    assert code == 0, stderr
    assert ("NOT deployed" in stderr) is not deployed
    out = json.loads(stdout)  # one JSON object, nothing else on stdout
    assert out["symbol"] == "ETH/USDT" and out["timeframe"] == "1h"
    assert out["signal"] in (-2, -1, 0, 1, 2)
    assert 0.0 <= out["confidence"] <= 1.0
    assert out["decision"]["action"] in ("enter", "hold")  # flat by default
    assert out["data"] == {"source": "synthetic", "synthetic": True}
    assert out["model"]["deployed"] is deployed
    served = load_served(tiny_run, candidate=not deployed)
    assert served.universe == ("BTC/USDT", "ETH/USDT", "SOL/USDT")
    # the last bar of the run's synthetic window (every series closed it)
    features = pd.read_parquet(tiny_run / "assets" / "feature_table.parquet")
    last = features.loc[features["symbol"] == "ETH/USDT", "timestamp"].max()
    assert pd.Timestamp(out["bar_open"]) == last
    assert pd.Timestamp(out["fills_at"]) == last + pd.Timedelta(hours=1)
    # the model's prediction on the run's own (full) feature table at that bar
    mask = ((features["symbol"] == "ETH/USDT") & (features["timestamp"] == last)).to_numpy()
    ref = served.zoo.predict_rows(
        served.model, features, None, mask, served.settings, "1h", tag="reference"
    ).iloc[0]
    assert out["expected_return"] == pytest.approx(ref["expected_return"], abs=1e-9, rel=0)
    assert out["confidence"] == pytest.approx(ref["confidence"], abs=1e-9, rel=0)
    assert out["signal"] == int(ref["signal"])
    # the backtest's cost filter decides the entry
    decision = out["decision"]
    passes = out["signal"] != 0 and abs(out["expected_return"]) >= decision["cost_threshold"]
    passes = passes and np.sign(out["expected_return"]) == np.sign(out["signal"])
    assert (decision["action"] == "enter") is bool(passes)


def test_signal_for_every_traded_symbol_is_a_list(tiny_run: Path, capsys) -> None:
    extra = _serving_flags(tiny_run)
    code, stdout, stderr = _signal(tiny_run, capsys, *extra)
    assert code == 0, stderr
    rows = json.loads(stdout)
    assert [r["symbol"] for r in rows] == ["BTC/USDT", "ETH/USDT"]
    assert all(r["model"]["deployed"] is not extra for r in rows)
    assert len({r["bar_open"] for r in rows}) == 1  # the same closed bar for both


def test_signal_rejects_an_untraded_universe_member(tiny_run: Path, capsys) -> None:
    extra = _serving_flags(tiny_run)
    code, stdout, stderr = _signal(tiny_run, capsys, "--symbol", "SOL/USDT", *extra)
    assert code == 2 and stdout == ""
    error = [line for line in stderr.splitlines() if line.startswith("cryptoml: error")]
    assert len(error) == 1 and "does not trade ['SOL/USDT']" in error[0]
