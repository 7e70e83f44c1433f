"""Ingestion benchmark: ingest + validate throughput and store read time, on the real data.

* ingest + validate: 3 symbols × 9 months of spot 5m candles (2025-01-01 .. 2025-10-01) read from
  the local store (``../shared/data``; it has no 1m), repaired + validated
  (:func:`repair_candles`) and written into a fresh store, (a) one range per symbol and (b) as
  daily partitions (one atomic per-day replacement each, the landing path).
* store read: 3 symbols × 2 years of 1h candles (2023-10-01 .. 2025-10-01), validated reads.

Writes ``benchmarks/results/ingest.json``. Usage: ``.venv/bin/python benchmarks/ingest.py``.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from cryptoml_pipeline.market import ParquetStore
from cryptoml_pipeline.market.ingest import land_candles_frame
from cryptoml_pipeline.settings import IngestConfig

OUT = Path(__file__).parent / "results" / "ingest.json"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
INGEST = (pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-10-01", tz="UTC"))
READ = (pd.Timestamp("2023-10-01", tz="UTC"), pd.Timestamp("2025-10-01", tz="UTC"))
CONFIG = IngestConfig()


def _ingest_bulk(source: ParquetStore, target: ParquetStore) -> int:
    rows = 0
    for symbol in SYMBOLS:
        raw = source.read_candles(symbol, "5m", *INGEST)
        result = land_candles_frame(
            target, raw, symbol, "5m", *INGEST, source=f"bench {symbol}", config=CONFIG
        )
        rows += result.rows
    return rows


def _ingest_daily(source: ParquetStore, target: ParquetStore) -> tuple[int, int]:
    rows = partitions = 0
    for symbol in SYMBOLS:
        raw = source.read_candles(symbol, "5m", *INGEST)
        for day, frame in raw.groupby(raw["timestamp"].dt.floor("D"), sort=True):
            result = land_candles_frame(
                target,
                frame,
                symbol,
                "5m",
                day,
                day + pd.Timedelta(days=1),
                source=f"bench {symbol} {day.date()}",
                config=CONFIG,
            )
            rows += result.rows
            partitions += 1
    return rows, partitions


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    source = ParquetStore(DATA)
    results: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "data": "../shared/data (spot 5m / 1h parquet)",
    }
    bulk = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            rows, seconds = _timed(lambda tmp=tmp: _ingest_bulk(source, ParquetStore(Path(tmp))))
            bulk.append(seconds)
    results["ingest_validate_bulk"] = {
        "what": "3 symbols x 9 months spot 5m: read + repair/validate + atomic write, per symbol",
        "rows": rows,
        "best_seconds": round(min(bulk), 3),
        "rows_per_second": round(rows / min(bulk)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        (rows, partitions), seconds = _timed(lambda: _ingest_daily(source, ParquetStore(Path(tmp))))
    results["ingest_validate_daily_partitions"] = {
        "what": "same rows landed as daily partitions (per-day atomic replacement of the file)",
        "rows": rows,
        "partitions": partitions,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds),
        "seconds_per_partition": round(seconds / partitions, 4),
    }
    reads = []
    for _ in range(5):
        frames, seconds = _timed(lambda: [source.read_candles(s, "1h", *READ) for s in SYMBOLS])
        reads.append(seconds)
    n = sum(len(f) for f in frames)
    results["store_read_1h_2y"] = {
        "what": "3 symbols x 2 years spot 1h: ParquetStore.read_candles (pushdown + pandera)",
        "rows": n,
        "best_seconds": round(min(reads), 4),
        "median_seconds": round(sorted(reads)[2], 4),
        "rows_per_second": round(n / min(reads)),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
