"""Feature benchmark: full feature-table build time and the shared indicators against `ta`.

Run: ``.venv/bin/python benchmarks/features.py`` -> ``benchmarks/results/features.json``.
Data: real Binance bars from ``../shared/data`` (read in place, never copied).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import ta

from cryptoml_pipeline.features import build_features, warmup_bars
from cryptoml_pipeline.features import technical as tech
from cryptoml_pipeline.settings import FeatureConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "features.json"
REPEATS = 3


def _best(fn) -> float:
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _load(bases, tf, start, end, funding=True):
    c = pd.concat(
        [pd.read_parquet(DATA / "market" / f"{b}_USDT-{tf}.parquet") for b in bases],
        ignore_index=True,
    )
    c = c[(c["timestamp"] >= start) & (c["timestamp"] < end)].reset_index(drop=True)
    f = None
    if funding:
        f = pd.concat(
            [
                pd.read_parquet(DATA / "funding" / f"{b}_USDT_USDT-funding.parquet").assign(
                    symbol=f"{b}/USDT"
                )
                for b in bases
            ],
            ignore_index=True,
        )
    return c, f


OURS = {
    "rsi": lambda h, lo, c: tech.rsi(c, 14),
    "cci": lambda h, lo, c: tech.cci(h, lo, c, 20),
    "atr": lambda h, lo, c: tech.atr(h, lo, c, 14),
    "bb_pctb": lambda h, lo, c: tech.bollinger_pctb(c, 20),
    "macd_diff": lambda h, lo, c: tech.macd(c, 12, 26, 9)[2],
}
TA = {
    "rsi": lambda h, lo, c: ta.momentum.RSIIndicator(c, 14).rsi(),
    "cci": lambda h, lo, c: ta.trend.CCIIndicator(h, lo, c, 20).cci(),
    "atr": lambda h, lo, c: ta.volatility.AverageTrueRange(h, lo, c, 14).average_true_range(),
    "bb_pctb": lambda h, lo, c: ta.volatility.BollingerBands(c, 20, 2).bollinger_pband(),
    "macd_diff": lambda h, lo, c: ta.trend.MACD(c, 26, 12, 9).macd_diff(),
}


def indicator_race(candles: pd.DataFrame) -> dict:
    """Each indicator on each symbol, best of REPEATS, summed over symbols."""
    groups = [g.reset_index(drop=True) for _, g in candles.groupby("symbol")]
    warm = warmup_bars(FeatureConfig())
    per = {
        n: {"ours_s": 0.0, "ta_s": 0.0, "max_abs_diff_after_warmup": 0.0, "tol_ratio": 0.0}
        for n in OURS
    }
    for g in groups:
        args = (g["high"], g["low"], g["close"])
        for name in OURS:
            per[name]["ours_s"] += _best(lambda f=OURS[name], a=args: f(*a))
            per[name]["ta_s"] += _best(lambda f=TA[name], a=args: f(*a))
            ours = OURS[name](*args).to_numpy()[warm:]
            theirs = TA[name](*args).to_numpy()[warm:]
            diff = float(np.nanmax(np.abs(ours - theirs)))
            per[name]["max_abs_diff_after_warmup"] = max(
                per[name]["max_abs_diff_after_warmup"], diff
            )
            # np.allclose(rtol=1e-9, atol=1e-9) holds iff this ratio <= 1
            ratio = float(np.nanmax(np.abs(ours - theirs) / (1e-9 + 1e-9 * np.abs(theirs))))
            per[name]["tol_ratio"] = max(per[name]["tol_ratio"], ratio)
    total_ours = sum(v["ours_s"] for v in per.values())
    total_ta = sum(v["ta_s"] for v in per.values())
    for v in per.values():
        v["speedup"] = v["ta_s"] / v["ours_s"]
    return {
        "per_indicator": per,
        "total_ours_s": total_ours,
        "total_ta_s": total_ta,
        "speedup_total": total_ta / total_ours,
        "goal_speedup": 30.0,
        "allclose_rtol_atol_1e-9": all(v["tol_ratio"] <= 1.0 for v in per.values()),
    }


def main() -> None:
    h1, f1 = _load(("BTC", "ETH", "SOL"), "1h", "2023-10-01", "2025-10-01")
    m5, f5 = _load(("BTC",), "5m", "2025-01-01", "2025-10-01")
    build_features(h1.iloc[:2000], f1)  # imports / caches
    t_h1 = _best(lambda: build_features(h1, f1))
    t_m5 = _best(lambda: build_features(m5, f5, timeframe="5m"))
    n_h1 = len(build_features(h1, f1).plan.names)
    result = {
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
        "best_of": REPEATS,
        "feature_table_build": {
            "3sym_2y_1h": {"rows": len(h1), "features": n_h1, "seconds": t_h1},
            "1sym_9m_5m": {"rows": len(m5), "seconds": t_m5},
        },
        "indicators_vs_ta_3sym_2y_1h": indicator_race(h1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
