"""``cryptoml live`` benchmark -> ``benchmarks/results/live.json``.

1. Per-bar processing time of the live service in replay (``LiveService.step_bar``: the bar
   joins the tail, the account processes it with the backtest's simulator and commits it in one
   SQLite transaction, the signal and decisions of every traded symbol are computed): median,
   p90 and the medians of the first and last 100 bars (the work per bar must not grow).
2. ``GET /signal?symbol=...`` latency at a fixed rate (default 100 requests/s, one new HTTP
   connection per request, uvicorn in the service's thread), p50 / p99.

The model: the test suite's small LightGBM fixture (``test_trading_realtime.build_deployed``:
tiny profile, 2 traded symbols pooled over a 3-member SYNTHETIC universe, written to a parquet
store) -- no trained default model is needed to run it (keys ``model``, ``machine``, ``replay``,
``signal_api``). Pass ``--output-dir/--data-dir`` of a real ``cryptoml run`` to measure the
deployed default model instead.

``--default-shaped``: a model of the default shape on the real data of ``--data-dir`` (default
``/work/shared/data``, 1h): the 4 traded perpetuals (BTC, ETH, SOL, XRP), the 11-member universe,
the default (``demo``) settings and feature families, the strategy's LightGBM member trained on the
180 days before the replay (``build_default_shaped``: ~15 s); the replay is the ``--bars`` bars
before ``--end`` (default 2025-10-01, the data's end). Written under the key
``default_shaped_model`` (the other keys are kept), with the load average sampled during the
replay.

    .venv/bin/python benchmarks/live.py [--bars 500] [--rate 100] [--seconds 10]
    .venv/bin/python benchmarks/live.py --default-shaped [--data-dir /work/shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.live.api import ApiServer
from cryptoml_pipeline.live.service import LiveOptions, LiveService

RESULTS = Path(__file__).resolve().parent / "results" / "live.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


TRADED = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")
UNIVERSE = (
    "AVAX/USDT",
    "BCH/USDT",
    "BTC/USDT",
    "DOGE/USDT",
    "DOT/USDT",
    "ETH/USDT",
    "LINK/USDT",
    "NEAR/USDT",
    "SOL/USDT",
    "XRP/USDT",
    "XTZ/USDT",
)


def build_default_shaped(output_dir: Path, data_dir: Path, train_end: pd.Timestamp) -> str:
    """Deploy into ``output_dir`` a model of the default shape: the strategy's LightGBM member
    (``ZOO["gbm"]``, the demo profile's settings, default feature families: the pooled family
    with its perpetual-spot basis included) pooled over the
    11-member universe, trading the 4 perpetuals, trained on the final fold ending at
    ``train_end`` (180 days) of the real data in ``data_dir``. Returns its description."""
    from cryptoml_pipeline.features.build import compute_features
    from cryptoml_pipeline.market.source import load_market_data, perpetual_spot_closes
    from cryptoml_pipeline.market.store import ParquetStore
    from cryptoml_pipeline.modeling.folds import final_training_fold
    from cryptoml_pipeline.modeling.labels import make_labels
    from cryptoml_pipeline.modeling.models import ZOO, FoldInputs
    from cryptoml_pipeline.registry.deployment_store import deploy
    from cryptoml_pipeline.settings import profile_settings

    settings = profile_settings("demo", symbols=TRADED, universe=UNIVERSE)
    start = train_end - pd.Timedelta(days=settings.walk_forward.train_days)
    market = load_market_data(
        ParquetStore(data_dir),
        TRADED,
        "1h",
        start,
        train_end,
        history=pd.Timedelta(days=60),
        universe=UNIVERSE,
        funding_interval_hours=settings.data.funding_interval_hours,
    )
    spot = perpetual_spot_closes(  # the pooled family's basis, as the run's feature table
        ParquetStore(data_dir), TRADED, "1h", market.candles["timestamp"].min(), train_end
    )
    features = compute_features(
        market.candles, market.funding, settings.features, timeframe="1h", spot=spot
    )
    labels = make_labels(market.candles, settings.target, settings.labels, timeframe="1h")
    fold = final_training_fold(train_end, settings.walk_forward, timeframe="1h")
    model = ZOO["gbm"].fit_window(FoldInputs(features, labels, fold, settings, "1h", traded=TRADED))
    model.manifest.update(
        {
            "version": "default-shaped-bench",
            "symbols": list(TRADED),
            "universe": list(UNIVERSE),
            "timeframe": "1h",
            "settings": settings.model_dump(mode="json"),
            "data": {"source": "parquet", "synthetic": False, "train_end": train_end.isoformat()},
        }
    )
    deploy(output_dir, model, dict(model.manifest))
    n_features = len(model.manifest.get("feature_cols") or [])
    return (
        f"default-shaped: LightGBM (ZOO['gbm'], demo settings, default feature families, "
        f"{n_features} feature columns), 4 traded perpetuals / 11-member universe, real 1h data, "
        f"trained on the 180 days before {train_end.date()}"
    )


def _load() -> float:
    return float(os.getloadavg()[0])


def measure_replay(
    output_dir: Path, data_dir: Path, start: pd.Timestamp, end: pd.Timestamp
) -> tuple[LiveService, dict[str, Any]]:
    """Per-bar processing of the live service replaying ``[start, end)``."""
    service = LiveService(
        LiveOptions(
            output_dir=output_dir,
            data_dir=data_dir,
            run_name=f"bench-{int(time.time())}",
            replay=(start, end),
        )
    )
    step = pd.Timedelta(hours=1)
    per_bar, windows, loads = [], [], [_load()]  # windows: bars the re-simulation covered
    for data in service.warm_up():
        t0 = time.perf_counter()
        service.step_bar(data, data.bar + step)
        per_bar.append(time.perf_counter() - t0)
        windows.append(len(service.trader.window))
        if len(per_bar) % 25 == 0:
            loads.append(_load())
    loads.append(_load())
    bars = np.array(per_bar) * 1000
    return service, {
        "bars": len(bars),
        "window": [str(start), str(end)],
        "traded_symbols": list(service.trading),
        "universe": list(service.served.universe),
        "per_bar_ms_median": round(float(np.median(bars)), 2),
        "per_bar_ms_p90": round(float(np.percentile(bars, 90)), 2),
        "per_bar_ms_max": round(float(np.max(bars)), 2),
        "per_bar_ms_median_first_100": round(float(np.median(bars[:100])), 2),
        "per_bar_ms_median_last_100": round(float(np.median(bars[-100:])), 2),
        "resimulation_window_bars_max": int(max(windows)),
        "resimulation_window_bars_mean_first_100": round(float(np.mean(windows[:100])), 1),
        "resimulation_window_bars_mean_last_100": round(float(np.mean(windows[-100:])), 1),
        "load_avg_1min_during": {
            "min": round(min(loads), 2),
            "mean": round(statistics.fmean(loads), 2),
            "max": round(max(loads), 2),
        },
    }


def measure_signal(service: LiveService, rate: float, seconds: float) -> dict[str, Any]:
    """``GET /signal?symbol=...`` at ``rate`` requests/s (open loop, a new connection each)."""
    symbol = service.trading[0]
    port = _free_port()
    api = ApiServer(service, "127.0.0.1", port, None)
    api.start()
    url = f"http://127.0.0.1:{port}/signal?symbol={symbol}"
    urllib.request.urlopen(url).read()  # warm
    latencies: list[float] = []
    errors = 0
    n = int(rate * seconds)
    loads = [_load()]
    t_start = time.perf_counter()
    threads = []

    def one() -> None:
        nonlocal errors
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                resp.read()
            latencies.append(time.perf_counter() - t0)
        except OSError:
            errors += 1

    for k in range(n):  # open loop: request k starts at k / rate, whatever the others do
        delay = t_start + k / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        th = threading.Thread(target=one)
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t_start
    loads.append(_load())
    api.stop()
    lat = np.array(latencies) * 1000
    return {
        "symbol": symbol,
        "requests": n,
        "target_rate_per_s": rate,
        "achieved_rate_per_s": round(len(lat) / elapsed, 1),
        "errors": errors,
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "mean_ms": round(statistics.fmean(lat), 2),
        "load_avg_1min_before_after": [round(x, 2) for x in loads],
    }


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load avg " + (
        " ".join(f"{x:.2f}" for x in os.getloadavg())
    )


def write_results(update: dict[str, Any]) -> None:
    """Merge ``update`` into ``benchmarks/results/live.json`` (the other keys are kept)."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update(update)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--output-dir")
    parser.add_argument("--data-dir")
    parser.add_argument(
        "--end",
        help="replay end (exclusive); default 2025-03-14 (fixture), 2025-10-01 (--default-shaped)",
    )
    parser.add_argument(
        "--default-shaped",
        action="store_true",
        help="train and measure a default-shaped model on the real data (key default_shaped_model)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="live_bench_"))
    if args.default_shaped:
        end = pd.Timestamp(args.end or "2025-10-01", tz="UTC")
        start = end - pd.Timedelta(hours=args.bars)
        data_dir = Path(args.data_dir or "/work/shared/data")
        output_dir = Path(args.output_dir) if args.output_dir else tmp / "output"
        t0 = time.perf_counter()
        model = build_default_shaped(output_dir, data_dir, start)
        train_s = time.perf_counter() - t0
        service, replay = measure_replay(output_dir, data_dir, start, end)
        api = measure_signal(service, args.rate, args.seconds)
        result = {
            "model": model,
            "build_seconds": round(train_s, 1),
            "machine": _machine(),
            "replay": replay,
            "signal_api": api,
            "command": "benchmarks/live.py --default-shaped",
        }
        write_results({"default_shaped_model": result})
        print(json.dumps(result, indent=2))
        return
    end = pd.Timestamp(args.end or "2025-03-14", tz="UTC")
    start = end - pd.Timedelta(hours=args.bars)
    if args.output_dir:
        output_dir, data_dir, model = Path(args.output_dir), Path(args.data_dir), "deployed"
    else:
        from cryptoml_pipeline_tests.test_trading_realtime import build_deployed

        dep = build_deployed(tmp)
        output_dir, data_dir = dep.output_dir, dep.store.root
        model = "test fixture: LightGBM, tiny profile, 2 traded / 3-member synthetic universe"
    service, replay = measure_replay(output_dir, data_dir, start, end)
    api = measure_signal(service, args.rate, args.seconds)
    result = {"model": model, "machine": _machine(), "replay": replay, "signal_api": api}
    write_results(result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
