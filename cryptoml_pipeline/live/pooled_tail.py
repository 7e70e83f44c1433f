"""The pooled family (:mod:`features.pooled`) at the few rows the signal reads, in numpy.

The same definitions as :func:`features.pooled.pooled_features` on the tail (see that module's
docstring): per member, its own time-ordered rows (``h`` bars = ``h`` of its rows); the
volatility unit from the member's last ``vol_window`` one-bar log returns; windows that reach
before the member's first tail row are NaN (pandas' ``min_periods``). Only the read timestamps
are evaluated — every member at every read timestamp, for the market move and the ranks — each
from its own trailing window, so the cost does not grow with the tail (a few hundred
microseconds per member instead of a pandas pass over its whole tail). Rolling maxima / minima
are exact; window moments are two-pass here and online in pandas (equal to float rounding,
~1e-15 relative). The cross-section (market mean, reference move, percentile ranks with
average ranks for ties) over the small read matrix, and the funding carry at the as-of
settlement of each read row (numpy over the symbol's settlements).

The basis needs the perpetual's spot close on the same row (``spot_close`` of the tail's
traded rows, :func:`live.market_tail.with_spot_close`); a row without one has no basis, as in
the batch merge.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.stats import rankdata

from cryptoml_pipeline.features.pooled import (
    PREFIX,
    _base,
    _funding_names,
)
from cryptoml_pipeline.market.settlements import rate_per_hour
from cryptoml_pipeline.settings import PooledConfig

_STD_FLOOR = 1e-12  # as features.pooled: a flat window has no volatility unit


def _window(values: np.ndarray, at: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ok, windows)``: the rows of ``at`` whose trailing ``w`` values (row included) lie in
    ``values``, and those windows ``[k_ok, w]``."""
    ok = at - w + 1 >= 0
    if len(values) < w or not ok.any():
        return ok & False, np.empty((0, w))
    return ok, sliding_window_view(values, w)[at[ok] - w + 1]


def _std(values: np.ndarray, at: np.ndarray, w: int) -> np.ndarray:
    """Trailing std (ddof=1) of ``w`` values ending at ``at``; NaN where a window is short or
    holds a NaN."""
    out = np.full(len(at), np.nan)
    ok, win = _window(values, at, w)
    if ok.any():
        dx = win - win.mean(axis=1, keepdims=True)
        out[ok] = np.sqrt((dx * dx).sum(axis=1) / (w - 1))
    return out


def _extreme(values: np.ndarray, at: np.ndarray, w: int, fn) -> np.ndarray:
    out = np.full(len(at), np.nan)
    ok, win = _window(values, at, w)
    if ok.any():
        out[ok] = fn(win, axis=1)
    return out


def member_values(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray | None,
    at: np.ndarray,
    config: PooledConfig,
) -> dict[str, np.ndarray]:
    """The per-symbol pooled columns of ONE member's time-ordered tail arrays at row positions
    ``at`` (:func:`features.pooled.symbol_pooled_features` at those rows)."""
    at = np.asarray(at, dtype=np.int64)
    logc, log_high, log_low = np.log(close), np.log(high), np.log(low)
    ret1 = np.full(len(logc), np.nan)
    ret1[1:] = logc[1:] - logc[:-1]
    sigma = _std(ret1, at, config.vol_window)
    sigma = np.where(sigma > _STD_FLOOR, sigma, np.nan)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for h in config.horizons:
            move = np.full(len(at), np.nan)
            back = at - h >= 0
            move[back] = logc[at[back]] - logc[at[back] - h]
            out[f"{PREFIX}ret_{h}"] = move / (sigma * np.sqrt(h))
        tops = {
            w: _extreme(log_high, at, w, np.max)
            for w in {*config.horizons, *config.extreme_windows}
        }
        bottoms = {
            w: _extreme(log_low, at, w, np.min) for w in {*config.horizons, *config.extreme_windows}
        }
        for h in config.horizons:
            out[f"{PREFIX}range_{h}"] = (tops[h] - bottoms[h]) / (sigma * np.sqrt(h))
        for n in config.extreme_windows:
            unit = sigma * np.sqrt(n)
            out[f"{PREFIX}dist_high_{n}"] = (logc[at] - tops[n]) / unit
            out[f"{PREFIX}dist_low_{n}"] = (logc[at] - bottoms[n]) / unit
        if volume is not None:
            w = config.volume_window
            mean = np.full(len(at), np.nan)
            ok, win = _window(np.asarray(volume, dtype=np.float64), at, w)
            if ok.any():
                mean[ok] = win.mean(axis=1)
            out[f"{PREFIX}volume_{w}"] = volume[at] / np.where(mean > 0, mean, np.nan)
    return out


def trailing_z(values: np.ndarray, at: np.ndarray, window: int) -> np.ndarray:
    """The z-score of ``values[at]`` against the trailing ``window`` values ending there (ddof=1):
    NaN where fewer exist or one is NaN, 0 for a flat window (``features.pooled._rolling_z`` and
    the flow family's funding z-score, at these rows only)."""
    z = np.full(len(at), np.nan)
    ok, win = _window(values, at, window)
    if ok.any() and window > 1:
        mean = win.mean(axis=1)
        std = win.std(axis=1, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            zz = np.where(std > _STD_FLOOR, (win[:, -1] - mean) / std, 0.0)
        z[ok] = np.where(np.isnan(std), np.nan, zz)
    return z


def _basis_at(
    close: np.ndarray, spot_close: np.ndarray, at: np.ndarray, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(basis, basis z-score)`` at rows ``at`` of one traded symbol (z over its last ``w``
    rows: NaN unless all ``w`` bases exist, 0 for a constant window)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        basis = close / spot_close - 1.0
    basis[~(spot_close > 0)] = np.nan
    return basis[at], trailing_z(basis, at, w)


def pooled_rows(
    stamp: np.ndarray,
    codes: np.ndarray,
    arrays: dict[str, np.ndarray],
    members: list[str],
    symbols: Sequence[str],
    read: list[np.ndarray],
    funding: pd.DataFrame | None,
    config: PooledConfig,
    names: Sequence[str],
) -> dict[str, np.ndarray]:
    """The pooled columns in ``names`` at the read rows: ``read[i]`` are the stamps (ns) of
    ``symbols[i]``'s rows, concatenated in that order. ``stamp`` / ``codes`` / ``arrays``:
    the tail's rows (``codes`` index the sorted ``members``; ``arrays`` high, low, close and
    optionally volume and ``spot_close``)."""
    wanted = {n for n in names if n.startswith(PREFIX)}
    total = int(sum(len(r) for r in read))
    out = {n: np.full(total, np.nan) for n in wanted}
    if not wanted or total == 0:
        return out
    union = np.unique(np.concatenate(read))
    volume = arrays.get("volume")
    per_member: dict[str, np.ndarray] = {}
    rows_of: list[np.ndarray] = []
    for j in range(len(members)):
        rows = np.flatnonzero(codes == j)
        rows = rows[np.argsort(stamp[rows], kind="stable")]
        rows_of.append(rows)
        pos = np.searchsorted(stamp[rows], union)
        here = pos < len(rows)
        here[here] = stamp[rows][pos[here]] == union[here]
        if not here.any():
            continue
        block = member_values(
            arrays["high"][rows],
            arrays["low"][rows],
            arrays["close"][rows],
            None if volume is None else volume[rows],
            pos[here],
            config,
        )
        for name, values in block.items():
            wide = per_member.setdefault(name, np.full((len(union), len(members)), np.nan))
            wide[here, j] = values
    cross = _cross_section(per_member, members, config)
    offset = 0
    for symbol, stamps in zip(symbols, read, strict=True):
        j, k = members.index(symbol), len(stamps)
        u = np.searchsorted(union, stamps)
        for name in wanted:
            if name in per_member:
                out[name][offset : offset + k] = per_member[name][u, j]
            elif name in cross:
                values = cross[name]
                out[name][offset : offset + k] = values[u] if values.ndim == 1 else values[u, j]
        if f"{PREFIX}basis" in wanted and "spot_close" in arrays:
            rows = rows_of[j]
            at = np.searchsorted(stamp[rows], stamps)
            basis, z = _basis_at(
                arrays["close"][rows], arrays["spot_close"][rows], at, config.basis_zscore_window
            )
            out[f"{PREFIX}basis"][offset : offset + k] = basis
            zname = f"{PREFIX}basis_z_{config.basis_zscore_window}"
            if zname in wanted:
                out[zname][offset : offset + k] = z
        offset += k
    if funding is not None and any(n.startswith(f"{PREFIX}funding_") for n in wanted):
        offset = 0
        for symbol, stamps in zip(symbols, read, strict=True):
            k = len(stamps)
            carry = _carry_at(funding, symbol, stamps, config)
            for name, values in carry.items():
                if name in wanted:
                    out[name][offset : offset + k] = values
            offset += k
    return out


def _carry_at(
    funding: pd.DataFrame, symbol: str, stamps: np.ndarray, config: PooledConfig
) -> dict[str, np.ndarray]:
    """The funding carry columns of ``symbol`` at ``stamps`` (ns):
    :func:`features.pooled.funding_carry_features` evaluated at the as-of settlement of each
    stamp only — the last per-hour rate, the mean of the per-hour rates settled in the last
    ``funding_mean_hours`` (the time window ``(t - H, t]``, NaN rates skipped) and the z-score
    over the last ``funding_zscore_settlements`` (NaN unless all are defined, 0 when flat)."""
    last, mean_name, z_name = _funding_names(config)
    n = len(stamps)
    out = {name: np.full(n, np.nan) for name in (last, mean_name, z_name)}
    keep = (funding["symbol"].astype(str) == symbol).to_numpy()
    if n == 0 or not keep.any():
        return out
    ts = funding["timestamp"].astype("datetime64[ns, UTC]").array.asi8[keep]
    rate = funding["funding_rate"].to_numpy(dtype=np.float64)[keep]
    order = np.argsort(ts, kind="stable")
    ts, rate = ts[order], rate[order]
    last_of_each = np.r_[ts[1:] != ts[:-1], True]  # duplicates: the last one (as the batch)
    ts, rate = ts[last_of_each], rate[last_of_each]
    per_hour = rate_per_hour(ts, rate)
    at = np.searchsorted(ts, stamps, side="right") - 1
    known = at >= 0
    out[last][known] = per_hour[at[known]]
    out[z_name] = trailing_z(per_hour, at, config.funding_zscore_settlements)
    horizon = pd.Timedelta(hours=config.funding_mean_hours).value
    for k in np.unique(at[known]):
        lo = int(np.searchsorted(ts, ts[k] - horizon, side="right"))
        recent = per_hour[lo : k + 1]
        recent = recent[~np.isnan(recent)]
        out[mean_name][at == k] = recent.mean() if len(recent) else np.nan
    return out


def _row_ranks(wide: np.ndarray) -> np.ndarray:
    """:func:`features.pooled.percentile_ranks` of each row of ``wide`` in numpy: ``(rank -
    0.5) / n`` over the finite cells (average ranks for ties), NaN cells stay NaN."""
    out = np.full(wide.shape, np.nan)
    for i, row in enumerate(wide):
        ok = np.isfinite(row)
        if ok.any():
            out[i, ok] = (rankdata(row[ok], method="average") - 0.5) / ok.sum()
    return out


def _cross_section(
    per_member: dict[str, np.ndarray], members: list[str], config: PooledConfig
) -> dict[str, np.ndarray]:
    """Market mean, reference move (``[U]``) and percentile ranks (``[U, M]``) over the members
    listed at each read timestamp (:func:`features.pooled.cross_section_features`)."""
    out: dict[str, np.ndarray] = {}
    ref = config.market_reference.upper()
    ref_col = next((j for j, s in enumerate(members) if _base(s) == ref), None)
    for h in config.market_horizons:
        wide = per_member.get(f"{PREFIX}ret_{h}")
        if wide is None:
            continue
        ok = np.isfinite(wide)
        count = ok.sum(axis=1)
        total = np.where(ok, wide, 0.0).sum(axis=1)
        out[f"{PREFIX}mkt_ret_{h}"] = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        if ref_col is not None:
            out[f"{PREFIX}{ref.lower()}_ret_{h}"] = wide[:, ref_col].copy()
    ranked = [(f"ret_{h}", f"rank_ret_{h}") for h in config.rank_horizons]
    ranked.append((f"volume_{config.volume_window}", f"rank_volume_{config.volume_window}"))
    for source, name in ranked:
        wide = per_member.get(f"{PREFIX}{source}")
        if wide is not None:
            out[f"{PREFIX}{name}"] = _row_ranks(wide)
    return out
