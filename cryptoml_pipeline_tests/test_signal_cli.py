"""``cryptoml signal`` on a parquet data directory: one JSON object per symbol (a list for several),
logs on stderr, the backtest's decision, and one-line errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cryptoml_pipeline.cli import main
from cryptoml_pipeline.registry.candidates import save_and_register
from cryptoml_pipeline.registry.db import open_database
from cryptoml_pipeline.registry.model_registry import ModelRegistry
from cryptoml_pipeline_tests.test_trading_realtime import END, Deployed, build_deployed


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    return build_deployed(tmp_path_factory.mktemp("signal_cli"))


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["signal", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _paths(dep: Deployed) -> list[str]:
    return ["--data-dir", str(dep.store.root), "--output-dir", str(dep.output_dir)]


def test_one_symbol_prints_one_json_object(deployed: Deployed, capsys) -> None:
    code, out, err = _run(capsys, "--symbol", "BTC/USDT", *_paths(deployed))
    assert code == 0, err
    record = json.loads(out)
    assert record["symbol"] == "BTC/USDT"
    assert record["bar_open"] == (END - pd.Timedelta(hours=1)).isoformat()
    assert record["signal"] in (-2, -1, 0, 1, 2)
    assert isinstance(record["signal"], int)
    assert 0.0 <= record["confidence"] <= 1.0
    assert isinstance(record["expected_return"], float)
    decision = record["decision"]
    assert decision["action"] in ("enter", "hold")
    assert decision["equity"] == 10_000.0
    assert record["model"] == {
        "version": "signal-test",
        "model_class": "LightGBM",
        "deployed": True,
    }
    assert record["data"] == {"source": "parquet", "synthetic": False}


def test_several_symbols_print_a_list_and_positions_are_reviewed(
    deployed: Deployed, capsys
) -> None:
    argv = ["--symbol", "ETH/USDT,BTC/USDT", "--position", "BTC/USDT=long", "--equity", "5000"]
    code, out, err = _run(capsys, *argv, *_paths(deployed))
    assert code == 0, err
    rows = json.loads(out)
    assert [r["symbol"] for r in rows] == ["ETH/USDT", "BTC/USDT"]
    assert rows[0]["decision"]["action"] in ("enter", "hold")
    assert rows[1]["decision"]["action"] in ("hold", "exit")
    assert rows[1]["decision"]["side"] == "long"
    assert all(r["decision"]["equity"] == 5000.0 for r in rows)
    code, out, _ = _run(capsys, *_paths(deployed))  # no --symbol: every traded symbol
    assert [r["symbol"] for r in json.loads(out)] == ["BTC/USDT", "ETH/USDT"]


def test_nothing_deployed_is_one_line_with_the_candidates_reason(
    deployed: Deployed, tmp_path: Path, capsys
) -> None:
    out_dir = tmp_path / "output"
    registry = ModelRegistry(open_database(out_dir))
    save_and_register(registry, out_dir, deployed.model, {})
    registry.reject("signal-test", "not deployed: no evidence of edge (12 trades < 30)")
    argv = ["--data-dir", str(deployed.store.root), "--output-dir", str(out_dir)]
    code, out, err = _run(capsys, "--symbol", "BTC/USDT", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "no model deployed" in err and "12 trades < 30" in err
    code, out, err = _run(capsys, "--symbol", "BTC/USDT", "--candidate", *argv)
    assert code == 0, err
    assert "NOT deployed" in err and "12 trades < 30" in err
    assert json.loads(out)["model"]["deployed"] is False


def test_no_output_dir_at_all(deployed: Deployed, tmp_path: Path, capsys) -> None:
    argv = ["--data-dir", str(deployed.store.root), "--output-dir", str(tmp_path / "none")]
    code, _, err = _run(capsys, "--symbol", "BTC/USDT", *argv)
    assert code == 2 and "no deployed model and no candidate" in err
    assert not (tmp_path / "none").exists()  # nothing created


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--symbol", "BTCUSDT"], "not a ccxt symbol"),
        (["--symbol", "SOL/USDT"], "does not trade"),
        (["--position", "sideways"], "--position"),
    ],
)
def test_bad_arguments_fail_with_one_line(deployed: Deployed, capsys, argv, message) -> None:
    code, out, err = _run(capsys, *argv, *_paths(deployed))
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
