"""Cross-asset features at a few rows of the time-aligned wide frame, in numpy.

The same definitions as :func:`features.cross_asset.cross_asset_features` (see its module
docstring): closes pivoted onto the union of the tail's timestamps (NaN where a member has no
candle), one-bar log returns taken row by row on that union, trailing windows. Only the rows
the signal reads are evaluated, each from its own trailing window of the union, so the cost does
not grow with the tail. A window reaching before the first union row is NaN, as with pandas'
``min_periods``. Pandas' rolling moments are online (add/remove) updates; the two-pass window
moments here agree with them to float rounding (~1e-15 relative on these windows).
"""

from __future__ import annotations

import numpy as np

from cryptoml_pipeline.features.cross_asset import _sector_members, base_asset, cross_asset_plan
from cryptoml_pipeline.settings import CrossAssetConfig


def cross_lookback(config: CrossAssetConfig) -> int:
    """Union rows before an evaluated row that its cross-asset values read (log prices)."""
    windows = [*config.correlation_windows, config.beta_window]
    windows += [*config.relative_strength_horizons, config.sector_horizon]
    return int(max(windows, default=0))


def _window_moments(
    ret: np.ndarray, rows: np.ndarray, w: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The rows whose trailing ``w`` returns lie inside ``ret`` (``ok``), their windows'
    deviations from the window means ``[k, w, M]`` and the variances ``[k, M]`` (ddof=1, NaN
    where a window holds a NaN: pandas ``min_periods = w``)."""
    ok = rows - w + 1 >= 1
    if not ok.any():
        return None
    win = ret[rows[ok][:, None] + np.arange(-w + 1, 1)]
    dx = win - win.mean(axis=1, keepdims=True)
    return ok, dx, (dx * dx).sum(axis=1) / (w - 1)


def _row_nanmean(values: np.ndarray) -> np.ndarray:
    """Per row, the mean of the non-NaN values (NaN when none)."""
    ok = ~np.isnan(values)
    count = ok.sum(axis=1)
    total = np.where(ok, values, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def cross_rows(
    columns: list[str], logp: np.ndarray, rows: np.ndarray, config: CrossAssetConfig
) -> dict[str, np.ndarray]:
    """``{feature: [len(rows), M]}`` at union rows ``rows`` of the log-close matrix ``logp``
    ``[T, M]`` (columns = sorted member labels, the pivot's order); every row at once."""
    names, _ = cross_asset_plan(columns, config)
    rows = np.asarray(rows, dtype=np.int64)
    n, m = len(rows), len(columns)
    out = {name: np.full((n, m), np.nan) for name in names}
    if not names or n == 0:
        return out
    by_base = {base_asset(s): i for i, s in enumerate(columns)}
    ret = np.full_like(logp, np.nan)
    ret[1:] = logp[1:] - logp[:-1]
    refs = [
        (ref, by_base[ref.upper()]) for ref in config.reference_assets if ref.upper() in by_base
    ]
    beta_ref = by_base.get(config.beta_reference.upper())
    beta_name = f"beta_{config.beta_reference.lower()}_{config.beta_window}"
    windows = set(config.correlation_windows) if refs else set()
    if beta_name in out and beta_ref is not None:
        windows.add(config.beta_window)
    horizons = sorted(set(config.relative_strength_horizons) | {config.sector_horizon})
    sectors = {
        s: [columns.index(x) for x in members]
        for s, members in _sector_members(columns, config).items()
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        moments = {w: _window_moments(ret, rows, w) for w in sorted(windows)}
        for ref, r in refs:
            for w in config.correlation_windows:
                if moments[w] is None:
                    continue
                ok, dx, var = moments[w]  # type: ignore[misc]
                cov = (dx * dx[:, :, r : r + 1]).sum(axis=1) / (w - 1)
                corr = np.clip(cov / np.sqrt(var * var[:, r : r + 1]), -1.0, 1.0)
                corr[:, r] = np.where(np.isnan(corr[:, r]), np.nan, 1.0)
                out[f"corr_{ref.lower()}_{w}"][ok] = corr
        if beta_name in out and beta_ref is not None and moments[config.beta_window] is not None:
            ok, dx, var = moments[config.beta_window]  # type: ignore[misc]
            w, b = config.beta_window, beta_ref
            cov = (dx * dx[:, :, b : b + 1]).sum(axis=1) / (w - 1)
            vy = var[:, b : b + 1]
            out[beta_name][ok] = np.where(vy > 0, cov / vy, np.nan)
        moves = {}
        for h in horizons:
            mv = np.full((n, m), np.nan)
            back = rows - h
            valid = back >= 0
            mv[valid] = logp[rows[valid]] - logp[back[valid]]
            moves[h] = mv
        basket = {h: _row_nanmean(v) for h, v in moves.items()}
        for h in config.relative_strength_horizons:
            if f"rs_basket_{h}" in out:
                out[f"rs_basket_{h}"] = moves[h] - basket[h][:, None]
        h = config.sector_horizon
        for sector, idx in sectors.items():
            name = f"sector_rot_{sector}_{h}"
            if name in out:
                out[name] = np.repeat(
                    (_row_nanmean(moves[h][:, idx]) - basket[h])[:, None], m, axis=1
                )
    return out
