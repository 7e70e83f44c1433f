"""Cross-asset features (spec CrossAssetFeatures) on the time-aligned wide frame of all symbols.

Every symbol's close is pivoted onto the union of timestamps (a symbol missing at a time has NaN
there, never a filled value); one-bar log returns are taken per column. All windows are trailing:

* ``corr_{ref}_{w}`` — rolling Pearson correlation of the symbol's returns with reference asset
  ``ref``'s over ``w`` bars (exactly 1 for the reference itself), for each correlation window.
* ``beta_{ref}_{w}`` — rolling ``cov(r, r_ref) / var(r_ref)`` over ``beta_window`` bars.
* ``rs_basket_{h}`` — relative strength: the symbol's ``h``-bar log return minus the equal-weight
  basket's (mean over the symbols present at that time).
* ``sector_rot_{sector}_{h}`` — sector rotation: the sector's equal-weight ``h``-bar log return
  minus the basket's, the same value on every symbol's row at that time.

A feature that cannot be computed from the symbol set is absent and its reason returned by
:func:`cross_asset_plan` (a reference asset not in the set, fewer than two symbols, an empty sector,
fewer than two non-empty sectors) — never zero-filled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cryptoml_pipeline.settings import CrossAssetConfig

__all__ = ["base_asset", "cross_asset_features", "cross_asset_plan", "cross_asset_warmup"]


def base_asset(symbol: str) -> str:
    """``"BTC/USDT:USDT"`` -> ``"BTC"``."""
    return symbol.split("/")[0].split(":")[0].upper()


def _sector_members(symbols: Sequence[str], config: CrossAssetConfig) -> dict[str, list[str]]:
    by_base = {base_asset(s): s for s in symbols}
    return {
        sector: [by_base[b.upper()] for b in bases if b.upper() in by_base]
        for sector, bases in config.sectors.items()
    }


def cross_asset_plan(
    symbols: Sequence[str], config: CrossAssetConfig
) -> tuple[list[str], dict[str, str]]:
    """``(feature names, {absent feature or group: reason})`` for this symbol set."""
    names: list[str] = []
    absent: dict[str, str] = {}
    bases = {base_asset(s) for s in symbols}
    if len(bases) < 2:
        return [], {"cross_asset": f"needs at least two symbols, got {sorted(bases)}"}
    for ref in config.reference_assets:
        group = f"corr_{ref.lower()}_*"
        if ref.upper() in bases:
            names += [f"corr_{ref.lower()}_{w}" for w in config.correlation_windows]
        else:
            absent[group] = f"reference asset {ref} is not in the symbol set {sorted(bases)}"
    beta = f"beta_{config.beta_reference.lower()}_{config.beta_window}"
    if config.beta_reference.upper() in bases:
        names.append(beta)
    else:
        absent[beta] = f"beta reference {config.beta_reference} is not in the symbol set"
    if len(bases) >= 2:
        names += [f"rs_basket_{h}" for h in config.relative_strength_horizons]
    else:
        absent["rs_basket_*"] = "relative strength needs at least two symbols"
    members = _sector_members(symbols, config)
    non_empty = [s for s, m in members.items() if m]
    for sector, m in members.items():
        if not m:
            absent[f"sector_rot_{sector}_{config.sector_horizon}"] = (
                f"sector {sector!r} has no symbol in the set"
            )
    if len(non_empty) >= 2:
        names += [f"sector_rot_{s}_{config.sector_horizon}" for s in non_empty]
    elif non_empty:
        absent[f"sector_rot_{non_empty[0]}_{config.sector_horizon}"] = (
            "sector rotation needs at least two non-empty sectors"
        )
    return names, absent


def cross_asset_warmup(config: CrossAssetConfig) -> int:
    """First fully valid row (one return bar + the longest window)."""
    windows = [*config.correlation_windows, config.beta_window]
    windows += [*config.relative_strength_horizons, config.sector_horizon]
    return int(max(windows)) + 1 if windows else 0


def cross_asset_features(
    timestamps: pd.Series, symbols: pd.Series, close: np.ndarray, config: CrossAssetConfig
) -> dict[str, np.ndarray]:
    """Cross-asset columns for the long rows ``(timestamps[i], symbols[i])``, aligned 1:1."""
    symbols = symbols.astype(str).reset_index(drop=True)
    names, _ = cross_asset_plan(sorted(symbols.unique()), config)
    n = len(symbols)
    out = {name: np.full(n, np.nan) for name in names}
    if not names or n == 0:
        return out
    ts = pd.Series(timestamps).astype("datetime64[ns, UTC]").reset_index(drop=True)
    wide = pd.DataFrame({"timestamp": ts, "symbol": symbols, "close": close}).pivot(
        index="timestamp", columns="symbol", values="close"
    )
    wide = wide.sort_index()
    logp = np.log(wide)
    ret = logp.diff()
    by_base = {base_asset(s): s for s in wide.columns}
    row_of = wide.index.get_indexer(ts)
    col_of = wide.columns.get_indexer(symbols)

    def put(name: str, frame: pd.DataFrame) -> None:
        out[name] = frame.to_numpy(dtype=np.float64)[row_of, col_of]

    def broadcast(name: str, series: pd.Series) -> None:
        out[name] = series.to_numpy(dtype=np.float64)[row_of]

    for ref in config.reference_assets:
        if ref.upper() not in by_base:
            continue
        ref_ret = ret[by_base[ref.upper()]]
        for w in config.correlation_windows:
            corr = ret.rolling(w, min_periods=w).corr(ref_ret)
            corr[by_base[ref.upper()]] = np.where(corr[by_base[ref.upper()]].notna(), 1.0, np.nan)
            put(f"corr_{ref.lower()}_{w}", corr.clip(-1.0, 1.0))
    beta_ref = config.beta_reference.upper()
    if beta_ref in by_base:
        w = config.beta_window
        ref_ret = ret[by_base[beta_ref]]
        cov = ret.rolling(w, min_periods=w).cov(ref_ret)
        var = ref_ret.rolling(w, min_periods=w).var()
        beta = cov.div(var.where(var > 0), axis=0)
        put(f"beta_{beta_ref.lower()}_{w}", beta)
    horizons = set(config.relative_strength_horizons) | {config.sector_horizon}
    moves = {h: logp.diff(h) for h in horizons}
    basket = {h: m.mean(axis=1, skipna=True) for h, m in moves.items()}
    for h in config.relative_strength_horizons:
        if f"rs_basket_{h}" in out:
            put(f"rs_basket_{h}", moves[h].sub(basket[h], axis=0))
    h = config.sector_horizon
    for sector, members in _sector_members(list(wide.columns), config).items():
        name = f"sector_rot_{sector}_{h}"
        if name in out:
            broadcast(name, moves[h][members].mean(axis=1, skipna=True) - basket[h])
    return out
