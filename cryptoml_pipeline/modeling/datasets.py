"""Sliding-window sequence samples for the sequence models (the spec's ``CryptoDataset``).

A sample ends at feature row ``i`` and holds rows ``i - L + 1 .. i`` (``L = sequence_length``),
scaled with a :class:`~cryptoml_pipeline.modeling.scaling.Scaler` fitted on training rows only.
The target is the label *of row i* (its forward return is computed in ``labels.py``, the only
module that looks ahead), as class index ``label + 2``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.predictions import label_to_class
from cryptoml_pipeline.modeling.scaling import Scaler
from cryptoml_pipeline.timing import timeframe_to_timedelta

UNLABELED = -1  # target of inference samples (labels=None)


class SequenceDataset(Dataset):
    """Windows ``X[end - L + 1 : end + 1]`` of one precomputed, scaled float32 matrix.

    ``rows[k]`` is the feature row index at which sample ``k`` ends; ``classes[k]`` its target
    class (``label + 2``, or ``-1`` when unlabeled). ``__getitem__`` returns ``(x [L, F] float32,
    y int64 scalar)``; ``x`` is a view into the shared matrix (no copy).
    """

    def __init__(
        self,
        matrix: np.ndarray,
        rows: np.ndarray,
        classes: np.ndarray,
        sequence_length: int,
        targets: np.ndarray | None = None,
    ) -> None:
        if sequence_length <= 0:
            raise ValueError(f"sequence_length must be positive, got {sequence_length}")
        rows = np.asarray(rows, dtype=np.int64)
        classes = np.asarray(classes, dtype=np.int64)
        if rows.shape != classes.shape:
            raise ValueError("rows and classes must have the same length")
        if rows.size and (rows.min() < sequence_length - 1 or rows.max() >= len(matrix)):
            raise ValueError("a sample window falls outside the feature matrix")
        self.sequence_length = int(sequence_length)
        self.rows = rows
        self.classes = classes
        self._matrix = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))
        # regression: float targets (forward returns in threshold units); else the class index
        self._targets = (
            torch.from_numpy(np.asarray(targets, dtype=np.float32))
            if targets is not None
            else torch.from_numpy(classes)
        )

    @property
    def n_features(self) -> int:
        return int(self._matrix.shape[1])

    @property
    def labeled(self) -> bool:
        return bool(self.classes.size == 0 or (self.classes >= 0).all())

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        end = int(self.rows[index]) + 1
        return self._matrix[end - self.sequence_length : end], self._targets[index]

    def class_counts(self, n_classes: int = 5) -> np.ndarray:
        """Samples per class (unlabeled samples are not counted)."""
        labeled = self.classes[self.classes >= 0]
        return np.bincount(labeled, minlength=n_classes)[:n_classes]


def valid_window_ends(
    timestamps: pd.Series,
    symbols: pd.Series,
    finite_rows: np.ndarray,
    *,
    sequence_length: int,
    timeframe: str,
) -> np.ndarray:
    """Boolean mask: row ``i`` ends a full window of ``sequence_length`` rows that share one symbol,
    are exactly one bar apart, and are all finite."""
    n = len(timestamps)
    if n == 0:
        return np.zeros(0, dtype=bool)
    ts = _epoch_ns(timestamps)
    sym = pd.Series(symbols).astype(str).to_numpy()
    bar = timeframe_to_timedelta(timeframe).value
    continues = np.zeros(n, dtype=bool)
    continues[1:] = (sym[1:] == sym[:-1]) & (np.diff(ts) == bar)
    idx = np.arange(n)
    run_start = np.maximum.accumulate(np.where(continues, 0, idx))
    long_enough = idx - run_start + 1 >= sequence_length
    bad = np.concatenate([[0], np.cumsum(~np.asarray(finite_rows, dtype=bool))])
    lo = np.clip(idx - sequence_length + 1, 0, None)
    all_finite = (bad[idx + 1] - bad[lo]) == 0
    return long_enough & all_finite


def build_dataset(
    features: pd.DataFrame,
    labels: pd.DataFrame | None,
    feature_cols: list[str],
    row_mask: np.ndarray,
    scaler: Scaler,
    sequence_length: int,
    *,
    timeframe: str = "1h",
    returns: np.ndarray | None = None,
) -> SequenceDataset:
    """Samples ending at every row ``i`` with ``row_mask[i]``, a finite label (skipped when
    ``labels is None``: inference, targets -1) and a valid window (see :func:`valid_window_ends`).

    ``labels`` is aligned 1:1 with ``features`` rows (``make_labels`` output on the same candles);
    rows whose timestamp/symbol disagree raise :class:`InputError`. ``returns`` (aligned): float
    targets for a regression head (rows without a finite one are skipped).
    """
    n = len(features)
    row_mask = np.asarray(row_mask, dtype=bool)
    if row_mask.shape != (n,):
        raise InputError(f"row_mask has shape {row_mask.shape}, expected ({n},) feature rows")
    missing = [c for c in feature_cols if c not in features.columns]
    if missing:
        raise InputError(f"feature columns missing from the feature table: {missing}")
    if len(feature_cols) != scaler.n_features:
        raise InputError(
            f"scaler has {scaler.n_features} features, the dataset asks for {len(feature_cols)}"
        )
    matrix = scaler.transform(features[feature_cols].to_numpy(dtype=np.float64))
    ok = row_mask & valid_window_ends(
        features["timestamp"],
        features["symbol"],
        np.isfinite(matrix).all(axis=1),
        sequence_length=sequence_length,
        timeframe=timeframe,
    )
    if labels is None:
        rows = np.flatnonzero(ok)
        classes = np.full(rows.shape, UNLABELED, dtype=np.int64)
    else:
        check_aligned(features, labels)
        label = labels["label"].to_numpy(dtype=np.float64)
        if returns is not None:  # a regression head: rows with a finite return too
            ok = ok & np.isfinite(np.asarray(returns, dtype=np.float64))
        rows = np.flatnonzero(ok & np.isfinite(label))
        classes = label_to_class(label[rows])  # class index = label + 2
        if classes.size and (classes.min() < 0 or classes.max() > 4):
            raise InputError("labels must lie in {-2, -1, 0, 1, 2}")
        if returns is not None:
            targets = np.asarray(returns, dtype=np.float64)[rows]
            return SequenceDataset(matrix, rows, classes, sequence_length, targets=targets)
    return SequenceDataset(matrix, rows, classes, sequence_length)


def check_aligned(features: pd.DataFrame, labels: pd.DataFrame) -> None:
    """Raise :class:`InputError` unless ``labels`` rows match ``features`` rows 1:1."""
    if len(labels) != len(features):
        raise InputError(f"labels have {len(labels)} rows, features {len(features)}")
    f_ts = _epoch_ns(features["timestamp"])
    l_ts = _epoch_ns(labels["timestamp"])
    same = (f_ts == l_ts) & (
        features["symbol"].astype(str).to_numpy() == labels["symbol"].astype(str).to_numpy()
    )
    if not same.all():
        bad = int(np.flatnonzero(~same)[0])
        raise InputError(
            f"labels are not aligned with features at row {bad} "
            f"({features['symbol'].iloc[bad]} {features['timestamp'].iloc[bad]})"
        )


def _epoch_ns(timestamps: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds since the epoch."""
    return pd.DatetimeIndex(pd.Series(timestamps).astype("datetime64[ns, UTC]")).asi8
