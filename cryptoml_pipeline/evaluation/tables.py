"""Small report tables computed from a backtest: trade list, monthly returns, calibration."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

N_CALIBRATION_BINS = 10


def trade_list(trades: pd.DataFrame) -> pd.DataFrame:
    """The trades with their return on notional and holding time in hours."""
    out = trades.copy()
    if out.empty:
        out["return_on_notional"] = pd.Series(dtype=np.float64)
        out["hours_held"] = pd.Series(dtype=np.float64)
        return out
    out["return_on_notional"] = out["pnl"] / out["notional"]
    out["hours_held"] = (out["exit_time"] - out["entry_time"]) / pd.Timedelta(hours=1)
    return out


def monthly_returns(equity: pd.Series, initial_equity: float) -> list[dict[str, Any]]:
    """Return of each UTC calendar month (last mark vs the previous month's last mark)."""
    eq = equity.dropna()
    if eq.empty:
        return []
    month_end = eq.resample("MS").last().dropna()
    previous = np.concatenate([[initial_equity], month_end.to_numpy()[:-1]])
    returns = month_end.to_numpy() / previous - 1.0
    return [
        {"year": int(t.year), "month": int(t.month), "return": float(r)}
        for t, r in zip(month_end.index, returns, strict=True)
    ]


def calibration_table(predictions: pd.DataFrame, bins: int = N_CALIBRATION_BINS) -> list[dict]:
    """Confidence deciles vs realised hit rate: per bin of ``confidence`` (equal-count bins),
    the number of predictions, mean confidence, 5-class accuracy and directional hit rate (rows
    with a non-zero signal and a non-zero label)."""
    needed = {"confidence", "signal", "label"}
    if predictions.empty or not needed <= set(predictions.columns):
        return []
    frame = predictions.loc[predictions["label"].notna(), list(needed)].copy()
    if frame.empty:
        return []
    conf = frame["confidence"].to_numpy(np.float64)
    ranks = pd.Series(conf).rank(method="first").to_numpy()
    n_bins = max(1, min(bins, len(frame)))
    codes = np.minimum(((ranks - 1) * n_bins / len(frame)).astype(int), n_bins - 1)
    signal = frame["signal"].to_numpy(np.float64)
    label = frame["label"].to_numpy(np.float64)
    rows = []
    for b in range(n_bins):
        m = codes == b
        directional = m & (signal != 0) & (label != 0)
        rows.append(
            {
                "bin": b,
                "n": int(m.sum()),
                "confidence_min": float(conf[m].min()),
                "confidence_mean": float(conf[m].mean()),
                "accuracy": float(np.mean(signal[m] == label[m])),
                "hit_rate": (
                    float(np.mean(np.sign(signal[directional]) == np.sign(label[directional])))
                    if directional.any()
                    else None
                ),
                "n_directional": int(directional.sum()),
            }
        )
    return rows
