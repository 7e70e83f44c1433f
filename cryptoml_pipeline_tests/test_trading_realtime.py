"""Real-time signal path: the tail feature window equals the full feature build, and the fast
path gives the same signal as the general ``build_features`` path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cryptoml_pipeline.features.build import build_features, feature_columns, warmup_bars
from cryptoml_pipeline.management.deployment_store import deploy
from cryptoml_pipeline.modeling.fold_training import FoldModel, fold_from_dict
from cryptoml_pipeline.modeling.nets.transformer import CryptoTransformer
from cryptoml_pipeline.modeling.scaling import fit_scaler
from cryptoml_pipeline.settings import profile_settings
from cryptoml_pipeline.trading.realtime import (
    TailFeatures,
    latest_signal,
    load_engine,
    tail_bars,
    tail_features,
)

CONFIG = profile_settings("demo").features
SEQ = 16


def synthetic_market(n: int = 1400, seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded 1h candles (with volume) of BTC/USDT and 8h funding over the same span."""
    rng = np.random.default_rng(seed)
    close = 40_000 * np.exp(np.cumsum(rng.normal(0, 0.006, n)))
    open_ = np.concatenate([[40_000.0], close[:-1]])
    span = np.abs(rng.normal(0, 0.003, n)) * close
    ts = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    candles = pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "BTC/USDT",
            "open": open_,
            "high": np.maximum(open_, close) + span,
            "low": np.minimum(open_, close) - span,
            "close": close,
            "volume": rng.lognormal(3.0, 0.5, n),
        }
    )
    settle = pd.date_range(ts[0], ts[-1], freq="8h")
    funding = pd.DataFrame(
        {
            "timestamp": settle,
            "symbol": "BTC/USDT",
            "funding_rate": rng.normal(1e-4, 2e-4, len(settle)),
        }
    )
    return candles, funding


def tail_of(
    candles: pd.DataFrame, funding: pd.DataFrame, n: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The last ``n`` candles and the funding from 8h before them on (as ``read_tail`` does)."""
    tail = candles.tail(n).reset_index(drop=True)
    start = tail["timestamp"].iloc[0] - pd.Timedelta(hours=8)
    return tail, funding.loc[funding["timestamp"] >= start].reset_index(drop=True)


def deploy_tiny_model(
    output_dir: Path, candles: pd.DataFrame, funding: pd.DataFrame, steps: int = 5
) -> list[str]:
    """Train a tiny transformer a few Adam steps on the synthetic features and deploy it."""
    torch.manual_seed(0)
    table = build_features(candles, funding, CONFIG, "1h").table.dropna().reset_index(drop=True)
    cols = feature_columns(table)
    scaler = fit_scaler(table[cols].to_numpy(np.float64))
    model_config = profile_settings("demo").model.model_copy(
        update={
            "d_model": 16,
            "nhead": 2,
            "num_layers": 1,
            "dim_feedforward": 32,
            "head_hidden": 16,
            "sequence_length": SEQ,
        }
    )
    model = CryptoTransformer(len(cols), model_config)
    x = scaler.transform(table[cols].to_numpy(np.float64))
    windows = np.stack([x[i - SEQ : i] for i in range(SEQ, len(x) - 1, 7)])
    ret = table["ret_1"].to_numpy()
    ends = np.arange(SEQ, len(x) - 1, 7)
    labels = np.digitize(ret[ends], np.quantile(ret[ends], [0.2, 0.4, 0.6, 0.8]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        logits = model(torch.as_tensor(windows, dtype=torch.float32))
        loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels))
        loss.backward()
        opt.step()
    model.eval()
    manifest = {
        "fold": {
            "key": "tiny",
            "index": 0,
            "train_start": "2024-01-01T00:00:00+00:00",
            "val_start": "2024-02-01T00:00:00+00:00",
            "test_start": "2024-02-15T00:00:00+00:00",
            "test_end": "2024-03-01T00:00:00+00:00",
        },
        "scaler": scaler.to_dict(),
        "feature_cols": cols,
        "input_dim": len(cols),
        "n_classes": 5,
        "model_config": model_config.model_dump(mode="json"),
        "timeframe": "1h",
        "version": "tiny-test",
    }
    # deploy takes a forecast model (the fold model the trainer returns), not a bare network
    fold_model = FoldModel(
        fold=fold_from_dict(manifest["fold"]),
        model=model,
        scaler=scaler,
        feature_cols=cols,
        manifest=manifest,
    )
    deploy(output_dir, fold_model, manifest)
    return cols


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthetic_market()


def test_tail_window_equals_full_build_last_rows(market) -> None:
    candles, funding = market
    full = build_features(candles, funding, CONFIG, "1h").table
    cols = feature_columns(full)
    assert {"funding_zscore_90", "liq_cascade_proxy", "vol_rank_720", "hour_sin"} <= set(cols)
    n_tail = warmup_bars(CONFIG) + SEQ + 1
    tail, tail_funding = tail_of(candles, funding, n_tail)
    window = TailFeatures(CONFIG, cols).window(tail, tail_funding, SEQ)
    assert window is not None and window.shape == (SEQ, len(cols))
    assert np.isfinite(window).all()
    # the same functions on the same tail: bit-identical to build_features on that tail
    on_tail = build_features(tail, tail_funding, CONFIG, "1h").table
    np.testing.assert_array_equal(window, on_tail[cols].to_numpy(np.float64)[-SEQ:])
    # and equal to the FULL-history build's last rows within the declared warm-up tolerance
    np.testing.assert_allclose(
        window, full[cols].to_numpy(np.float64)[-SEQ:], rtol=1e-7, atol=1e-12
    )


def test_tail_window_subset_of_columns_in_model_order(market) -> None:
    candles, funding = market
    cols = ["session_us", "rsi_14", "funding_rate", "volume_z_168", "hour_cos"]
    tail, tail_funding = tail_of(candles, funding, warmup_bars(CONFIG) + SEQ + 1)
    window = TailFeatures(CONFIG, cols).window(tail, tail_funding, SEQ)
    ref = build_features(tail, tail_funding, CONFIG, "1h").table[cols].to_numpy()[-SEQ:]
    np.testing.assert_array_equal(window, ref)


def test_tail_window_defers_to_general_path(market) -> None:
    candles, funding = market
    tail, tail_funding = tail_of(candles, funding, 300)
    builder = TailFeatures(CONFIG, ["rsi_14", "funding_zscore_90"])
    assert builder.window(tail, tail_funding, SEQ) is not None
    assert builder.window(tail.iloc[::-1], tail_funding, SEQ) is None  # unsorted rows
    assert builder.window(pd.concat([tail, tail.tail(1)]), tail_funding, SEQ) is None  # dup
    two = pd.concat([tail, tail.assign(symbol="ETH/USDT")], ignore_index=True)
    assert builder.window(two, tail_funding, SEQ) is None  # several symbols
    assert builder.window(tail, None, SEQ) is None  # needs funding, none given
    micro = TailFeatures(CONFIG, ["volume_z_168"])
    assert micro.window(tail.drop(columns="volume"), None, SEQ) is None  # needs volume
    assert not TailFeatures(CONFIG, ["corr_BTC_24"]).supported  # cross-asset: general path


def test_funding_settlements_cached_until_they_change(market) -> None:
    candles, funding = market
    tail, tail_funding = tail_of(candles, funding, 300)
    builder = TailFeatures(CONFIG, ["funding_zscore_90"])
    builder.window(tail, tail_funding, SEQ)
    first = builder._settled
    builder.window(tail, tail_funding.copy(), SEQ)
    assert builder._settled is first  # same settlements: reused
    changed = tail_funding.assign(funding_rate=tail_funding["funding_rate"] * 2)
    out = builder.window(tail, changed, SEQ)
    assert builder._settled is not first
    ref = build_features(tail, changed, CONFIG, "1h").table[["funding_zscore_90"]]
    np.testing.assert_array_equal(out, ref.to_numpy()[-SEQ:])


def test_latest_signal_tail_path_equals_general_path(market, tmp_path: Path) -> None:
    candles, funding = market
    deploy_tiny_model(tmp_path, candles.head(1000), funding)
    loaded = load_engine(tmp_path)
    assert loaded.sequence_length == SEQ
    n_tail = tail_bars(loaded, CONFIG)
    for end in (len(candles) - 3, len(candles)):  # two different latest bars
        tail, tail_funding = tail_of(candles.head(end), funding, n_tail)
        fast = latest_signal(loaded, tail, tail_funding, CONFIG)
        general = latest_signal(loaded, tail, tail_funding, CONFIG, tail_path=False)
        assert fast == general
        assert fast["bar_open"] == tail["timestamp"].iloc[-1].isoformat()
        assert fast["signal"] in (-2, -1, 0, 1, 2)
        assert sum(fast["probabilities"]) == pytest.approx(1.0)
    assert tail_features(loaded, CONFIG) is tail_features(loaded, CONFIG)  # cached per model
