"""The shuffled-label control has power: with a planted signal the real model's rank IC lies
above the control's 95 % interval; on noise both intervals cover zero. And a near-flat control
is quantile-mapped onto the real model's forecast distribution (ranks kept)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryptoml_pipeline.evaluation.shuffled_control import (
    quantile_mapped_predictions,
    shuffled_power,
)


def _frames(seed: int, strength: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2025-01-01", periods=24 * 120, freq="h", tz="UTC")
    rows = []
    for sym in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
        realised = rng.normal(0, 0.01, len(ts))
        rows.append(pd.DataFrame({"timestamp": ts, "symbol": sym, "realised_return": realised}))
    labels = pd.concat(rows, ignore_index=True)
    noise = rng.normal(0, 0.01, len(labels))
    real = labels[["timestamp", "symbol"]].assign(
        fold="f1",
        expected_return=strength * labels["realised_return"] + noise,
        confidence=0.5,
        signal=1,
    )
    control = labels[["timestamp", "symbol"]].assign(
        fold="f1",
        expected_return=rng.normal(0, 1e-5, len(labels)),  # near-flat, no skill
        confidence=0.01,
        signal=0,
    )
    return real, control, labels


def test_real_model_above_the_controls_interval_with_a_planted_signal() -> None:
    real, control, labels = _frames(1, strength=0.3)
    out = shuffled_power(
        control, real, labels, n_trades=10, quantile_mapped=False, model="gbm", seed=0
    )
    lo, hi = out["rank_ic_ci"]
    assert lo < 0 < hi  # the control has no skill
    assert out["real_rank_ic"] > hi and out["real_above_control_interval"]
    assert isinstance(out["n_trades"], int)


def test_on_noise_both_intervals_cover_zero() -> None:
    covered = 0
    for seed in range(10):
        real, control, labels = _frames(seed, strength=0.0)
        out = shuffled_power(
            control, real, labels, n_trades=0, quantile_mapped=False, model="gbm", seed=seed
        )
        lo, hi = out["rank_ic_ci"]
        rlo, rhi = out["real_rank_ic_ci"]
        covered += (lo < 0 < hi) and (rlo < 0 < rhi)
    assert covered >= 8


def test_quantile_mapping_takes_the_real_distribution_and_keeps_ranks() -> None:
    real, control, _ = _frames(2, strength=0.3)
    mapped = quantile_mapped_predictions(control, real)
    qs = [0.05, 0.25, 0.5, 0.75, 0.95]
    np.testing.assert_allclose(
        np.quantile(mapped["expected_return"], qs),
        np.quantile(real["expected_return"], qs),
        atol=0.05 * real["expected_return"].std(),
    )
    order_before = control["expected_return"].rank().to_numpy()
    order_after = mapped["expected_return"].rank().to_numpy()
    np.testing.assert_array_equal(order_before, order_after)
    assert (np.sign(mapped["signal"]) == np.sign(mapped["expected_return"])).all()
