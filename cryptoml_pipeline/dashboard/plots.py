"""Monitoring plots (matplotlib, Agg) as PNG bytes: shared by the Dagster metadata and the
dashboard page. Inputs are the tracker's frames; an empty input gives a labelled empty plot."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def predictions_vs_outcomes_png(frame: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 2.8))
    res = frame[frame["outcome"].notna()] if len(frame) else frame
    if len(res):
        ax.plot(res["timestamp"], res["signal"], ".", ms=3, label="predicted class")
        ax.plot(res["timestamp"], res["outcome"], "x", ms=3, alpha=0.6, label="realised")
        ax.legend(loc="upper left", fontsize=7)
    ax.set_title("predictions vs realised outcomes (label -2..2)", fontsize=9)
    return _png(fig)


def rolling_metrics_png(metrics: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 2.8))
    for col in ("accuracy", "directional_accuracy", "win_rate", "signal_frequency"):
        if col in metrics and len(metrics):
            ax.plot(metrics["timestamp"], metrics[col], label=col, lw=1)
    if len(metrics):
        ax.legend(loc="upper left", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title("rolling performance", fontsize=9)
    return _png(fig)


def confidence_histogram_png(frame: pd.DataFrame) -> bytes:
    fig, ax = plt.subplots(figsize=(4, 2.8))
    if len(frame):
        ax.hist(frame["confidence"].to_numpy(dtype=float), bins=np.linspace(0, 1, 21))
    ax.set_title("model confidence distribution", fontsize=9)
    return _png(fig)


def feature_importance_png(
    importance: dict[str, float], title: str = "feature importance (input weights)"
) -> bytes:
    fig, ax = plt.subplots(figsize=(4, 3.2))
    items = sorted(importance.items(), key=lambda kv: kv[1])[-12:]
    if items:
        ax.barh([k for k, _ in items], [v for _, v in items])
        ax.tick_params(axis="y", labelsize=6)
    ax.set_title(title, fontsize=8)
    return _png(fig)
