"""Monitoring plots (matplotlib, Agg) as PNG bytes: shared by the Dagster metadata and the
dashboard page. Inputs are tracker-shaped frames (live records or the run's walk-forward
predictions); an empty input gives a plot that says why it is empty (``note``) instead of bare
axes."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

CLASSES = (-2, -1, 0, 1, 2)
RECENT_BARS = 240  # bars of one symbol in the predictions time-series view
NO_DATA = "no data"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _say(ax, note: str | None) -> None:
    """Write why a plot is empty across its axes."""
    ax.text(
        0.5,
        0.5,
        textwrap.fill(note or NO_DATA, 60),
        ha="center",
        va="center",
        fontsize=8,
        color="#a33",
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def message_png(title: str, note: str | None, size: tuple[float, float] = (7, 2.8)) -> bytes:
    fig, ax = plt.subplots(figsize=size)
    _say(ax, note)
    ax.set_title(title, fontsize=9)
    return _png(fig)


def _predicted(frame: pd.DataFrame) -> np.ndarray:
    """The predicted label -2..2: ``pred_class - 2`` (what ``correct`` scores), else ``signal``."""
    column = frame["pred_class"] - 2 if "pred_class" in frame else frame["signal"]
    return column.to_numpy(dtype=int)


def predictions_vs_outcomes_png(frame: pd.DataFrame, note: str | None = None) -> bytes:
    """Left: predicted vs realised class over the last :data:`RECENT_BARS` resolved bars of the
    first symbol; right: predicted x realised class counts over every resolved prediction."""
    res = frame[frame["outcome"].notna()] if len(frame) else frame
    if not len(res):
        return message_png("predictions vs realised outcomes (label -2..2)", note)
    fig, (ax, cm_ax) = plt.subplots(1, 2, figsize=(7, 2.8), width_ratios=[2.2, 1])
    symbol = sorted(res["symbol"].unique())[0] if "symbol" in res else None
    one = res[res["symbol"] == symbol] if symbol is not None else res
    one = one.tail(RECENT_BARS)
    ax.step(one["timestamp"], one["outcome"], where="post", lw=0.8, alpha=0.7, label="realised")
    ax.plot(one["timestamp"], _predicted(one), ".", ms=3, label="predicted")
    ax.set_yticks(CLASSES)
    ax.tick_params(labelsize=7)
    ax.tick_params(axis="x", rotation=20)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title(f"{symbol or ''} last {len(one)} resolved bars", fontsize=9)
    idx = {c: i for i, c in enumerate(CLASSES)}
    counts = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    predicted = _predicted(res)
    for p, o in zip(predicted, res["outcome"].astype(int), strict=True):
        if p in idx and o in idx:
            counts[idx[o], idx[p]] += 1
    cm_ax.imshow(counts, cmap="Blues")
    for (r, c), v in np.ndenumerate(counts):
        cm_ax.text(c, r, str(v), ha="center", va="center", fontsize=6)
    cm_ax.set_xticks(range(5), CLASSES, fontsize=7)
    cm_ax.set_yticks(range(5), CLASSES, fontsize=7)
    cm_ax.set_xlabel("predicted", fontsize=7)
    cm_ax.set_ylabel("realised", fontsize=7)
    hit = float((predicted == res["outcome"].to_numpy()).mean())
    cm_ax.set_title(f"all {len(res)}: acc {hit:.1%}", fontsize=8)
    return _png(fig)


def rolling_metrics_png(metrics: pd.DataFrame, note: str | None = None) -> bytes:
    if not len(metrics):
        return message_png("rolling performance", note)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    for col in ("accuracy", "directional_accuracy", "win_rate", "signal_frequency"):
        if col in metrics and metrics[col].notna().any():
            ax.plot(metrics["timestamp"], metrics[col], label=col, lw=1)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_ylim(0, 1)
    ax.tick_params(labelsize=7)
    ax.set_title("rolling performance", fontsize=9)
    return _png(fig)


def confidence_edges(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Histogram edges from 0 to 1, or to the next 0.05 above the largest confidence when all lie
    below 0.5 (a weak model's confidences would otherwise fill a single bar)."""
    top = float(np.nanmax(confidence)) if len(confidence) else 1.0
    upper = 1.0 if not np.isfinite(top) or top >= 0.5 else max(0.05, np.ceil(top * 20) / 20)
    return np.linspace(0.0, upper, bins + 1)


def confidence_histogram_png(frame: pd.DataFrame, note: str | None = None) -> bytes:
    if not len(frame):
        return message_png("model confidence distribution", note, size=(4, 2.8))
    fig, ax = plt.subplots(figsize=(4, 2.8))
    conf = frame["confidence"].to_numpy(dtype=float)
    ax.hist(conf, bins=confidence_edges(conf, 20))
    ax.axvline(float(np.nanmean(conf)), color="k", lw=0.8, ls="--", label="mean")
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    ax.set_title(f"model confidence distribution (n={len(conf)})", fontsize=9)
    return _png(fig)


def feature_importance_png(
    importance: dict[str, float],
    title: str = "feature importance (input weights)",
    note: str | None = None,
) -> bytes:
    items = sorted(importance.items(), key=lambda kv: kv[1])[-12:]
    if not items:
        return message_png(title, note, size=(4, 3.2))
    fig, ax = plt.subplots(figsize=(4, 3.2))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.tick_params(axis="y", labelsize=6)
    ax.set_title(title, fontsize=8)
    return _png(fig)


def live_equity_png(curves: Mapping[str, pd.Series], note: str | None = None) -> bytes:
    """Each live-service account's equity marked at its processed bars' closes."""
    title = "live accounts: equity at each processed bar's close"
    drawn = {run: eq for run, eq in curves.items() if len(eq)}
    if not drawn:
        return message_png(title, note)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    for run, equity in drawn.items():
        ax.plot(equity.index, equity.to_numpy(dtype=float), lw=1, label=run)
    ax.legend(loc="upper left", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.tick_params(axis="x", rotation=20)
    ax.set_title(title, fontsize=9)
    return _png(fig)
