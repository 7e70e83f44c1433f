"""What a finished pipeline run left for the dashboard to show before live predictions are tracked:
the walk-forward (out-of-sample) predictions with their realised outcomes, the backtest equity curve
and the report. Each loader returns its value and, when there is none, the one-line reason.

Layout read (written by the project IO manager and ``write_report``):
``OUTPUT/assets/oos_predictions.parquet``, ``OUTPUT/assets/label_table.parquet`` (forward returns),
``OUTPUT/assets/backtest/equity.parquet``, ``OUTPUT/reports/report.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# the tracker's prediction columns the dashboard uses (management.schema.predictions)
TRACKER_COLUMNS = [
    "timestamp",
    "symbol",
    "pred_class",
    "signal",
    "confidence",
    "outcome",
    "forward_return",
    "correct",
]
OOS_PATH = ("assets", "oos_predictions.parquet")
LABELS_PATH = ("assets", "label_table.parquet")
EQUITY_PATH = ("assets", "backtest", "equity.parquet")
REPORT_PATH = ("reports", "report.json")


def empty_tracker_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype="datetime64[ns, UTC]" if c == "timestamp" else float)
            for c in TRACKER_COLUMNS
        }
    )


def _missing(output_dir: Path | None, parts: tuple[str, ...]) -> str | None:
    """The reason a run artifact cannot be read, None when the file is there."""
    if output_dir is None:
        return "pipeline output folder unknown (pass --output-dir)"
    path = Path(output_dir, *parts)
    if not path.is_file():
        return f"{Path(*parts)} not found in {output_dir} (run the main job: `cryptoml run`)"
    return None


def walk_forward_frame(output_dir: Path | None) -> tuple[pd.DataFrame, str | None]:
    """The run's out-of-sample predictions in the tracker's shape, oldest first: ``outcome`` =
    realised label, ``correct`` = 1/0 where it is known (predicted class - 2 == label, as the
    tracker scores it), ``forward_return`` from the label table when it is stored; an empty
    frame and the reason when there are none."""
    reason = _missing(output_dir, OOS_PATH)
    if reason:
        return empty_tracker_frame(), reason
    preds = pd.read_parquet(Path(output_dir, *OOS_PATH))
    needed = {"timestamp", "symbol", "signal", "confidence", "label"}
    if not needed <= set(preds.columns):
        missing = sorted(needed - set(preds.columns))
        return empty_tracker_frame(), f"walk-forward predictions lack columns {missing}"
    if preds.empty:
        return empty_tracker_frame(), "the run stored no walk-forward predictions"
    # pred_class = predicted label + 2 (modeling.predictions); older runs derived it from signal
    pred_class = preds["pred_class"] if "pred_class" in preds else preds["signal"] + 2
    out = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(preds["timestamp"], utc=True),
            "symbol": preds["symbol"].astype(str),
            "pred_class": pred_class.astype(int),
            "signal": preds["signal"].astype(int),
            "confidence": preds["confidence"].astype(float),
            "outcome": preds["label"].astype(float),
        }
    )
    if "expected_return" in preds:
        out["expected_return"] = preds["expected_return"].astype(float)
    known = out["outcome"].notna()
    hit = (out["pred_class"] - 2 == out["outcome"]).astype(float)
    out["correct"] = np.where(known, hit, np.nan)
    out["forward_return"] = _forward_returns(output_dir, out)
    return out.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True), None


def _forward_returns(output_dir: Path | None, frame: pd.DataFrame) -> np.ndarray:
    """The label table's forward return per (timestamp, symbol) row of ``frame``; NaN if absent."""
    if _missing(output_dir, LABELS_PATH):
        return np.full(len(frame), np.nan)
    labels = pd.read_parquet(Path(output_dir, *LABELS_PATH))
    if not {"timestamp", "symbol", "forward_return"} <= set(labels.columns):
        return np.full(len(frame), np.nan)
    labels = labels[["timestamp", "symbol", "forward_return"]].assign(
        timestamp=lambda f: pd.to_datetime(f["timestamp"], utc=True),
        symbol=lambda f: f["symbol"].astype(str),
    )
    merged = frame[["timestamp", "symbol"]].merge(labels, on=["timestamp", "symbol"], how="left")
    return merged["forward_return"].to_numpy(dtype=float)


def run_report(output_dir: Path | None) -> tuple[dict[str, Any] | None, str | None]:
    reason = _missing(output_dir, REPORT_PATH)
    if reason:
        return None, reason
    return json.loads(Path(output_dir, *REPORT_PATH).read_text()), None


def run_equity(output_dir: Path | None) -> tuple[pd.DataFrame | None, str | None]:
    reason = _missing(output_dir, EQUITY_PATH)
    if reason:
        return None, reason
    return pd.read_parquet(Path(output_dir, *EQUITY_PATH)), None


def importance_reason(report: dict[str, Any] | None) -> str | None:
    """Why the report has no feature importance (its ``features.importance.reason``), if it says."""
    features = (report or {}).get("features") or {}
    importance = features.get("importance") or {}
    reason = importance.get("reason")
    return str(reason) if reason else None
