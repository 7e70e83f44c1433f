"""Probability of backtest overfitting by combinatorially symmetric cross-validation (CSCV;
Bailey, Borwein, López de Prado & Zhu 2017, "The probability of backtest overfitting", *Journal
of Computational Finance* 20(4)).

Input: a ``T x N`` performance matrix (rows: time, e.g. daily net returns; columns: the ``N``
configurations of a sweep). Rows with any NaN are dropped first (the configurations must be
compared on the same dates). The remaining rows are cut into ``S`` (even) contiguous blocks of
``T // S`` rows; the ``T % S`` remainder rows at the START are dropped (the most recent data is
kept). For each of the ``C(S, S/2)`` choices of ``S/2`` blocks as in-sample (IS), the complement
is out-of-sample (OOS):

1. the configuration with the best IS metric is selected (ties: the first column);
2. its OOS relative rank is ``omega = rank / (N + 1)`` (rank 1 = worst OOS, N = best; ties get
   the average rank);
3. ``lambda = ln(omega / (1 - omega))``.

``PBO = share of combinations with lambda <= 0``: how often the IS winner is no better than the
OOS median. Also reported: ``prob_oos_loss``, the share of combinations whose selected
configuration's OOS metric is negative, and the performance-degradation slope, the least-squares
slope of the selected configuration's OOS metric on its IS metric across the combinations (the
paper's §2.3; a negative slope means IS excellence predicts OOS disappointment).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError

__all__ = ["PboResult", "default_n_partitions", "pbo_cscv", "sharpe"]

MAX_DEFAULT_PARTITIONS = 16


def sharpe(x: np.ndarray) -> np.ndarray:
    """Column-wise per-period Sharpe ``mean / std (ddof=1)`` of a ``T x N`` array (NaN where
    the standard deviation is zero, or below ``1e-12 |mean|``: rounding noise)."""
    arr = np.asarray(x, dtype=np.float64)
    mean = arr.mean(axis=0)
    std = arr.std(axis=0, ddof=1)
    ok = (std > 0) & (std > 1e-12 * np.abs(mean))  # a constant column's std is rounding noise
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, mean / std, np.nan)


@dataclass(frozen=True)
class PboResult:
    """CSCV outcome. ``logits``: one ``lambda`` per combination (combinations order)."""

    pbo: float
    logits: np.ndarray
    n_combinations: int
    n_configurations: int
    n_partitions: int
    n_observations: int  # rows used (after NaN rows and the remainder were dropped)
    prob_oos_loss: float
    degradation_slope: float | None
    is_metric: np.ndarray  # selected configuration's IS metric, per combination
    oos_metric: np.ndarray  # selected configuration's OOS metric, per combination

    def summary(self) -> dict[str, float | int | None]:
        """JSON-ready scalars."""
        return {
            "pbo": self.pbo,
            "n_partitions": self.n_partitions,
            "n_combinations": self.n_combinations,
            "n_configurations": self.n_configurations,
            "n_observations": self.n_observations,
            "prob_oos_loss": self.prob_oos_loss,
            "degradation_slope": self.degradation_slope,
        }


def default_n_partitions(n_rows: int) -> int:
    """The largest even ``S <= 16`` with at least 2 rows per block (0 when ``n_rows < 4``)."""
    s = min(MAX_DEFAULT_PARTITIONS, n_rows // 2)
    return s - s % 2


def _sharpe_by_combination(blocks: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, ...]:
    """IS and OOS per-period Sharpes, ``C x N`` each, from per-block moments (``S x L x N``
    blocks, ``C x S`` IS masks): sums over the chosen blocks instead of re-slicing the rows."""
    rows = blocks.shape[1]
    mu = blocks.mean(axis=(0, 1))  # centre first: the sums of squares then do not cancel
    centred = blocks - mu
    s1 = centred.sum(axis=1)  # S x N
    s2 = (centred**2).sum(axis=1)
    out = []
    for m in (masks, ~masks):
        w = m.astype(np.float64)
        n = w.sum(axis=1, keepdims=True) * rows
        mean_c = (w @ s1) / n
        std = np.sqrt(np.maximum((w @ s2) - n * mean_c**2, 0.0) / (n - 1))
        mean = mean_c + mu
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = (std > 0) & (std > 1e-12 * np.abs(mean))
            out.append(np.where(ok, mean / std, np.nan))
    return out[0], out[1]


def pbo_cscv(
    performance: np.ndarray | pd.DataFrame,
    n_partitions: int | None = None,
    metric: Callable[[np.ndarray], np.ndarray] = sharpe,
) -> PboResult:
    """PBO of selecting the IS-best column of ``performance`` (``T x N``; see the module
    docstring).

    ``n_partitions`` (``S``): even, ``>= 2``, with ``T >= 2 S`` (after dropping NaN rows);
    ``None`` picks :func:`default_n_partitions` (16 when ``T >= 32``). ``metric`` maps a
    ``rows x N`` array to ``N`` scores (higher is better; NaN scores rank last); the default,
    :func:`sharpe`, is computed from per-block moments for all ``C(S, S/2)`` combinations at once.
    Raises :class:`InputError` for ``N < 2``, odd or too large ``S``, or too few rows.
    """
    arr = np.asarray(
        performance.to_numpy(dtype=np.float64)
        if isinstance(performance, pd.DataFrame)
        else performance,
        dtype=np.float64,
    )
    if arr.ndim != 2:
        raise InputError(f"PBO needs a 2-D T x N matrix (got {arr.ndim} dimensions)")
    arr = arr[~np.isnan(arr).any(axis=1)]
    t, n = arr.shape
    if n < 2:
        raise InputError(f"PBO needs at least 2 configurations (got {n})")
    s = default_n_partitions(t) if n_partitions is None else int(n_partitions)
    if s < 2 or s % 2:
        raise InputError(
            f"PBO needs an even number of partitions >= 2 (got {s} for {t} complete rows)"
        )
    if t < 2 * s:
        raise InputError(f"PBO with {s} partitions needs >= {2 * s} complete rows (got {t})")
    rows = t // s
    blocks = arr[t - rows * s :].reshape(s, rows, n)
    combos = list(itertools.combinations(range(s), s // 2))
    masks = np.zeros((len(combos), s), dtype=bool)
    masks[np.repeat(np.arange(len(combos)), s // 2), np.asarray(combos).ravel()] = True
    if metric is sharpe:
        is_m, oos_m = _sharpe_by_combination(blocks, masks)
    else:
        is_m = np.empty((len(combos), n))
        oos_m = np.empty((len(combos), n))
        for i, m in enumerate(masks):
            is_m[i] = metric(blocks[m].reshape(-1, n))
            oos_m[i] = metric(blocks[~m].reshape(-1, n))
    is_m = np.where(np.isfinite(is_m), is_m, -np.inf)
    oos_m = np.where(np.isfinite(oos_m), oos_m, -np.inf)
    best = np.argmax(is_m, axis=1)
    pick = np.arange(len(combos))
    sel_oos = oos_m[pick, best]
    below = (oos_m < sel_oos[:, None]).sum(axis=1)
    ties = (oos_m == sel_oos[:, None]).sum(axis=1)
    rank = below + (ties + 1) / 2.0  # average rank, 1 = worst
    omega = rank / (n + 1)
    logits = np.log(omega / (1.0 - omega))
    sel_is = is_m[pick, best]
    finite = np.isfinite(sel_is) & np.isfinite(sel_oos)
    slope = None
    if finite.sum() >= 2 and np.ptp(sel_is[finite]) > 0:
        slope = float(np.polyfit(sel_is[finite], sel_oos[finite], 1)[0])
    return PboResult(
        pbo=float(np.mean(logits <= 0)),
        logits=logits,
        n_combinations=len(combos),
        n_configurations=n,
        n_partitions=s,
        n_observations=rows * s,
        prob_oos_loss=float(np.mean(sel_oos < 0)),
        degradation_slope=slope if slope is None or math.isfinite(slope) else None,
        is_metric=sel_is,
        oos_metric=sel_oos,
    )
