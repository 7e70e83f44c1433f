"""The signal's prediction and decision (``serving.signal.forecast_rows``: the LightGBM model on
the feature rows' arrays, no DataFrame: ``ZOO["gbm"].predict_arrays``) equal the batch path's:
``ZOO["gbm"].predict_rows`` on the feature table (``predict_gbm_rows``: ``design_matrix`` +
``assemble``) and the backtest's
decision on it, exactly, for single-symbol and batched calls at several bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cryptoml_pipeline.execution.decisions import annualise_volatility
from cryptoml_pipeline.features.build import compute_features
from cryptoml_pipeline.live import closed_bars, load_served, signals, tail_span
from cryptoml_pipeline.live.decision import decide
from cryptoml_pipeline.live.signal import signal_table
from cryptoml_pipeline.modeling.models import ZOO
from cryptoml_pipeline.modeling.predictions import PROB_COLUMNS
from cryptoml_pipeline_tests.test_trading_realtime import END, TRADED, Deployed, build_deployed

BAR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    return build_deployed(tmp_path_factory.mktemp("signal_prediction"))


def _batch_records(served, candles, funding, symbols, position) -> list[dict]:
    """The previous signal path: the feature table, ``predict_rows``, the decision."""
    bars = closed_bars(served, candles, funding, symbols)
    table = signal_table(served, candles, funding, bars, symbols)
    key = table["symbol"].astype(str).to_numpy()
    mask = np.zeros(len(table), dtype=bool)
    for s in symbols:
        mask |= (key == s) & (table["timestamp"] == bars[s]).to_numpy()
    settings, tf = served.settings, served.timeframe
    preds = served.zoo.predict_rows(served.model, table, None, mask, settings, tf, tag="signal")
    out = []
    for s in symbols:
        p = preds[preds["symbol"] == s].iloc[0]
        row = table.loc[mask & (key == s)].iloc[0]
        vol = float(
            annualise_volatility(np.array([row[f"rv_{settings.risk.volatility_window}"]]), tf)[0]
        )
        atr = float(row[f"atr_pct_{settings.risk.atr_period}"])
        decision = decide(
            signal=int(p["signal"]),
            confidence=float(p["confidence"]),
            expected_return=float(p["expected_return"]),
            volatility=vol,
            atr_pct=atr,
            settings=settings,
            timeframe=tf,
            position=position.get(s, 0),
        )
        out.append(
            {
                "symbol": s,
                "bar_open": bars[s].isoformat(),
                "signal": int(p["signal"]),
                "confidence": float(p["confidence"]),
                "expected_return": float(p["expected_return"]),
                "probabilities": [float(p[c]) for c in PROB_COLUMNS],
                "decision": decision.as_dict(),
                "volatility": vol,
                "atr_pct": atr,
            }
        )
    return out


def _same(a: float | None, b: float) -> bool:
    return (a is None and not np.isfinite(b)) or a == b


@pytest.mark.parametrize("back", [0, 3, 17])
def test_signal_prediction_and_decision_equal_the_batch_path(deployed: Deployed, back: int) -> None:
    served = load_served(deployed.output_dir)
    end = END - BAR - back * BAR
    c = deployed.candles
    c = c[(c["timestamp"] >= end + BAR - tail_span(served)) & (c["timestamp"] <= end)]
    f = deployed.funding[deployed.funding["timestamp"] <= end]
    position = {TRADED[0]: 1} if back == 3 else {}
    calls = [list(TRADED), *([s] for s in TRADED)]
    for symbols in calls:
        fast = signals(served, c, f, symbols, position=position)
        batch = _batch_records(served, c, f, symbols, position)
        assert [r["symbol"] for r in fast] == symbols
        for got, ref in zip(fast, batch, strict=True):
            assert got["bar_open"] == ref["bar_open"] == end.isoformat()
            assert got["signal"] == ref["signal"]
            assert got["confidence"] == ref["confidence"]
            assert got["expected_return"] == ref["expected_return"]
            probs = [got["probabilities"][c] for c in PROB_COLUMNS]
            assert all(_same(a, b) for a, b in zip(probs, ref["probabilities"], strict=True))
            assert got["decision"] == ref["decision"]
            assert _same(got["volatility"], ref["volatility"])
            assert _same(got["atr_pct"], ref["atr_pct"])


def test_predict_arrays_equal_predict_rows_on_a_whole_table(deployed: Deployed) -> None:
    """Lags across symbol boundaries and gaps, unusable rows, any selection of rows."""
    model, settings = deployed.model, deployed.settings
    table = compute_features(deployed.candles, deployed.funding, settings.features, timeframe="1h")
    table = table.drop(index=table.index[5::97]).reset_index(drop=True)  # gaps: lags become NaN
    rng = np.random.default_rng(0)
    mask = rng.random(len(table)) < 0.3
    zoo = ZOO[model.name]
    assert zoo.name == "gbm"
    ref = zoo.predict_rows(model, table, None, mask, settings, "1h", tag="t")
    columns = {c: table[c].to_numpy(dtype=np.float64) for c in model.feature_cols}
    stamps = table["timestamp"].astype("datetime64[ns, UTC]").array.asi8
    sym = table["symbol"].astype(str).to_numpy(dtype=object)
    fast = zoo.predict_arrays(model, columns, stamps, sym, mask, "1h")
    assert fast is not None
    rows, er, conf, probs = fast
    assert len(rows) == len(ref) > 0
    assert (stamps[rows] == ref["timestamp"].array.asi8).all()
    assert (sym[rows] == ref["symbol"].to_numpy()).all()
    np.testing.assert_array_equal(er, ref["expected_return"].to_numpy())
    np.testing.assert_array_equal(np.clip(conf, 0, 1), ref["confidence"].to_numpy())
    if probs is not None:
        np.testing.assert_array_equal(probs, ref[PROB_COLUMNS].to_numpy())
