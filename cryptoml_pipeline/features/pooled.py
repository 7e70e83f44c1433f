"""The pooled family: features whose scale does not drift across symbols, regimes or years, so
that one model can pool every member of the universe (``features.pooled``; on by default, the
declared selection's pick).

Volatility unit: ``sigma_t`` = the trailing std (ddof=1) of the symbol's 1-bar log returns over
its last ``vol_window`` rows (168 bars = a week of hours; NaN before that many returns exist).
A move over ``h`` bars is expressed in ``sigma_t * sqrt(h)``. ``h`` bars are the symbol's own
rows (as in the technical family); every value at row ``t`` uses rows ``<= t`` only.

Per symbol (:func:`symbol_pooled_features`):

* ``pool_ret_{h}`` — ``log(close_t / close_{t-h}) / (sigma_t sqrt(h))`` for every horizon;
* ``pool_range_{h}`` — ``log(max high / min low)`` over the last ``h`` bars (``t`` included)
  ``/ (sigma_t sqrt(h))``;
* ``pool_dist_high_{N}`` / ``pool_dist_low_{N}`` — ``log(close_t / max high)`` (<= 0) and
  ``log(close_t / min low)`` (>= 0) over the last ``N`` bars, ``/ (sigma_t sqrt(N))``;
* ``pool_volume_{W}`` — the bar's volume / the mean volume of the last ``W`` bars (``t``
  included; ``W`` = 720 bars, a month): NaN where that mean is 0.

Across the universe at each bar (:func:`cross_section_features`), over the members LISTED at
that bar — the symbols with a row at that time and a finite value (a member before its listing,
or in its warm-up, counts for nothing):

* ``pool_mkt_ret_{h}`` — the equal-weight mean of the members' ``pool_ret_{h}``;
* ``pool_{ref}_ret_{h}`` — the reference asset's (BTC's) ``pool_ret_{h}``, on every row;
* ``pool_rank_ret_{h}`` / ``pool_rank_volume_{W}`` — percentile rank ``(rank - 0.5) / n``
  (average ranks for ties) of the member's value among the ``n`` members: 0.5 for a lone member.

Basis (:func:`basis_features`), for the symbols whose candles are the perpetual's and whose spot
candles are given: ``pool_basis`` = perpetual close / spot close − 1 at bars where both exist
(same open time, never filled), and ``pool_basis_z_{w}`` its z-score over the symbol's last
``w`` rows (NaN unless all ``w`` bases exist; 0 for a constant window).

Funding carry (:func:`funding_carry_features`), all PER HOUR: a settlement's rate / the hours
since the symbol's previous settlement (:func:`market.settlements.rate_per_hour`; the first
settlement has no interval and no value). Per settlement: ``pool_funding_ph`` (the last rate),
``pool_funding_mean_{H}h_ph`` (mean of the per-hour rates settled in the last ``H`` hours, the
settlement included) and ``pool_funding_z_{n}`` (z-score over the last ``n`` settlements, NaN
until ``n`` exist, 0 for a constant window). A row stamped ``t`` sees its symbol's last
settlement stamped ``<= t``.

No column is a raw price level or a raw-scale quantity whose range drifts over years: those stay
in the technical / cross-asset families (:data:`RAW_SCALE_PREFIXES`), which
``features.pooled.exclude_raw_scale`` keeps away from the models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cryptoml_pipeline.market.settlements import rate_per_hour
from cryptoml_pipeline.market.source import SPOT_CLOSE, with_spot_close
from cryptoml_pipeline.settings import PooledConfig

__all__ = [
    "PREFIX",
    "RAW_SCALE_PREFIXES",
    "basis_features",
    "cross_section_features",
    "funding_carry_features",
    "is_raw_scale",
    "percentile_ranks",
    "pooled_features",
    "pooled_plan",
    "pooled_warmup",
    "symbol_pooled_features",
]

PREFIX = "pool_"
# model inputs whose scale is a symbol's raw return / price scale (drifts across symbols and
# years); their lags (``<name>__lag<k>``) follow their column
RAW_SCALE_PREFIXES: tuple[str, ...] = (
    "ret_",
    "rv_",
    "atr_pct_",
    "macd_hist_pct",
    "vw_pressure_",
    "rs_basket_",
    "sector_rot_",
    "beta_",
)
_STD_FLOOR = 1e-12  # a window of identical values has std 0 up to float noise


def is_raw_scale(column: str) -> bool:
    """Whether a feature column (or its lagged copy) is a raw-scale model input."""
    return column.split("__lag", 1)[0].startswith(RAW_SCALE_PREFIXES)


def _base(symbol: str) -> str:
    return symbol.split("/")[0].split(":")[0].upper()


def _symbol_rows(ts: pd.Series, sym: pd.Series) -> list[np.ndarray]:
    """Each symbol's row positions in time order."""
    order = np.lexsort((ts.array.asi8, sym.to_numpy()))
    sorted_sym = sym.to_numpy()[order]
    cuts = np.flatnonzero(sorted_sym[1:] != sorted_sym[:-1]) + 1
    return [rows for rows in np.split(order, cuts) if len(rows)]


def _symbol_names(config: PooledConfig, has_volume: bool) -> list[str]:
    names = [f"{PREFIX}ret_{h}" for h in config.horizons]
    names += [f"{PREFIX}range_{h}" for h in config.horizons]
    for n in config.extreme_windows:
        names += [f"{PREFIX}dist_high_{n}", f"{PREFIX}dist_low_{n}"]
    if has_volume:
        names.append(f"{PREFIX}volume_{config.volume_window}")
    return names


def pooled_plan(
    symbols: Sequence[str],
    config: PooledConfig,
    *,
    has_volume: bool,
    with_funding: bool,
    with_spot: bool,
) -> tuple[list[str], dict[str, str]]:
    """``(feature names, {absent feature or group: reason})`` for this data."""
    absent: dict[str, str] = {}
    names = _symbol_names(config, has_volume)
    if not has_volume:
        absent[f"{PREFIX}volume_*, {PREFIX}rank_volume_*"] = "candles have no volume column"
    names += [f"{PREFIX}mkt_ret_{h}" for h in config.market_horizons]
    ref = config.market_reference.upper()
    if ref in {_base(s) for s in symbols}:
        names += [f"{PREFIX}{ref.lower()}_ret_{h}" for h in config.market_horizons]
    else:
        absent[f"{PREFIX}{ref.lower()}_ret_*"] = f"reference asset {ref} is not in the symbol set"
    names += [f"{PREFIX}rank_ret_{h}" for h in config.rank_horizons]
    if has_volume:
        names.append(f"{PREFIX}rank_volume_{config.volume_window}")
    if with_spot:
        names += [f"{PREFIX}basis", f"{PREFIX}basis_z_{config.basis_zscore_window}"]
    else:
        absent[f"{PREFIX}basis*"] = "no spot candles of the perpetuals given"
    if with_funding:
        names += _funding_names(config)
    else:
        absent[f"{PREFIX}funding_*"] = "no funding data given"
    return names, absent


def _funding_names(config: PooledConfig) -> list[str]:
    return [
        f"{PREFIX}funding_ph",
        f"{PREFIX}funding_mean_{config.funding_mean_hours}h_ph",
        f"{PREFIX}funding_z_{config.funding_zscore_settlements}",
    ]


def pooled_warmup(config: PooledConfig) -> int:
    """Rows of a symbol's history after which every candle-based pooled value is defined."""
    windows = [*config.horizons, *config.extreme_windows, config.volume_window]
    return int(max(config.vol_window, max(windows, default=0), config.basis_zscore_window))


def symbol_pooled_features(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray | None,
    config: PooledConfig,
) -> dict[str, np.ndarray]:
    """The per-symbol block of ONE symbol's time-ordered arrays (see the module docstring)."""
    logc = pd.Series(np.log(np.asarray(close, dtype=np.float64)))
    log_high = pd.Series(np.log(np.asarray(high, dtype=np.float64)))
    log_low = pd.Series(np.log(np.asarray(low, dtype=np.float64)))
    sigma = logc.diff().rolling(config.vol_window, min_periods=config.vol_window).std(ddof=1)
    sigma = sigma.where(sigma > _STD_FLOOR)  # a flat week has no vol unit: NaN, never inf

    def unit(h: int) -> pd.Series:
        return sigma * np.sqrt(h)

    out: dict[str, np.ndarray] = {}
    for h in config.horizons:
        out[f"{PREFIX}ret_{h}"] = (logc.diff(h) / unit(h)).to_numpy()
    for h in config.horizons:
        top = log_high.rolling(h, min_periods=h).max()
        bottom = log_low.rolling(h, min_periods=h).min()
        out[f"{PREFIX}range_{h}"] = ((top - bottom) / unit(h)).to_numpy()
    for n in config.extreme_windows:
        top = log_high.rolling(n, min_periods=n).max()
        bottom = log_low.rolling(n, min_periods=n).min()
        out[f"{PREFIX}dist_high_{n}"] = ((logc - top) / unit(n)).to_numpy()
        out[f"{PREFIX}dist_low_{n}"] = ((logc - bottom) / unit(n)).to_numpy()
    if volume is not None:
        w = config.volume_window
        v = pd.Series(np.asarray(volume, dtype=np.float64))
        mean = v.rolling(w, min_periods=w).mean()
        out[f"{PREFIX}volume_{w}"] = (v / mean.where(mean > 0)).to_numpy()
    return out


def percentile_ranks(wide: pd.DataFrame) -> pd.DataFrame:
    """Row-wise percentile rank ``(rank - 0.5) / n`` over the finite cells of each row (average
    ranks for ties); NaN cells stay NaN and do not count in ``n``."""
    ranks = wide.rank(axis=1, method="average", na_option="keep")
    count = wide.notna().sum(axis=1)
    return ranks.sub(0.5).div(count.where(count > 0), axis=0)


def cross_section_features(
    timestamps: pd.Series,
    symbols: pd.Series,
    per_symbol: dict[str, np.ndarray],
    config: PooledConfig,
) -> dict[str, np.ndarray]:
    """Market, reference and rank columns for the long rows, from the per-symbol block
    ``per_symbol`` (aligned with the rows); members listed at a bar = its rows with a finite
    value."""
    ts = pd.Series(timestamps).astype("datetime64[ns, UTC]").reset_index(drop=True)
    sym = pd.Series(symbols).astype(str).reset_index(drop=True)
    n = len(ts)
    out: dict[str, np.ndarray] = {}
    if n == 0:
        return out
    keys = pd.DataFrame({"timestamp": ts, "symbol": sym})

    def wide_of(values: np.ndarray) -> pd.DataFrame:
        frame = keys.assign(value=values)
        return frame.pivot(index="timestamp", columns="symbol", values="value")

    template = wide_of(np.zeros(n))
    row_of = template.index.get_indexer(ts)
    col_of = template.columns.get_indexer(sym)
    ref = config.market_reference.upper()
    ref_col = next((s for s in template.columns if _base(s) == ref), None)
    for h in config.market_horizons:
        wide = wide_of(per_symbol[f"{PREFIX}ret_{h}"])
        out[f"{PREFIX}mkt_ret_{h}"] = wide.mean(axis=1, skipna=True).to_numpy()[row_of]
        if ref_col is not None:
            out[f"{PREFIX}{ref.lower()}_ret_{h}"] = wide[ref_col].to_numpy()[row_of]
    ranked = [(f"ret_{h}", f"rank_ret_{h}") for h in config.rank_horizons]
    vol_name = f"volume_{config.volume_window}"
    if f"{PREFIX}{vol_name}" in per_symbol:
        ranked.append((vol_name, f"rank_{vol_name}"))
    for source, name in ranked:
        pct = percentile_ranks(wide_of(per_symbol[f"{PREFIX}{source}"]))
        out[f"{PREFIX}{name}"] = pct.to_numpy(dtype=np.float64)[row_of, col_of]
    return out


def _rolling_z(x: pd.Series, window: int) -> pd.Series:
    mean = x.rolling(window, min_periods=window).mean()
    std = x.rolling(window, min_periods=window).std(ddof=1)
    z = ((x - mean) / std.where(std > _STD_FLOOR)).where(std > _STD_FLOOR, 0.0)
    return z.where(std.notna())


def basis_features(
    timestamps: pd.Series,
    symbols: pd.Series,
    close: np.ndarray,
    spot: pd.DataFrame,
    config: PooledConfig,
) -> dict[str, np.ndarray]:
    """``pool_basis`` and its z-score for the rows of the symbols in ``spot`` (``timestamp,
    symbol, close`` of the spot market; the rows' ``close`` is the perpetual's); NaN elsewhere.
    Rows must be grouped per symbol in any order; windows run over each symbol's rows by time."""
    ts = pd.Series(timestamps).astype("datetime64[ns, UTC]").reset_index(drop=True)
    sym = pd.Series(symbols).astype(str).reset_index(drop=True)
    rows = pd.DataFrame({"timestamp": ts, "symbol": sym})
    spot_close = with_spot_close(rows, spot)[SPOT_CLOSE].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        basis = np.asarray(close, dtype=np.float64) / spot_close - 1.0
    basis[~(spot_close > 0)] = np.nan
    w = config.basis_zscore_window
    z = np.full(len(ts), np.nan)
    listed = set(spot["symbol"].astype(str).unique())
    for rows in _symbol_rows(ts, sym):
        if sym.iloc[rows[0]] in listed:
            z[rows] = _rolling_z(pd.Series(basis[rows]), w).to_numpy()
    return {f"{PREFIX}basis": basis, f"{PREFIX}basis_z_{w}": z}


def funding_settlements(funding: pd.DataFrame, config: PooledConfig) -> pd.DataFrame:
    """Per settlement (sorted by symbol, time): ``timestamp, symbol`` and the carry columns."""
    frame = pd.DataFrame(
        {
            "timestamp": pd.Series(funding["timestamp"]).astype("datetime64[ns, UTC]").array,
            "symbol": funding["symbol"].astype(str).array,
            "rate": funding["funding_rate"].to_numpy(dtype=np.float64),
        }
    )
    frame = frame.drop_duplicates(["symbol", "timestamp"], keep="last")
    frame = frame.sort_values(["symbol", "timestamp"], kind="stable", ignore_index=True)
    last, mean, z = _funding_names(config)
    hours, n = f"{config.funding_mean_hours}h", config.funding_zscore_settlements
    parts = []
    for _, group in frame.groupby("symbol", sort=True):
        stamps = group["timestamp"].array.as_unit("ns").asi8
        per_hour = pd.Series(
            rate_per_hour(stamps, group["rate"].to_numpy()),
            index=pd.DatetimeIndex(group["timestamp"]),
        )
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": group["timestamp"].array,
                    "symbol": group["symbol"].array,
                    last: per_hour.to_numpy(),
                    mean: per_hour.rolling(hours).mean().to_numpy(),
                    z: _rolling_z(per_hour.reset_index(drop=True), n).to_numpy(),
                }
            )
        )
    if not parts:  # no settlement: a typed empty frame (the as-of merge needs the time dtype)
        return pd.DataFrame(
            {
                "timestamp": pd.Series([], dtype="datetime64[ns, UTC]"),
                "symbol": pd.Series([], dtype=str),  # the rows' symbol dtype (the merge key)
                **{name: pd.Series([], dtype=np.float64) for name in (last, mean, z)},
            }
        )
    return pd.concat(parts, ignore_index=True)


def funding_carry_features(
    timestamps: pd.Series, symbols: pd.Series, funding: pd.DataFrame, config: PooledConfig
) -> dict[str, np.ndarray]:
    """The carry columns for the rows: each row takes its symbol's last settlement stamped
    ``<= timestamp`` (NaN before the first)."""
    settled = funding_settlements(funding, config).sort_values("timestamp", kind="stable")
    n = len(timestamps)
    left = pd.DataFrame(
        {
            "timestamp": pd.Series(timestamps).astype("datetime64[ns, UTC]").array,
            "symbol": pd.Series(symbols).astype(str).array,
            "_pos": np.arange(n),
        }
    ).sort_values("timestamp", kind="stable")
    merged = pd.merge_asof(left, settled, on="timestamp", by="symbol", direction="backward")
    pos = merged["_pos"].to_numpy()
    out: dict[str, np.ndarray] = {}
    for name in _funding_names(config):
        values = np.full(n, np.nan)
        values[pos] = merged[name].to_numpy(dtype=np.float64)
        out[name] = values
    return out


def pooled_features(
    timestamps: pd.Series,
    symbols: pd.Series,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray | None,
    config: PooledConfig,
    *,
    funding: pd.DataFrame | None = None,
    spot: pd.DataFrame | None = None,
) -> dict[str, np.ndarray]:
    """Every pooled column for the long rows ``(timestamps[i], symbols[i])``, aligned 1:1 (rows
    in any order; one row per symbol and time)."""
    ts = pd.Series(timestamps).astype("datetime64[ns, UTC]").reset_index(drop=True)
    sym = pd.Series(symbols).astype(str).reset_index(drop=True)
    n = len(ts)
    names = _symbol_names(config, volume is not None)
    per_symbol = {name: np.full(n, np.nan) for name in names}
    for rows in _symbol_rows(ts, sym):
        block = symbol_pooled_features(
            high[rows], low[rows], close[rows], None if volume is None else volume[rows], config
        )
        for name, values in block.items():
            per_symbol[name][rows] = values
    out = dict(per_symbol)
    out.update(cross_section_features(ts, sym, per_symbol, config))
    if spot is not None:
        out.update(basis_features(ts, sym, close, spot, config))
    if funding is not None:
        out.update(funding_carry_features(ts, sym, funding, config))
    return out
