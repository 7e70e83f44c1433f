"""``cryptoml live`` benchmark -> ``benchmarks/results/live.json``.

1. Per-bar processing time of the live service in replay (``LiveService.step_bar``: the bar
   joins the tail, the account processes it with the backtest's simulator and commits it in one
   SQLite transaction, the signal and decisions of every traded symbol are computed): median,
   p90 and the medians of the first and last 100 bars (the work per bar must not grow).
2. ``GET /signal?symbol=...`` latency at a fixed rate (default 100 requests/s, one new HTTP
   connection per request, uvicorn in the service's thread), p50 / p99.

The model: the test suite's small LightGBM fixture (``test_trading_realtime.build_deployed``:
tiny profile, 2 traded symbols pooled over a 3-member SYNTHETIC universe, written to a parquet
store) -- no trained default model is needed to run it. Pass ``--output-dir/--data-dir`` of a
real ``cryptoml run`` to measure the deployed default model instead.

    .venv/bin/python benchmarks/live.py [--bars 500] [--rate 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from cryptoml_pipeline.live.api import ApiServer
from cryptoml_pipeline.live.service import LiveOptions, LiveService

RESULTS = Path(__file__).resolve().parent / "results" / "live.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--output-dir")
    parser.add_argument("--data-dir")
    parser.add_argument("--end", default="2025-03-14", help="replay end (exclusive)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="live_bench_"))
    if args.output_dir:
        output_dir, data_dir, model = Path(args.output_dir), Path(args.data_dir), "deployed"
    else:
        from cryptoml_pipeline_tests.test_trading_realtime import build_deployed

        dep = build_deployed(tmp)
        output_dir, data_dir = dep.output_dir, dep.store.root
        model = "test fixture: LightGBM, tiny profile, 2 traded / 3-member synthetic universe"
    end = pd.Timestamp(args.end, tz="UTC")
    start = end - pd.Timedelta(hours=args.bars)
    service = LiveService(
        LiveOptions(
            output_dir=output_dir,
            data_dir=data_dir,
            run_name=f"bench-{int(time.time())}",
            replay=(start, end),
        )
    )
    step = pd.Timedelta(hours=1)
    per_bar, windows = [], []  # windows: bars the account's re-simulation covered
    for data in service.warm_up():
        t0 = time.perf_counter()
        service.step_bar(data, data.bar + step)
        per_bar.append(time.perf_counter() - t0)
        windows.append(len(service.trader.window))
    bars = np.array(per_bar) * 1000
    symbol = service.trading[0]

    port = _free_port()
    api = ApiServer(service, "127.0.0.1", port, None)
    api.start()
    url = f"http://127.0.0.1:{port}/signal?symbol={symbol}"
    urllib.request.urlopen(url).read()  # warm
    latencies: list[float] = []
    errors = 0
    n = int(args.rate * args.seconds)
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
        delay = t_start + k / args.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        th = threading.Thread(target=one)
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t_start
    api.stop()
    lat = np.array(latencies) * 1000
    result = {
        "model": model,
        "machine": f"{platform.processor() or platform.machine()}, load avg "
        + " ".join(f"{x:.2f}" for x in __import__("os").getloadavg()),
        "replay": {
            "bars": len(bars),
            "traded_symbols": list(service.trading),
            "universe": list(service.served.universe),
            "per_bar_ms_median": round(float(np.median(bars)), 2),
            "per_bar_ms_p90": round(float(np.percentile(bars, 90)), 2),
            "per_bar_ms_median_first_100": round(float(np.median(bars[:100])), 2),
            "per_bar_ms_median_last_100": round(float(np.median(bars[-100:])), 2),
            "resimulation_window_bars_max": int(max(windows)),
            "resimulation_window_bars_mean_first_100": round(float(np.mean(windows[:100])), 1),
            "resimulation_window_bars_mean_last_100": round(float(np.mean(windows[-100:])), 1),
        },
        "signal_api": {
            "requests": n,
            "target_rate_per_s": args.rate,
            "achieved_rate_per_s": round(len(lat) / elapsed, 1),
            "errors": errors,
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "mean_ms": round(statistics.fmean(lat), 2),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
