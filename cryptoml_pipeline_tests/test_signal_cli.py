"""``cryptoml signal``: the CLI path end to end on a parquet data dir and a tiny deployed model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cryptoml_pipeline.cli import main
from cryptoml_pipeline.market.store import ParquetStore
from cryptoml_pipeline.settings import profile_settings
from cryptoml_pipeline.trading.realtime import latest_signal, load_engine, tail_bars
from cryptoml_pipeline_tests.test_trading_realtime import deploy_tiny_model, synthetic_market


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("signal_cli")
    candles, funding = synthetic_market(n=1100, seed=11)
    store = ParquetStore(root / "data")
    store.write_candles(candles.drop(columns="symbol"), "BTC/USDT:USDT", "1h")
    store.write_funding(funding.drop(columns="symbol"), "BTC/USDT:USDT")
    deploy_tiny_model(root / "output", candles.head(900), funding)
    return root / "data", root / "output", candles


def test_signal_cli_prints_the_deployed_models_signal(deployed, capsys) -> None:
    data_dir, output_dir, candles = deployed
    argv = ["signal", "--symbol", "BTC/USDT", "--data-dir", str(data_dir)]
    assert main([*argv, "--output-dir", str(output_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["symbol"] == "BTC/USDT"
    assert out["timeframe"] == "1h"
    assert out["model_version"] == "tiny-test"
    assert out["bar_open"] == candles["timestamp"].iloc[-1].isoformat()  # latest closed bar
    assert out["signal"] in (-2, -1, 0, 1, 2)
    assert 0.0 <= out["confidence"] <= 1.0
    assert sum(out["probabilities"]) == pytest.approx(1.0)
    assert set(out["individual_predictions"]) == {"deployed"}
    # the same as the general build_features path on the whole stored history
    config = profile_settings("demo").features
    loaded = load_engine(output_dir)
    store = ParquetStore(data_dir)
    history = store.read_candles("BTC/USDT:USDT", "1h", as_symbol="BTC/USDT")
    funding = store.read_funding("BTC/USDT:USDT", as_symbol="BTC/USDT")
    assert len(history) > tail_bars(loaded, config)  # the CLI read only a tail
    ref = latest_signal(loaded, history, funding, config, tail_path=False)
    assert out["signal"] == ref["signal"]
    assert out["probabilities"] == pytest.approx(ref["probabilities"], rel=1e-6, abs=1e-9)


def test_signal_cli_without_deployed_model_fails_with_one_line(
    deployed, tmp_path: Path, capsys
) -> None:
    data_dir, _, _ = deployed
    argv = ["signal", "--symbol", "BTC/USDT", "--data-dir", str(data_dir)]
    code = main([*argv, "--output-dir", str(tmp_path / "empty")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "no deployed model" in err and len(err.splitlines()) == 1


def test_signal_cli_rejects_a_non_ccxt_symbol(deployed, capsys) -> None:
    data_dir, output_dir, _ = deployed
    argv = ["signal", "--symbol", "BTCUSDT", "--data-dir", str(data_dir)]
    assert main([*argv, "--output-dir", str(output_dir)]) == 2
    assert "not a ccxt symbol" in capsys.readouterr().err
