"""Extra report figures (PNG bytes): monthly returns heat map, rolling Sharpe, exposure and
confidence calibration."""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

ROLLING_DAYS = 30


def _png(fig: Any) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def monthly_heatmap_png(monthly: list[dict[str, Any]]) -> bytes | None:
    """Years x months grid of the strategy's monthly returns (%), None without months."""
    if not monthly:
        return None
    frame = pd.DataFrame(monthly).pivot(index="year", columns="month", values="return") * 100
    frame = frame.reindex(columns=range(1, 13))
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(frame) + 1.2))
    lim = float(np.nanmax(np.abs(frame.to_numpy()))) or 1.0
    ax.imshow(frame.to_numpy(), cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(12), ["J", "F", "M", "A", "M", "J", "J", "A", "S", "O", "N", "D"])
    ax.set_yticks(range(len(frame)), [str(y) for y in frame.index])
    for (r, c), v in np.ndenumerate(frame.to_numpy()):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.1f}", ha="center", va="center", fontsize=8)
    ax.set_title("strategy monthly return, % (net)")
    return _png(fig)


def rolling_sharpe_png(equity: pd.DataFrame, days: int = ROLLING_DAYS) -> bytes:
    """Rolling ``days``-day Sharpe (annualised, daily returns) of every equity column."""
    frame = equity.set_index("timestamp")
    fig, ax = plt.subplots(figsize=(10, 3))
    for col in frame.columns:
        daily = frame[col].dropna().resample("1D").last().ffill().pct_change()
        roll = daily.rolling(days).mean() / daily.rolling(days).std() * math.sqrt(365)
        ax.plot(roll.index, roll.values, lw=1.0, label=col.replace("_", " "))
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel(f"{days}-day Sharpe")
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def exposure_png(exposure: pd.DataFrame) -> bytes:
    """The strategy's gross exposure (gross notional / equity) over time."""
    frame = exposure.set_index("timestamp")
    fig, ax = plt.subplots(figsize=(10, 2.5))
    for col in frame.columns:
        ax.fill_between(frame.index, frame[col].to_numpy(), step="post", alpha=0.5, label=col)
    ax.set_ylabel("gross exposure")
    ax.grid(alpha=0.3)
    return _png(fig)


def calibration_png(calibration: list[dict[str, Any]]) -> bytes | None:
    """Mean confidence per decile vs realised directional hit rate and 5-class accuracy."""
    rows = [r for r in calibration if r["n"] > 0]
    if not rows:
        return None
    conf = [r["confidence_mean"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    hit = [r["hit_rate"] if r["hit_rate"] is not None else np.nan for r in rows]
    ax.plot(conf, hit, "o-", label="directional hit rate")
    ax.plot(conf, [r["accuracy"] for r in rows], "s-", label="5-class accuracy")
    ax.axhline(0.5, color="k", lw=0.6, ls="--")
    ax.set_xlabel("mean confidence of the decile")
    ax.set_ylabel("realised")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)
