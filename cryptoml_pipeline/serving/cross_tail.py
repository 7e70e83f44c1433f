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


def _moments(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``x`` ``[w, M]`` against ``y`` ``[w]``: ``(cov, var_x, var_y)``, ddof=1,
    NaN where a window holds a NaN (pandas ``min_periods = w``)."""
    w = x.shape[0]
    dx = x - x.mean(axis=0)
    dy = y - y.mean()
    cov = (dx * dy[:, None]).sum(axis=0) / (w - 1)
    var_x = (dx * dx).sum(axis=0) / (w - 1)
    var_y = float((dy * dy).sum() / (w - 1))
    return cov, var_x, np.full_like(var_x, var_y)


def cross_rows(
    columns: list[str], logp: np.ndarray, rows: np.ndarray, config: CrossAssetConfig
) -> dict[str, np.ndarray]:
    """``{feature: [len(rows), M]}`` at union rows ``rows`` of the log-close matrix ``logp``
    ``[T, M]`` (columns = sorted member labels, the pivot's order)."""
    names, _ = cross_asset_plan(columns, config)
    n, m = len(rows), len(columns)
    out = {name: np.full((n, m), np.nan) for name in names}
    if not names:
        return out
    by_base = {base_asset(s): i for i, s in enumerate(columns)}
    ret = np.full_like(logp, np.nan)
    ret[1:] = logp[1:] - logp[:-1]

    def window(p: int, w: int) -> np.ndarray | None:
        return ret[p - w + 1 : p + 1] if p - w + 1 >= 1 else None

    refs = [
        (ref, by_base[ref.upper()]) for ref in config.reference_assets if ref.upper() in by_base
    ]
    beta_ref = by_base.get(config.beta_reference.upper())
    horizons = sorted(set(config.relative_strength_horizons) | {config.sector_horizon})
    sectors = {
        s: [columns.index(x) for x in members]
        for s, members in _sector_members(columns, config).items()
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        for j, p in enumerate(int(r) for r in rows):
            for ref, r in refs:
                for w in config.correlation_windows:
                    win = window(p, w)
                    if win is None:
                        continue
                    cov, vx, vy = _moments(win, win[:, r])
                    corr = np.clip(cov / np.sqrt(vx * vy), -1.0, 1.0)
                    corr[r] = np.nan if np.isnan(corr[r]) else 1.0
                    out[f"corr_{ref.lower()}_{w}"][j] = corr
            name = f"beta_{config.beta_reference.lower()}_{config.beta_window}"
            win = window(p, config.beta_window) if beta_ref is not None else None
            if name in out and win is not None and beta_ref is not None:
                cov, _, vy = _moments(win, win[:, beta_ref])
                out[name][j] = np.where(vy > 0, cov / vy, np.nan)
            moves = {
                h: logp[p] - logp[p - h] if p - h >= 0 else np.full(m, np.nan) for h in horizons
            }
            basket = {h: _nanmean(v) for h, v in moves.items()}
            for h in config.relative_strength_horizons:
                if f"rs_basket_{h}" in out:
                    out[f"rs_basket_{h}"][j] = moves[h] - basket[h]
            h = config.sector_horizon
            for sector, idx in sectors.items():
                name = f"sector_rot_{sector}_{h}"
                if name in out:
                    out[name][j] = _nanmean(moves[h][idx]) - basket[h]
    return out


def _nanmean(values: np.ndarray) -> float:
    ok = ~np.isnan(values)
    return float(values[ok].mean()) if ok.any() else float("nan")
