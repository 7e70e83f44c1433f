"""Causal multi-timeframe windows for :class:`~cryptoml_pipeline.modeling.nets.MultiScaleLSTMCNN`.

A decision row is a bar of the base timeframe with open time ``t``; the decision is taken at its
close, ``t + base_bar``. For every other timeframe ``tf`` the model may only see bars that have
*closed* by then: open time ``s`` with ``s + tf_bar <= t + base_bar`` (an hourly decision at 10:00
sees the 15m bar opened 09:45 but not the 4h bar opened 08:00, which closes at 12:00). The window
of a scale is the last ``sequence_length`` such bars of the same symbol; it is valid only if those
bars are contiguous (no gap) and finite. A sample exists only where *every* scale has a valid
window, so training spans just the period all timeframes cover.

Per-scale inputs are a small causal bar description (:data:`SCALE_FEATURES`), standardised with a
scaler fitted on bars that closed before the fold's validation start (never on later bars).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.scaling import Scaler, fit_scaler
from cryptoml_pipeline.timing import timeframe_to_timedelta

SCALE_FEATURES = ["log_return", "log_range", "body", "log_volume_change"]


def _ns(ts: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(pd.Series(ts).astype("datetime64[ns, UTC]")).asi8


def scale_bar_features(candles: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Per symbol, sorted by time: ``log_return`` and ``log_volume_change`` against the previous
    bar (NaN if it is not exactly one bar earlier), ``log_range = ln(high/low)`` and
    ``body = (close - open) / open``. Every value uses its own bar and the one before it only."""
    need = {"timestamp", "symbol", "open", "high", "low", "close", "volume"}
    missing = need - set(candles.columns)
    if missing:
        raise InputError(f"{timeframe} candles lack columns {sorted(missing)}")
    c = candles.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    ts = _ns(c["timestamp"])
    sym = c["symbol"].astype(str).to_numpy()
    contiguous = np.zeros(len(c), dtype=bool)
    contiguous[1:] = (sym[1:] == sym[:-1]) & (
        np.diff(ts) == timeframe_to_timedelta(timeframe).value
    )
    close = c["close"].to_numpy(dtype=np.float64)
    vol = np.log1p(c["volume"].to_numpy(dtype=np.float64))
    prev_close = np.concatenate([[np.nan], close[:-1]])
    prev_vol = np.concatenate([[np.nan], vol[:-1]])
    out = pd.DataFrame({"timestamp": c["timestamp"], "symbol": c["symbol"].astype(str)})
    out["log_return"] = np.where(contiguous, np.log(close / prev_close), np.nan)
    out["log_range"] = np.log(c["high"].to_numpy(dtype=np.float64) / c["low"].to_numpy())
    out["body"] = (close - c["open"].to_numpy(dtype=np.float64)) / c["open"].to_numpy()
    out["log_volume_change"] = np.where(contiguous, vol - prev_vol, np.nan)
    return out


def last_closed_index(
    decision_close_ns: np.ndarray, bar_open_ns: np.ndarray, bar_ns: int
) -> np.ndarray:
    """Index of the last bar (``bar_open_ns`` sorted) whose close ``open + bar`` is at or before
    each decision close; -1 where none has closed yet."""
    return np.searchsorted(bar_open_ns + bar_ns, decision_close_ns, side="right") - 1


def fit_scale_scalers(
    scale_features: dict[str, pd.DataFrame], timeframes: dict[str, str], before: pd.Timestamp
) -> dict[str, Scaler]:
    """One scaler per scale, fitted on the bars that closed before ``before`` (training only)."""
    out = {}
    cut = pd.Timestamp(before).value
    for name, frame in scale_features.items():
        bar = timeframe_to_timedelta(timeframes[name]).value
        closed = _ns(frame["timestamp"]) + bar <= cut
        if not closed.any():
            raise InputError(f"scale {name}: no bar closed before {before}; cannot fit a scaler")
        out[name] = fit_scaler(frame.loc[closed, SCALE_FEATURES].to_numpy(dtype=np.float64))
    return out


class MultiScaleDataset(Dataset):
    """Samples ``(x [n_scales, L, F] float32, y int64)``; ``ends[k, s]`` is the row of scale ``s``'s
    matrix where sample ``k``'s window ends. ``rows[k]`` is the decision row in the base table."""

    def __init__(
        self,
        matrices: list[np.ndarray],
        ends: np.ndarray,
        rows: np.ndarray,
        classes: np.ndarray,
        sequence_length: int,
        targets: np.ndarray | None = None,
    ) -> None:
        self.sequence_length = int(sequence_length)
        self._mats = [torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)) for m in matrices]
        self.ends = np.asarray(ends, dtype=np.int64).reshape(len(rows), len(matrices))
        self.rows = np.asarray(rows, dtype=np.int64)
        self.classes = np.asarray(classes, dtype=np.int64)
        # regression: float targets (forward returns in threshold units); else the class index
        self._targets = (
            torch.from_numpy(np.asarray(targets, dtype=np.float32))
            if targets is not None
            else torch.from_numpy(self.classes)
        )

    @property
    def labeled(self) -> bool:
        return bool(self.classes.size == 0 or (self.classes >= 0).all())

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        L = self.sequence_length
        x = torch.stack(
            [m[e - L + 1 : e + 1] for m, e in zip(self._mats, self.ends[index], strict=True)]
        )
        return x, self._targets[index]

    def class_counts(self, n_classes: int = 5) -> np.ndarray:
        labeled = self.classes[self.classes >= 0]
        return np.bincount(labeled, minlength=n_classes)[:n_classes]


def build_multiscale_dataset(
    decisions: pd.DataFrame,
    row_mask: np.ndarray,
    labels: np.ndarray | None,
    base_timeframe: str,
    scale_features: dict[str, pd.DataFrame],
    timeframes: dict[str, str],
    scalers: dict[str, Scaler],
    sequence_length: int,
    returns: np.ndarray | None = None,
) -> MultiScaleDataset:
    """Samples for the decision rows selected by ``row_mask`` where every scale has a valid,
    causal window (see the module docstring). ``labels`` (label values -2..2, NaN = unusable) is
    aligned with ``decisions``; ``None`` for inference. ``returns`` (aligned, e.g. forward returns
    divided by the strong threshold) makes the targets float, for the regression head."""
    names = list(scale_features)
    if not names:
        raise InputError("the multi-scale model needs at least one timeframe")
    n = len(decisions)
    mask = np.asarray(row_mask, dtype=bool)
    if mask.shape != (n,):
        raise InputError(f"row_mask has shape {mask.shape}, expected ({n},)")
    decision_close = _ns(decisions["timestamp"]) + timeframe_to_timedelta(base_timeframe).value
    dec_sym = decisions["symbol"].astype(str).to_numpy()
    L = sequence_length
    ok = mask.copy()
    if labels is not None:
        ok &= np.isfinite(np.asarray(labels, dtype=np.float64))
    if returns is not None:
        ok &= np.isfinite(np.asarray(returns, dtype=np.float64))
    ends = np.full((n, len(names)), -1, dtype=np.int64)
    matrices = []
    for s, name in enumerate(names):
        frame = scale_features[name]
        matrix = scalers[name].transform(frame[SCALE_FEATURES].to_numpy(dtype=np.float64))
        matrices.append(matrix)
        bar = timeframe_to_timedelta(timeframes[name]).value
        opens = _ns(frame["timestamp"])
        sym = frame["symbol"].astype(str).to_numpy()
        order_ok = (sym[:-1] < sym[1:]) | ((sym[:-1] == sym[1:]) & (opens[:-1] < opens[1:]))
        if not order_ok.all():
            raise InputError(f"scale {name}: bars must be sorted by symbol, then time, unique")
        finite = np.isfinite(matrix).all(axis=1)
        bad = np.concatenate([[0], np.cumsum(~finite)])
        for symbol in np.unique(dec_sym):
            lo, hi = np.searchsorted(sym, symbol, "left"), np.searchsorted(sym, symbol, "right")
            sel = np.flatnonzero(dec_sym == symbol)
            if hi == lo:
                ok[sel] = False
                continue
            last = last_closed_index(decision_close[sel], opens[lo:hi], bar) + lo
            first = last - L + 1
            valid = (first >= lo) & (last >= lo)
            f = np.where(valid, first, lo)
            lst = np.where(valid, last, lo)
            valid &= opens[lst] - opens[f] == (L - 1) * bar  # contiguous, no gap
            valid &= (bad[lst + 1] - bad[f]) == 0  # all finite
            ends[sel, s] = np.where(valid, last, -1)
            ok[sel] &= valid
    rows = np.flatnonzero(ok)
    if labels is None:
        classes = np.full(rows.shape, -1, dtype=np.int64)
    else:
        classes = (np.asarray(labels, dtype=np.float64)[rows] + 2).astype(np.int64)
    targets = None if returns is None else np.asarray(returns, dtype=np.float64)[rows]
    return MultiScaleDataset(matrices, ends[rows], rows, classes, L, targets=targets)
