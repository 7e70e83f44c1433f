"""Throughput benchmark: feature computation, backtest simulation and demo-model training speed.

Runs on the real data in ../shared/data (BTC/ETH/SOL perpetual 1h, the demo window) and writes
``benchmarks/results/throughput.json``. Usage: ``make bench``.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from cryptoml_pipeline.execution.backtest import simulate
from cryptoml_pipeline.features import compute_features, feature_columns
from cryptoml_pipeline.locations import resolve_data_location
from cryptoml_pipeline.market import ParquetStore, load_market_data, resolve_window
from cryptoml_pipeline.modeling.datasets import build_dataset
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.modeling.scaling import fit_scaler
from cryptoml_pipeline.modeling.training import resolve_device, train_model
from cryptoml_pipeline.settings import profile_settings
from cryptoml_pipeline.strategy.rules import rule_decisions

OUT = Path(__file__).parent / "results" / "throughput.json"
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
TRAIN_BATCHES = 30


def _best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    location = resolve_data_location()
    if location.path is None:
        raise SystemExit("benchmark needs real data (../shared/data or --data-dir)")
    settings = profile_settings("demo")
    store = ParquetStore(location.path)
    start, end = resolve_window(store, SYMBOLS, "1h", None, None, settings.data.lookback_days)
    data = load_market_data(store, SYMBOLS, "1h", start, end)
    rows = len(data.candles)

    feat_s = _best_of(lambda: compute_features(data.candles, data.funding, settings.features))
    features = compute_features(data.candles, data.funding, settings.features)
    decisions = rule_decisions(features, settings.rules, timeframe="1h")
    sim_s = _best_of(
        lambda: simulate(
            data.candles,
            data.funding,
            decisions,
            costs=settings.costs,
            risk=settings.risk,
            min_hold_bars=settings.min_hold_bars,
            timeframe="1h",
        ),
    )

    labels = make_labels(data.candles, settings.labels)
    cols = feature_columns(features)
    mask = np.ones(len(features), dtype=bool)
    scaler = fit_scaler(features.loc[mask, cols].to_numpy())
    ds = build_dataset(features, labels, cols, mask, scaler, settings.model.sequence_length)
    training = settings.training.model_copy(
        update={"epochs": 1, "max_batches_per_epoch": TRAIN_BATCHES}
    )
    result = train_model(
        ds, ds, input_dim=len(cols), model_config=settings.model, training_config=training
    )
    samples_per_s = result.history[-1].samples_per_s

    figures = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "device": str(resolve_device("auto")),
        "torch": torch.__version__,
        "data": f"{', '.join(SYMBOLS)} perpetual 1h, [{start.date()}, {end.date()}), {rows} rows",
        "compute_features_s": round(feat_s, 3),
        "compute_features_rows_per_s": round(rows / feat_s),
        "simulate_s": round(sim_s, 3),
        "simulate_bars_per_s": round(rows / sim_s),
        "train_demo_model_samples_per_s": round(samples_per_s),
        "train_demo_model": "d64, 2 layers, 4 heads, ff 128, seq 48, batch 256, "
        f"{TRAIN_BATCHES} batches",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
