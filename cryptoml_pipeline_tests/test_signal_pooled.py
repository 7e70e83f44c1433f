"""A served model that reads the pooled family — perpetual-spot basis included — gets its
signal from the stored tail: the traded rows carry their stored spot close, the fast feature
path computes the family at the read rows, and the prediction equals the model's prediction on
the WHOLE history's batch table (to the fast path's 1e-9)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.cli import main
from cryptoml_pipeline.features.build import compute_features
from cryptoml_pipeline.live import load_served, signals, store_tail
from cryptoml_pipeline.live.market_tail import needs_spot
from cryptoml_pipeline.live.paper import orders_frame
from cryptoml_pipeline.live.service import LiveOptions, LiveService
from cryptoml_pipeline.market.store import ParquetStore
from cryptoml_pipeline.market.synthetic import synthetic_market
from cryptoml_pipeline.modeling.folds import final_training_fold
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.modeling.models import ZOO, FoldInputs
from cryptoml_pipeline.registry.db import open_database
from cryptoml_pipeline.registry.deployment_store import deploy
from cryptoml_pipeline_tests.exchange_sim import ExchangeSim, StepClock
from cryptoml_pipeline_tests.test_trading_realtime import (
    END,
    START,
    TRADED,
    UNIVERSE,
    manifest_fields,
    tiny_settings,
    write_store,
)


def _spot(candles: pd.DataFrame) -> pd.DataFrame:
    """Spot candles of the traded symbols: the perpetual's scaled by a seeded basis, the last
    two days of BTC's missing (the store has no spot bar there)."""
    rng = np.random.default_rng(9)
    rows = candles[candles["symbol"].isin(TRADED)].reset_index(drop=True)
    scale = 1 + rng.normal(0, 5e-4, len(rows))
    spot = rows.assign(**{c: rows[c] * scale for c in ("open", "close")})
    spot["high"] = np.maximum(rows["high"] * scale, spot[["open", "close"]].max(axis=1))
    spot["low"] = np.minimum(rows["low"] * scale, spot[["open", "close"]].min(axis=1))
    cut = (spot["symbol"] == "BTC/USDT") & (spot["timestamp"] >= END - pd.Timedelta(days=2))
    return spot.loc[~cut].reset_index(drop=True)


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pooled")
    base = tiny_settings()
    feats = base.features.model_copy(
        update={
            "pooled": base.features.pooled.model_copy(
                update={"enabled": True, "exclude_raw_scale": True}
            )
        }
    )
    settings = base.model_copy(update={"features": feats})
    market = synthetic_market(
        TRADED, "1h", START, END, seed=3, universe=UNIVERSE, history=pd.Timedelta(days=40)
    )
    candles, funding = market.candles, market.funding
    spot = _spot(candles)
    spot_closes = spot[["timestamp", "symbol", "close"]]
    features = compute_features(candles, funding, feats, timeframe="1h", spot=spot_closes)
    labels = make_labels(candles, settings.target, settings.labels, timeframe="1h")
    fold = final_training_fold(END, settings.walk_forward, timeframe="1h")
    model = ZOO["gbm"].fit_window(FoldInputs(features, labels, fold, settings, "1h", traded=TRADED))
    model.manifest.update(manifest_fields(settings, synthetic=False))
    deploy(root / "output", model, dict(model.manifest))
    store = write_store(root / "data", candles, funding)
    for symbol, rows in spot.groupby("symbol"):
        store.write_candles(rows.drop(columns="symbol"), str(symbol), "1h")
    return root, model, settings, features


@pytest.mark.parametrize("symbol", ["ETH/USDT", "BTC/USDT"])
def test_a_pooled_model_serves_the_prediction_of_the_whole_history(pooled, symbol: str) -> None:
    root, model, settings, table = pooled
    assert any(c.startswith("pool_basis") for c in model.feature_cols)
    assert not any(c.startswith("ret_") for c in model.feature_cols)  # raw scale excluded
    served = load_served(root / "output")
    assert needs_spot(served)
    candles, funding = store_tail(ParquetStore(root / "data"), served, [symbol])
    traded = candles["symbol"].isin(TRADED)
    assert candles.loc[~traded, "spot_close"].isna().all()
    assert candles.loc[candles["symbol"] == "ETH/USDT", "spot_close"].notna().all()
    [record] = signals(served, candles, funding, [symbol])
    last = END - pd.Timedelta(hours=1)
    assert record["bar_open"] == last.isoformat()
    mask = ((table["symbol"] == symbol) & (table["timestamp"] == last)).to_numpy()
    ref = ZOO["gbm"].predict_rows(model, table, None, mask, settings, "1h", tag="ref").iloc[0]
    assert record["expected_return"] == pytest.approx(ref["expected_return"], abs=1e-9, rel=0)
    assert record["confidence"] == pytest.approx(ref["confidence"], abs=1e-9, rel=0)
    if symbol == "BTC/USDT":  # no spot bar at the signal bar: no basis, as in the batch table
        row = table[mask]
        assert row["pool_basis"].isna().all() and row["pool_basis_z_168"].isna().all()


def test_the_live_service_polls_spot_klines_for_the_basis_through_ccxt(pooled) -> None:
    """``cryptoml live`` against the exchange simulator (ccxt's client, offline) with a model
    that reads the basis: the spot klines come from the spot API (``/api/v3/klines``), a
    forming spot bar is never taken, and the signal at each processed bar equals the model's
    prediction on the whole history's batch table."""
    root, model, settings, table = pooled
    store = ParquetStore(root / "data")
    candles = pd.concat(
        [
            store.read_candles(s if s not in TRADED else f"{s}:USDT", "1h").assign(symbol=s)
            for s in UNIVERSE
        ],
        ignore_index=True,
    )
    spot = pd.concat(
        [store.read_candles(s, "1h").assign(symbol=s) for s in TRADED], ignore_index=True
    )
    funding = pd.concat(
        [store.read_funding(f"{s}:USDT").assign(symbol=s) for s in TRADED], ignore_index=True
    )
    t0 = END - pd.Timedelta(hours=6) + pd.Timedelta(minutes=10)
    clock = StepClock(t0)
    seen: list[tuple[str, dict]] = []

    def tick() -> pd.Timestamp:
        clock.advance(20 * 60_000)
        if service.signals:
            seen.extend((s, dict(r)) for s, r in service.signals.items())
        if clock.now() >= END + pd.Timedelta(minutes=30):
            service.stop()
        return clock.now()

    sim = ExchangeSim(candles, funding, timeframe_ms=3_600_000, clock=clock, spot=spot).start()
    try:
        service = LiveService(
            LiveOptions(
                output_dir=root / "output",
                data_dir=root / "data",
                run_name="pooled-poll",
                poll_seconds=0.001,
                exchange_url=sim.url,
                bar_deadline=pd.Timedelta(minutes=30),
                clock=tick,
            )
        )
        assert service.run() == 0
    finally:
        sim.stop()
    assert ("GET", "/api/v3/klines") in sim.requests
    eth = {r["bar_open"]: r for s, r in seen if s == "ETH/USDT"}
    assert len(eth) >= 4
    for bar_open, record in eth.items():
        bar = pd.Timestamp(bar_open)
        mask = ((table["symbol"] == "ETH/USDT") & (table["timestamp"] == bar)).to_numpy()
        ref = ZOO["gbm"].predict_rows(model, table, None, mask, settings, "1h", tag="r").iloc[0]
        assert record["expected_return"] == pytest.approx(ref["expected_return"], abs=1e-9)


def test_a_replay_of_the_pooled_model_equals_the_backtest(pooled, capsys) -> None:
    """``cryptoml live --replay`` with the basis-reading model, then ``cryptoml parity``: the
    batch pipeline (features with the stored spot closes, the model, the backtest) gives the
    account's fills and equity exactly."""
    root, model, settings, _ = pooled
    risk = settings.risk.model_copy(update={"edge_cost_multiple": None})
    traded = settings.model_copy(update={"risk": risk})
    manifest = dict(model.manifest) | {
        "version": "pooled-often",
        "settings": traded.model_dump(mode="json"),
    }
    deploy(root / "output", model, manifest)
    start, end = (END - pd.Timedelta(days=3)).isoformat(), END.isoformat()
    common = ["--output-dir", str(root / "output"), "--run-name", "pooled-replay"]
    replay = ["live", "--replay", start, end, "--exit-at-end", "--port", "0"]
    code = main([*replay, "--data-dir", str(root / "data"), *common])
    assert code == 0
    capsys.readouterr()
    code = main(["parity", *common[:2], "--run-name", "pooled-replay"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert result["bars"] == 72 and result["trades_equal"] is True
    orders = orders_frame(open_database(root / "output"), "pooled-replay")
    assert len(orders) >= 2  # it traded
