"""Multi-timeframe windows are causal (only closed bars) and feed the spec's MultiScaleLSTMCNN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.labels import classify_returns
from cryptoml_pipeline.modeling.multiscale import (
    SCALE_FEATURES,
    build_multiscale_dataset,
    fit_scale_scalers,
    last_closed_index,
    scale_bar_features,
)
from cryptoml_pipeline.modeling.nets import MultiScaleLSTMCNN, regression_to_signal
from cryptoml_pipeline.modeling.training import train_model
from cryptoml_pipeline.settings import ModelConfig, TrainingConfig

START = pd.Timestamp("2025-03-01", tz="UTC")
END = START + pd.Timedelta(days=4)
SYMBOLS = ("BTC/USDT", "ETH/USDT")
TIMEFRAMES = {"5m": "5m", "15m": "15m", "1h": "1h"}
L = 8


def _candles(shared_data, timeframe: str) -> pd.DataFrame:
    parts = []
    for symbol in SYMBOLS:
        path = shared_data / "market" / f"{symbol.replace('/', '_')}-{timeframe}.parquet"
        frame = pd.read_parquet(path)
        parts.append(frame[(frame["timestamp"] >= START) & (frame["timestamp"] < END)])
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def scales(shared_data):
    return {tf: scale_bar_features(_candles(shared_data, tf), tf) for tf in TIMEFRAMES}


def _decisions(scales) -> pd.DataFrame:
    return scales["1h"][["timestamp", "symbol"]].reset_index(drop=True)


def test_last_closed_index_sees_only_closed_bars():
    hour, q = 3600 * 10**9, 900 * 10**9
    opens = np.arange(0, 8 * q, q)  # 15m bars from 00:00
    # decision bar opened 01:00 closes 02:00 -> the 15m bar opened 01:45 is the last closed one
    assert last_closed_index(np.array([2 * hour]), opens, q)[0] == 7
    # a 4h bar opened 00:00 has not closed at 02:00
    assert last_closed_index(np.array([2 * hour]), np.array([0]), 4 * hour)[0] == -1


def test_windows_end_at_the_last_closed_bar_and_ignore_the_future(scales):
    decisions = _decisions(scales)
    mask = np.ones(len(decisions), dtype=bool)
    scalers = fit_scale_scalers(scales, TIMEFRAMES, START + pd.Timedelta(days=2))
    ds = build_multiscale_dataset(decisions, mask, None, "1h", scales, TIMEFRAMES, scalers, L)
    assert len(ds) > 0
    names = list(scales)
    k = len(ds) // 2
    row = ds.rows[k]
    close = decisions["timestamp"].iloc[row] + pd.Timedelta(hours=1)
    for s, name in enumerate(names):
        end_bar = scales[name].iloc[ds.ends[k, s]]
        bar = pd.Timedelta(name)
        assert end_bar["symbol"] == decisions["symbol"].iloc[row]
        assert end_bar["timestamp"] + bar <= close < end_bar["timestamp"] + 2 * bar
    # recompute with every bar that closes after the decision removed: same input tensor
    truncated = {
        n: f[f["timestamp"] + pd.Timedelta(n) <= close].reset_index(drop=True)
        for n, f in scales.items()
    }
    ds_cut = build_multiscale_dataset(
        decisions, decisions.index.to_numpy() == row, None, "1h", truncated, TIMEFRAMES, scalers, L
    )
    assert list(ds_cut.rows) == [row]
    torch.testing.assert_close(ds_cut[0][0], ds[k][0], rtol=0, atol=0)


def test_no_sample_without_every_scale(scales):
    decisions = _decisions(scales)
    partial = dict(scales)
    partial["5m"] = scales["5m"][scales["5m"]["timestamp"] >= START + pd.Timedelta(days=2)]
    partial["5m"] = partial["5m"].reset_index(drop=True)
    scalers = fit_scale_scalers(scales, TIMEFRAMES, START + pd.Timedelta(days=2))
    ds = build_multiscale_dataset(
        decisions, np.ones(len(decisions), bool), None, "1h", partial, TIMEFRAMES, scalers, L
    )
    first = decisions["timestamp"].iloc[ds.rows].min()
    assert first >= START + pd.Timedelta(days=2)


def test_scalers_use_only_bars_closed_before_the_cut(scales):
    cut = START + pd.Timedelta(days=1)
    a = fit_scale_scalers(scales, TIMEFRAMES, cut)
    changed = {n: f.copy() for n, f in scales.items()}
    for f in changed.values():
        f.loc[f["timestamp"] >= cut, SCALE_FEATURES] *= 100.0  # later bars must not matter
    b = fit_scale_scalers(changed, TIMEFRAMES, cut)
    for name in scales:
        np.testing.assert_array_equal(a[name].mean, b[name].mean)
    with pytest.raises(InputError, match="no bar closed"):
        fit_scale_scalers(scales, TIMEFRAMES, START)


def test_network_shapes_and_regression_thresholds():
    net = MultiScaleLSTMCNN(4, 3, head="classification")
    assert net(torch.randn(5, 3, L, 4)).shape == (5, 5)
    reg = MultiScaleLSTMCNN(4, 3, head="regression")
    assert reg(torch.randn(5, 3, L, 4)).shape == (5,)
    with pytest.raises(ValueError, match="expected"):
        net(torch.randn(5, 2, L, 4))
    r = np.array([-0.03, -0.01, 0.0, 0.006, 0.02, np.nan])
    expected = classify_returns(r, weak_threshold=0.005, strong_threshold=0.015)
    np.testing.assert_array_equal(regression_to_signal(r, 0.005, 0.015), expected)


def test_trains_with_the_shared_trainer(scales):
    decisions = _decisions(scales)
    # planted target: the sign of the window's last 15m bar body -> learnable from the inputs
    scalers = fit_scale_scalers(scales, TIMEFRAMES, START + pd.Timedelta(days=3))
    probe = build_multiscale_dataset(
        decisions, np.ones(len(decisions), bool), None, "1h", scales, TIMEFRAMES, scalers, L
    )
    labels = np.full(len(decisions), np.nan)
    last_15m = scales["15m"]["body"].to_numpy()[probe.ends[:, 1]]
    labels[probe.rows] = np.where(last_15m > 0, 2.0, -2.0)
    fit = np.zeros(len(decisions), bool)
    fit[probe.rows[: len(probe) * 3 // 4]] = True
    val = np.zeros(len(decisions), bool)
    val[probe.rows[len(probe) * 3 // 4 :]] = True
    args = ("1h", scales, TIMEFRAMES, scalers, L)
    train_ds = build_multiscale_dataset(decisions, fit, labels, *args)
    val_ds = build_multiscale_dataset(decisions, val, labels, *args)
    result = train_model(
        train_ds,
        val_ds,
        input_dim=len(SCALE_FEATURES),
        model_config=ModelConfig(sequence_length=L),
        training_config=TrainingConfig(
            batch_size=16,
            epochs=8,
            early_stopping_patience=8,
            t0=4,
            device="cpu",
            num_threads=1,
            learning_rate=1e-2,
            class_weights=None,
        ),
        model_factory=lambda dim, k: MultiScaleLSTMCNN(
            dim, len(TIMEFRAMES), conv_channels=8, lstm_hidden=16, attention_heads=2, n_classes=k
        ),
    )
    assert result.history[-1].val_accuracy is not None
    assert max(h.val_accuracy for h in result.history) > 0.7  # chance: ~0.5


def test_regression_classes_use_the_label_cut_points():
    from cryptoml_pipeline.modeling.training import RegressionTarget

    target = RegressionTarget(0.005, 0.015)
    r = np.array([-0.03, -0.015, -0.01, -0.005, 0.0, 0.005, 0.0051, 0.015, 0.02])
    got = target.classes(torch.tensor(r / 0.015)).numpy()
    expected = classify_returns(r, weak_threshold=0.005, strong_threshold=0.015) + 2
    np.testing.assert_array_equal(got, expected)


def test_regression_head_learns_a_planted_return(scales):
    from cryptoml_pipeline.modeling.training import RegressionTarget

    decisions = _decisions(scales)
    scalers = fit_scale_scalers(scales, TIMEFRAMES, START + pd.Timedelta(days=3))
    probe = build_multiscale_dataset(
        decisions, np.ones(len(decisions), bool), None, "1h", scales, TIMEFRAMES, scalers, L
    )
    body = scales["15m"]["body"].to_numpy()[probe.ends[:, 1]]
    returns = np.full(len(decisions), np.nan)
    returns[probe.rows] = np.where(body > 0, 2.0, -2.0)  # +-2 strong thresholds
    labels = np.where(np.isfinite(returns), np.sign(returns) * 2, np.nan)
    split = probe.rows[len(probe) * 3 // 4]
    fit = np.zeros(len(decisions), bool)
    fit[probe.rows[probe.rows < split]] = True
    val = np.zeros(len(decisions), bool)
    val[probe.rows[probe.rows >= split]] = True
    args = ("1h", scales, TIMEFRAMES, scalers, L)
    train_ds = build_multiscale_dataset(decisions, fit, labels, *args, returns=returns)
    val_ds = build_multiscale_dataset(decisions, val, labels, *args, returns=returns)
    assert train_ds[0][1].dtype == torch.float32
    result = train_model(
        train_ds,
        val_ds,
        input_dim=len(SCALE_FEATURES),
        model_config=ModelConfig(sequence_length=L),
        training_config=TrainingConfig(
            batch_size=16,
            epochs=12,
            early_stopping_patience=12,
            t0=4,
            device="cpu",
            num_threads=1,
            learning_rate=1e-2,
        ),
        model_factory=lambda dim, k: MultiScaleLSTMCNN(
            dim,
            len(TIMEFRAMES),
            conv_channels=8,
            lstm_hidden=16,
            attention_heads=2,
            head="regression",
        ),
        regression=RegressionTarget(0.005, 0.015),
    )
    assert max(h.val_accuracy for h in result.history) > 0.7  # chance ~0.5
