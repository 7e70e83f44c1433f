"""Latency of ``cryptoml signal`` on the default deployment: the demo profile's LightGBM strategy
model pooled over the default universe (every spot series of ../shared/data in the window), the
default traded symbols (every perpetual with funding). The model is trained here on the final
training fold as ``candidate_model`` trains it and deployed with ``deployment_store.deploy``.

Timed (data already read into memory, as in a live loop that appends each new bar): one
``serving.signals`` call = the last closed bar (``closed_bars``) + the signal's feature rows
(``signal_table``: per-symbol families of the requested traded symbols on the causal tail,
cross-asset values at the read rows from every member's closes) + the model's prediction
(``signal.forecast_rows``: LightGBM on the rows' arrays, equal to ``predict_rows``) + the
backtest's decision. Each call sees a NEW bar (the data ends one bar later per call), so nothing
can come from a cache of the previous call. Reported per symbol: one symbol per call, and all
traded symbols in one call divided by their number, median and p99; ``breakdown_one_symbol_ms``
splits single-symbol calls into closed bars / features / model / decision. The store read of the
tail (``serving.store_tail``, the CLI's per-call parquet read) is NOT in those figures and is
timed separately. ``reference_full_table_path`` times, under the same load, the previous path
(``compute_features`` over every universe member on the tail, then the same model and decision).
The 1-minute load average is recorded: on the shared 2-core machine other jobs inflate every
figure. Writes benchmarks/results/signal_latency.json.

``--baseline REV`` also times, in the SAME run and interleaved bar by bar with the current code
(same data, same bars, same load; which path goes first alternates every bar), the
``serving.signals`` of git revision ``REV``: its ``cryptoml_pipeline`` package is extracted with
``git archive`` into a temporary directory as ``cryptoml_pipeline_baseline`` and serves the same
deployment. Each path makes all its calls of a bar in one block: alternating call by call
inflated the current path's single-symbol figure under load (~2x at load 3.6 against ~7.7 ms
without the baseline: the baseline's multi-threaded LightGBM call and its second copy of the
code and data just before every call). Its figures go to ``baseline`` in the results.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cryptoml_pipeline.execution.decisions import annualise_volatility
from cryptoml_pipeline.features.build import compute_features
from cryptoml_pipeline.live import closed_bars, load_served, signals, store_tail, tail_span
from cryptoml_pipeline.live.decision import decide
from cryptoml_pipeline.live.loader import ServedModel
from cryptoml_pipeline.live.signal import forecast_rows, signal_arrays, tail_features
from cryptoml_pipeline.market.source import (
    load_market_data,
    resolve_symbols,
    universe_in_window,
)
from cryptoml_pipeline.market.store import ParquetStore
from cryptoml_pipeline.modeling.folds import final_training_fold
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.modeling.models import ZOO, FoldInputs
from cryptoml_pipeline.registry.deployment_store import deploy
from cryptoml_pipeline.settings import profile_settings

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "signal_latency.json"
N_CALLS, N_WARM, N_REFERENCE = 60, 3, 15
ROOT = Path(__file__).resolve().parents[1]
BEFORE = {  # benchmarks/results/signal_latency.json before the fast path (commit 86ddbbb)
    "per_symbol_one_call_each": {"median_ms": 195.68, "p99_ms": 306.32},
    "per_symbol_all_traded_in_one_call": {"median_ms": 51.39, "p99_ms": 76.47},
}


def _stats(ms: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(ms),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "calls": len(ms),
    }


def _breakdown(
    served: ServedModel, c: pd.DataFrame, f: pd.DataFrame, symbol: str
) -> tuple[float, ...]:
    """``(closed bars, features, model, decision)`` ms of one symbol's call (as ``signals``)."""
    t0 = time.perf_counter()
    bars = closed_bars(served, c, f, [symbol])
    t1 = time.perf_counter()
    rows = signal_arrays(served, c, f, bars, [symbol])
    t2 = time.perf_counter()
    [p] = forecast_rows(served, rows, bars, [symbol]).values()
    t3 = time.perf_counter()
    settings = served.settings
    vol = rows.columns[f"rv_{settings.risk.volatility_window}"][p["row"]]
    decide(
        signal=p["signal"],
        confidence=p["confidence"],
        expected_return=p["expected_return"],
        volatility=float(annualise_volatility(np.array([vol]), served.timeframe)[0]),
        atr_pct=float(rows.columns[f"atr_pct_{settings.risk.atr_period}"][p["row"]]),
        settings=settings,
        timeframe=served.timeframe,
    )
    t4 = time.perf_counter()
    return (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, (t4 - t3) * 1000


def _baseline(rev: str, tmp: Path):
    """``serving`` of git revision ``rev``, importable next to the current package."""
    archive = subprocess.run(
        ["git", "archive", rev, "cryptoml_pipeline"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp / "src", filter="data")
    (tmp / "src" / "cryptoml_pipeline").rename(tmp / "src" / "cryptoml_pipeline_baseline")
    for path in (tmp / "src" / "cryptoml_pipeline_baseline").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"\bcryptoml_pipeline\b", "cryptoml_pipeline_baseline", text))
    sys.path.insert(0, str(tmp / "src"))
    return importlib.import_module("cryptoml_pipeline_baseline.serving")


def _reference(served: ServedModel, c: pd.DataFrame, f: pd.DataFrame, symbols: list[str]) -> None:
    """The previous path: the whole universe's table on the tail, then the same prediction."""
    bars = closed_bars(served, c, f, symbols)
    table = tail_features(served, c, f, bars)
    key, stamp = table["symbol"].astype(str).to_numpy(), table["timestamp"]
    mask = np.zeros(len(table), dtype=bool)
    for s in symbols:
        mask |= (key == s) & (stamp == bars[s]).to_numpy()
    served.zoo.predict_rows(served.model, table, None, mask, served.settings, "1h", tag="reference")


def deploy_default(store: ParquetStore, root: Path):
    base = profile_settings("demo")
    traded, _ = resolve_symbols(store, None, None, "1h")
    cov = min(store.candle_coverage(f"{s}:USDT", "1h")[1] for s in traded)
    end = cov.floor("D")
    start = end - pd.Timedelta(days=base.walk_forward.train_days + 5)
    universe = universe_in_window(store, traded, None, "1h", start, end)
    data = base.data.model_copy(update={"symbols": tuple(traded), "universe": tuple(universe)})
    settings = base.model_copy(update={"data": data})
    md = load_market_data(
        store,
        list(traded),
        "1h",
        start,
        end,
        history=pd.Timedelta(days=data.history_days),
        universe=list(universe),
    )
    features = compute_features(md.candles, md.funding, settings.features, timeframe="1h")
    labels = make_labels(md.candles, settings.target, settings.labels, timeframe="1h")
    fold = final_training_fold(end, settings.walk_forward, timeframe="1h")
    model = ZOO["gbm"].fit_window(
        FoldInputs(features, labels, fold, settings, "1h", traded=tuple(traded))
    )
    model.manifest |= {
        "version": "benchmark-default",
        "symbols": list(traded),
        "universe": list(md.universe),
        "timeframe": "1h",
        "settings": settings.model_dump(mode="json"),
        "data": {"source": "parquet", "synthetic": False, "train_end": end.isoformat()},
    }
    deploy(root, model, dict(model.manifest))
    return load_served(root), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="git revision timed interleaved with the current code")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the untraded members' "no funding" notice, per call
    store = ParquetStore(DATA)
    with tempfile.TemporaryDirectory() as tmp:
        served, model = deploy_default(store, Path(tmp) / "deploy")
        base_served, base_signals = None, None
        if args.baseline:
            old = _baseline(args.baseline, Path(tmp))
            base_served, base_signals = old.load_served(Path(tmp) / "deploy"), old.signals
        result = _measure(store, served, model, base_served, base_signals)
    if args.baseline:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", args.baseline], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        result["baseline"] = {"revision": commit, **result["baseline"]}
    print(json.dumps(result, indent=2))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")


def _measure(store, served, model, base_served, base_signals) -> dict:
    symbols = list(served.symbols)
    reads = []
    for _ in range(5):
        t = time.perf_counter()
        candles, _ = store_tail(store, served, symbols)
        reads.append((time.perf_counter() - t) * 1000)
    # extend the tail back by the calls: call k ends N_CALLS - k bars before the last bar
    bar = pd.Timedelta(hours=1)
    last = candles["timestamp"].max()
    first = last - (N_CALLS + N_WARM) * bar - tail_span(served)
    full = load_market_data(store, symbols, "1h", first, last + bar, universe=list(served.universe))
    single: dict[str, list[float]] = {s: [] for s in symbols}
    batch: list[float] = []
    base_single: list[float] = []
    base_batch: list[float] = []
    decisions: dict[str, str] = {}
    parts: list[tuple[float, ...]] = []
    ref_single: list[float] = []
    ref_batch: list[float] = []
    load_before = os.getloadavg()[0]

    def timed(fn, *a) -> tuple[float, list]:
        t = time.perf_counter()
        out = fn(*a)
        return (time.perf_counter() - t) * 1000, out

    for k in range(N_CALLS + N_WARM):
        end = last - (N_CALLS + N_WARM - 1 - k) * bar
        start = end + bar - tail_span(served)
        c = full.candles[(full.candles["timestamp"] >= start) & (full.candles["timestamp"] <= end)]
        f = full.funding[full.funding["timestamp"] <= end]
        warm = k >= N_WARM
        runs = [("new", served, signals)]
        if base_signals is not None:
            runs.append(("base", base_served, base_signals))
        if k % 2:
            runs.reverse()  # neither path always runs first
        for who, srv, fn in runs:  # each path's calls of the bar in one block (see docstring)
            for symbol in symbols:
                ms, [record] = timed(fn, srv, c, f, [symbol])
                assert record["bar_open"] == end.isoformat(), (record["bar_open"], end)
                if who == "new":
                    decisions[symbol] = record["decision"]["action"]
                    if warm:
                        single[symbol].append(ms)
                elif warm:
                    base_single.append(ms)
            ms, records = timed(fn, srv, c, f, symbols)
            if who == "base":
                new = signals(served, c, f, symbols)
                assert [r["signal"] for r in records] == [r["signal"] for r in new]
                assert [r["decision"] for r in records] == [r["decision"] for r in new]
            if warm:
                (batch if who == "new" else base_batch).append(ms / len(symbols))
        if warm:
            parts.extend(_breakdown(served, c, f, s) for s in symbols)
        if k >= N_CALLS + N_WARM - N_REFERENCE:
            t = time.perf_counter()
            _reference(served, c, f, symbols[:1])
            ref_single.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            _reference(served, c, f, symbols)
            ref_batch.append((time.perf_counter() - t) * 1000 / len(symbols))
    all_single = [v for ms in single.values() for v in ms]
    result = {
        "goal_ms": 10.0,
        "deployment": {
            "profile": "demo",
            "model_class": model.manifest["model_class"],
            "trees": int(model.manifest["best_iteration"]),
            "traded": symbols,
            "universe": list(served.universe),
            "n_features": len(model.feature_cols),
            "tail_bars": int(tail_span(served) / bar),
        },
        "timed": "serving.signals on in-memory data: closed_bars + signal features (per-symbol "
        "families of the requested traded symbols on the tail, cross-asset at the read rows) + "
        "the model's prediction + decision; a new bar every call; the parquet read (store_tail) "
        "is not included (store_tail_read_ms); shared 2-core machine with other jobs running",
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "cpu_cores": os.cpu_count(),
        "per_symbol_one_call_each": _stats(all_single),
        "per_symbol_all_traded_in_one_call": _stats(batch),
        "breakdown_one_symbol_ms": {
            name: _stats([p[i] for p in parts])
            for i, name in enumerate(("closed_bars", "features", "model", "decision"))
        },
        "by_symbol_one_call_each": {s: _stats(ms) for s, ms in single.items()},
        "reference_full_table_path": {
            "per_symbol_one_call_each": _stats(ref_single),
            "per_symbol_all_traded_in_one_call": _stats(ref_batch),
        },
        "before_fast_path": BEFORE,
        "store_tail_read_ms": _stats(reads),
        "last_decisions": decisions,
    }
    if base_signals is not None:
        result["baseline"] = {
            "timed": "the baseline revision's serving.signals, interleaved bar by bar with the "
            "current code on the same bars (same load)",
            "per_symbol_one_call_each": _stats(base_single),
            "per_symbol_all_traded_in_one_call": _stats(base_batch),
        }
    return result


if __name__ == "__main__":
    main()
