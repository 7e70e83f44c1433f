"""Backtest speed in bars/s: our simulator vs vectorbt ``from_signals`` vs backtesting.py on the
same simple long/short signal (sign of close minus its 50-bar mean, filled next open).

Datasets: 3 symbols x 2 years of 1h (real Binance spot, ../shared/data), 1 symbol x 9 months of
5m (real), a seeded synthetic year of 1m bars. Ours runs the FULL simulator (risk sizing, ATR
stops, funding settlements on a zero-rate schedule, one shared equity across symbols) and, for
the same trades as the libraries, the fixed-quantity mode; compile/JIT warm-up is excluded.
vectorbt runs on a tz-naive index (a tz-aware one is far slower). Every figure is the median of
``REPEAT`` runs, ours and vectorbt alternating (the machine is shared; the load averages are
recorded). Writes benchmarks/results/backtest.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from cryptoml_pipeline.execution import kernel as K
from cryptoml_pipeline.execution.backtest import simulate
from cryptoml_pipeline.settings import CostConfig, RiskConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "market"
OUT = Path(__file__).resolve().parent / "results" / "backtest.json"
COSTS = CostConfig(taker_fee=0.001, slippage_bps=2.0)


def real(symbol: str, tf: str, start: str, end: str) -> pd.DataFrame:
    df = pd.read_parquet(DATA / f"{symbol.replace('/', '_')}-{tf}.parquet")
    df = df[(df["timestamp"] >= start) & (df["timestamp"] < end)]
    return df[["timestamp", "symbol", "open", "high", "low", "close"]].reset_index(drop=True)


def synthetic(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    open_ = np.concatenate([[30_000.0], close[:-1]])
    span = np.abs(rng.normal(0, 0.0005, n)) * close
    ts = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC")
    return pd.DataFrame(
        {
            "timestamp": ts,
            "symbol": "SYN/USDT",
            "open": open_,
            "close": close,
            "high": np.maximum(open_, close) + span,
            "low": np.minimum(open_, close) - span,
        }
    )


def signals(candles: pd.DataFrame) -> pd.DataFrame:
    out = []
    for _, g in candles.groupby("symbol", sort=True):
        c = g["close"]
        sig = np.sign(c - c.rolling(50).mean()).fillna(0.0)
        r = np.log(c).diff()
        out.append(
            pd.DataFrame(
                {
                    "timestamp": g["timestamp"].to_numpy(),
                    "symbol": g["symbol"].to_numpy(),
                    "signal": (2 * sig).astype(int).to_numpy(),
                    "confidence": 1.0,
                    "volatility": 0.5,
                    "atr_pct": (r.abs().rolling(14).mean()).to_numpy(),
                }
            )
        )
    return pd.concat(out, ignore_index=True)


def zero_funding(candles: pd.DataFrame) -> pd.DataFrame:
    ts = candles["timestamp"]
    times = pd.date_range(ts.min().ceil("8h"), ts.max(), freq="8h")
    return pd.concat(
        [
            pd.DataFrame({"timestamp": times, "symbol": s, "funding_rate": 0.0})
            for s in candles["symbol"].unique()
        ],
        ignore_index=True,
    )


class KernelTimer:
    """Wraps ``kernel.run_kernel`` to time the compiled bar loop alone inside ``simulate``."""

    def __init__(self) -> None:
        self.original = K.run_kernel
        self.times: list[float] = []

    def __enter__(self) -> KernelTimer:
        def timed(*args):
            t = time.perf_counter()
            out = self.original(*args)
            self.times.append(time.perf_counter() - t)
            return out

        K.run_kernel = timed
        return self

    def __exit__(self, *exc) -> None:
        K.run_kernel = self.original


REPEAT = 11  # runs per measurement; the median is reported (the machine is shared)


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_of(fn, repeat: int = REPEAT) -> float:
    return float(np.median([seconds(fn) for _ in range(repeat)]))


def run_ours(candles, decisions, funding, tf, fixed):
    return simulate(
        candles,
        funding,
        decisions,
        costs=COSTS,
        risk=RiskConfig(),
        min_hold_bars=1,
        timeframe=tf,
        fixed_quantity=1.0 if fixed else None,
    )


def run_vbt(candles, decisions):
    import vectorbt as vbt

    for sym, g in candles.groupby("symbol"):
        d = decisions[decisions["symbol"] == sym]
        idx = pd.DatetimeIndex(g["timestamp"]).tz_localize(None)
        sig = pd.Series(d["signal"].to_numpy(), index=idx).shift(1).fillna(0)
        vbt.Portfolio.from_signals(
            close=pd.Series(g["close"].to_numpy(), index=idx),
            price=pd.Series(g["open"].to_numpy(), index=idx),
            entries=sig > 0,
            exits=sig <= 0,
            short_entries=sig < 0,
            short_exits=sig >= 0,
            fees=0.001,
            slippage=2e-4,
            size=1.0,
            init_cash=1e9,
            freq=None,
        ).value()


def run_bt(candles, decisions):
    from backtesting import Backtest, Strategy

    for sym, g in candles.groupby("symbol"):
        d = decisions[decisions["symbol"] == sym]["signal"].to_numpy()
        data = pd.DataFrame(
            {
                "Open": g["open"].to_numpy(),
                "High": g["high"].to_numpy(),
                "Low": g["low"].to_numpy(),
                "Close": g["close"].to_numpy(),
            },
            index=pd.DatetimeIndex(g["timestamp"]).tz_localize(None),
        )

        class Sig(Strategy):
            values = d

            def init(self):
                self.s = self.I(lambda: self.values, plot=False)

            def next(self):
                s = self.s[-1]
                if s > 0 and not self.position.is_long:
                    self.buy(size=1)
                elif s < 0 and not self.position.is_short:
                    self.sell(size=1)
                elif s == 0 and self.position:
                    self.position.close()

        Backtest(data, Sig, cash=1e9, commission=0.001, finalize_trades=True).run()


def load_average() -> str:
    """The 1/5/15-minute load averages (the machine is shared with other jobs)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    sets = {
        "3x2y_1h": (
            pd.concat(
                [
                    real(f"{s}/USDT", "1h", "2023-10-01", "2025-10-01")
                    for s in ("BTC", "ETH", "SOL")
                ],
                ignore_index=True,
            ),
            "1h",
        ),
        "1x9m_5m": (real("BTC/USDT", "5m", "2025-01-01", "2025-10-01"), "5m"),
        "1x1y_1m_synthetic": (synthetic(365 * 24 * 60), "1m"),
    }
    load_start = load_average()
    results = {}
    for name, (candles, tf) in sets.items():
        decisions = signals(candles)
        funding = zero_funding(candles)
        bars = len(candles)
        full = partial(run_ours, candles, decisions, funding, tf, False)
        fixed = partial(run_ours, candles, decisions, funding, tf, True)
        vbt = partial(run_vbt, candles, decisions)
        full()  # JIT warm-up
        fixed()
        row = {"bars": bars, "symbols": int(candles["symbol"].nunique())}
        run_vbt(candles.head(200 * row["symbols"]), decisions.head(200 * row["symbols"]))
        # ours and vectorbt alternate, so that a change in the machine's load hits both
        full_t, vbt_t = [], []
        with KernelTimer() as timer:
            for _ in range(REPEAT):
                full_t.append(seconds(full))
                vbt_t.append(seconds(vbt))
        row["ours_full_bars_per_s"] = bars / float(np.median(full_t))
        row["ours_kernel_only_bars_per_s"] = bars / float(np.median(timer.times))
        row["ours_fixed_size_bars_per_s"] = bars / median_of(fixed)
        row["vectorbt_from_signals_bars_per_s"] = bars / float(np.median(vbt_t))
        row["backtesting_py_bars_per_s"] = bars / seconds(partial(run_bt, candles, decisions))
        row["ours_full_vs_vectorbt"] = (
            row["ours_full_bars_per_s"] / row["vectorbt_from_signals_bars_per_s"]
        )
        row["ours_full_vs_backtesting_py"] = (
            row["ours_full_bars_per_s"] / row["backtesting_py_bars_per_s"]
        )
        results[name] = row
        print(
            name,
            json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}),
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "note": "bars/s = symbol-bars per second; ours_full/ours_fixed_size: end-to-end "
                "simulate() incl. validation, grid building and output frames; "
                "ours_kernel_only: the compiled bar loop alone inside the same simulate() calls; "
                f"median of {REPEAT} runs, ours and vectorbt alternating (backtesting.py: 1 "
                "run); JIT warm-up excluded; shared 2-core machine, other jobs running "
                f"(load average at the start / end: {load_start} / {load_average()})",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
