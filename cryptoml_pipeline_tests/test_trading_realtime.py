"""Real-time serving: the signal from the universe's causal tail equals the prediction on the full
history, the last closed bar of every needed series (never forward-filled), the model loading
(deployed / candidate / nothing deployed) and the backtest's own decision rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.execution.backtest import simulate
from cryptoml_pipeline.execution.decisions import make_decisions
from cryptoml_pipeline.features.build import compute_features
from cryptoml_pipeline.live import (
    NotDeployedError,
    closed_bars,
    decide,
    load_served,
    signals,
    store_tail,
)
from cryptoml_pipeline.market.layout import perpetual_symbol
from cryptoml_pipeline.market.store import ParquetStore
from cryptoml_pipeline.market.synthetic import synthetic_market
from cryptoml_pipeline.modeling.folds import final_training_fold
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.modeling.models import ZOO, Fitted, FoldInputs
from cryptoml_pipeline.registry.candidates import save_and_register
from cryptoml_pipeline.registry.db import open_database
from cryptoml_pipeline.registry.deployment_store import deploy
from cryptoml_pipeline.registry.model_registry import ModelRegistry
from cryptoml_pipeline.settings import PipelineSettings, profile_settings
from cryptoml_pipeline.strategy.options import simulation_options

TRADED = ("BTC/USDT", "ETH/USDT")
UNIVERSE = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
START = pd.Timestamp("2025-01-01", tz="UTC")
END = pd.Timestamp("2025-03-15", tz="UTC")


@dataclass(frozen=True)
class Deployed:
    output_dir: Path
    store: ParquetStore
    candles: pd.DataFrame
    funding: pd.DataFrame
    model: Fitted
    settings: PipelineSettings


def tiny_settings() -> PipelineSettings:
    base = profile_settings("tiny")
    data = base.data.model_copy(update={"symbols": TRADED, "universe": UNIVERSE})
    return base.model_copy(update={"data": data})


def write_store(root: Path, candles: pd.DataFrame, funding: pd.DataFrame) -> ParquetStore:
    store = ParquetStore(root)
    for symbol, rows in candles.groupby("symbol"):
        instrument = perpetual_symbol(str(symbol)) if symbol in TRADED else str(symbol)
        store.write_candles(rows.drop(columns="symbol"), instrument, "1h")
    for symbol, rows in funding.groupby("symbol"):
        store.write_funding(rows.drop(columns="symbol"), perpetual_symbol(str(symbol)))
    return store


def manifest_fields(settings: PipelineSettings, *, synthetic: bool) -> dict:
    """What ``defs/assets/deployment.candidate_model`` adds to a candidate's manifest."""
    return {
        "version": "signal-test",
        "symbols": list(TRADED),
        "universe": list(UNIVERSE),
        "timeframe": "1h",
        "settings": settings.model_dump(mode="json"),
        "data": {
            "source": "synthetic" if synthetic else "parquet",
            "synthetic": synthetic,
            "train_end": END.isoformat(),
        },
    }


def build_deployed(root: Path) -> Deployed:
    settings = tiny_settings()
    market = synthetic_market(
        TRADED, "1h", START, END, seed=3, universe=UNIVERSE, history=pd.Timedelta(days=20)
    )
    candles, funding = market.candles, market.funding
    features = compute_features(candles, funding, settings.features, timeframe="1h")
    labels = make_labels(candles, settings.target, settings.labels, timeframe="1h")
    fold = final_training_fold(END, settings.walk_forward, timeframe="1h")
    model = ZOO["gbm"].fit_window(FoldInputs(features, labels, fold, settings, "1h", traded=TRADED))
    model.manifest.update(manifest_fields(settings, synthetic=False))
    deploy(root / "output", model, dict(model.manifest))
    store = write_store(root / "data", candles, funding)
    return Deployed(root / "output", store, candles, funding, model, settings)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    return build_deployed(tmp_path_factory.mktemp("realtime"))


def _reference(dep: Deployed, symbol: str, bar: pd.Timestamp) -> pd.Series:
    """The model's prediction at ``bar`` on the features of the WHOLE history."""
    table = compute_features(dep.candles, dep.funding, dep.settings.features, timeframe="1h")
    mask = ((table["symbol"] == symbol) & (table["timestamp"] == bar)).to_numpy()
    zoo = ZOO[dep.model.name]
    return zoo.predict_rows(dep.model, table, None, mask, dep.settings, "1h", tag="ref").iloc[0]


def test_signal_from_the_store_equals_the_full_history_prediction(deployed: Deployed) -> None:
    served = load_served(deployed.output_dir)
    assert served.deployed and served.universe == UNIVERSE
    candles, funding = store_tail(deployed.store, served, ["ETH/USDT"])
    span = candles["timestamp"].max() - candles["timestamp"].min()
    assert span < END - START - pd.Timedelta(days=20)  # only a tail was read
    assert set(candles["symbol"]) == set(UNIVERSE)  # every universe member
    [record] = signals(served, candles, funding, ["ETH/USDT"])
    last = END - pd.Timedelta(hours=1)
    assert record["bar_open"] == last.isoformat()
    ref = _reference(deployed, "ETH/USDT", last)
    assert record["expected_return"] == pytest.approx(ref["expected_return"], abs=1e-9, rel=0)
    assert record["confidence"] == pytest.approx(ref["confidence"], abs=1e-9, rel=0)
    assert record["signal"] == int(ref["signal"])
    assert record["decision"]["action"] in ("enter", "hold")


def test_a_member_missing_the_last_bar_moves_the_signal_back(deployed: Deployed) -> None:
    served = load_served(deployed.output_dir)
    candles, funding = store_tail(deployed.store, served, ["BTC/USDT"])
    last = candles["timestamp"].max()
    late = (candles["symbol"] == "SOL/USDT") & (candles["timestamp"] == last)
    bars = closed_bars(served, candles[~late], funding, ["BTC/USDT"])
    assert bars == {"BTC/USDT": last - pd.Timedelta(hours=1)}  # never filled forward


def test_funding_not_yet_settled_moves_the_signal_back(deployed: Deployed) -> None:
    served = load_served(deployed.output_dir)
    candles, funding = store_tail(deployed.store, served, ["BTC/USDT", "ETH/USDT"])
    last_settlement = funding["timestamp"].max()
    stale = (funding["symbol"] == "BTC/USDT") & (funding["timestamp"] == last_settlement)
    bars = closed_bars(served, candles, funding[~stale], ["BTC/USDT", "ETH/USDT"])
    assert bars["BTC/USDT"] == last_settlement - pd.Timedelta(hours=1)
    assert bars["ETH/USDT"] == candles["timestamp"].max()
    record = signals(served, candles, funding[~stale], ["BTC/USDT"])[0]
    assert record["bar_open"] == bars["BTC/USDT"].isoformat()
    ref = _reference(deployed, "BTC/USDT", bars["BTC/USDT"])
    assert record["expected_return"] == pytest.approx(ref["expected_return"], abs=1e-9, rel=0)


def test_an_untraded_symbol_is_refused(deployed: Deployed) -> None:
    served = load_served(deployed.output_dir)
    with pytest.raises(InputError, match="does not trade"):
        signals(served, deployed.candles, deployed.funding, ["SOL/USDT"])


def test_nothing_deployed_names_the_candidate_and_its_reason(
    deployed: Deployed, tmp_path: Path
) -> None:
    out = tmp_path / "output"
    with pytest.raises(NotDeployedError, match="no deployed model and no candidate"):
        load_served(out)
    registry = ModelRegistry(open_database(out))
    save_and_register(registry, out, deployed.model, {})
    registry.reject("signal-test", "not deployed: no evidence of edge (DSR 0.10 < 0.95)")
    with pytest.raises(NotDeployedError, match=r"signal-test was not deployed: .*DSR 0\.10"):
        load_served(out)
    served = load_served(out, candidate=True)
    assert not served.deployed and "no evidence of edge" in (served.reason or "")
    assert served.symbols == TRADED


@pytest.mark.parametrize(
    ("signal", "confidence", "expected"),
    [(2, 0.9, 0.03), (-1, 0.6, -0.03), (2, 0.9, 0.0001), (1, 0.9, -0.02), (0, 0.9, 0.05)],
)
def test_an_entry_is_what_the_backtest_does_with_the_decision(
    signal: int, confidence: float, expected: float
) -> None:
    """``decide`` enters exactly when the simulator (the backtest's own kernel) trades the same
    decision at the next open, with the simulator's notional."""
    settings = tiny_settings()
    ts = pd.date_range("2025-01-01", periods=3, freq="1h", tz="UTC")
    candles = pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "BTC/USDT",
            "open": [100.0, 101.0, 102.0],
            "high": [101.0, 102.0, 103.0],
            "low": [99.0, 100.5, 101.5],
            "close": [101.0, 102.0, 102.5],
            "volume": 10.0,
        }
    )
    funding = pd.DataFrame({"timestamp": ts[:1], "symbol": "BTC/USDT", "funding_rate": [0.0]})
    vol, atr = 0.6, 0.01
    decision = decide(
        signal=signal,
        confidence=confidence,
        expected_return=expected,
        volatility=vol,
        atr_pct=atr,
        settings=settings,
        timeframe="1h",
    )
    decisions = make_decisions(
        ts[:1].to_series().reset_index(drop=True),
        pd.Series(["BTC/USDT"]),
        [signal],
        [confidence],
        [vol],
        [atr],
        [expected],
    )
    common = simulation_options(settings, "1h")[0] | {"min_hold_bars": 1}
    result = simulate(candles, funding, decisions, **common)
    trades = result.trades
    assert (decision.action == "enter") is (len(trades) == 1)
    if decision.action == "enter":
        trade = trades.iloc[0]
        assert trade["side"] == decision.side
        assert trade["quantity"] * trade["entry_price"] == pytest.approx(decision.notional)


def test_a_held_position_is_reviewed_like_the_kernel() -> None:
    settings = tiny_settings()
    args = {"volatility": 0.6, "atr_pct": 0.01, "settings": settings, "timeframe": "1h"}
    hold = decide(signal=1, confidence=0.4, expected_return=0.0, position=1, **args)
    assert (hold.action, hold.side) == ("hold", "long")  # no cost filter on a hold
    flip = decide(signal=-2, confidence=0.9, expected_return=-0.05, position=1, **args)
    assert (flip.action, flip.flip_to) == ("exit", "short") and flip.notional
    out = decide(signal=-1, confidence=0.9, expected_return=-0.0001, position=1, **args)
    assert (out.action, out.flip_to) == ("exit", None)
