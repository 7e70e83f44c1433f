"""Feature standardisation fitted on training rows only (never the full sample)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

STD_FLOOR = 1e-8


@dataclass(frozen=True, eq=False)
class Scaler:
    """Per-column ``(x - mean) / std``. ``transform`` returns float32 and keeps NaN as NaN.

    The arrays are float64 and read-only; ``eq=False`` because arrays have no truth value.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if mean.shape != std.shape:
            raise ValueError(f"scaler mean {mean.shape} and std {std.shape} differ in shape")
        mean.setflags(write=False)
        std.setflags(write=False)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected an [n, {self.n_features}] matrix, got shape {X.shape}")
        return ((X - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for the model manifest."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scaler:
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            std=np.asarray(data["std"], dtype=np.float64),
        )


def fit_scaler(X: np.ndarray) -> Scaler:
    """Column means and stds over the finite values of ``X`` (pass ONLY the training rows).

    A column without any finite value gets mean 0 and std 1; stds are floored at ``1e-8``.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"fit_scaler expects a 2-D matrix, got shape {X.shape}")
    X = np.where(np.isfinite(X), X, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN columns
        mean = np.nanmean(X, axis=0) if X.shape[0] else np.full(X.shape[1], np.nan)
        std = np.nanstd(X, axis=0) if X.shape[0] else np.full(X.shape[1], np.nan)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std), std, 1.0)
    return Scaler(mean=mean, std=np.maximum(std, STD_FLOOR))
