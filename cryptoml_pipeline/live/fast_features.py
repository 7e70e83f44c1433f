"""The signal's feature rows without the whole universe's feature table.

``compute_features`` over the tail computes every family for every universe member at every tail
row; the signal reads only the requested traded symbols' rows from ``history_rows`` bars before
their signal bar up to it (the GBM lags / the sequence). Here, on the SAME tail rows:

* per-symbol families (technical, microstructure, volatility regime / trend, liquidation proxy)
  run through the batch pipeline's own functions on the symbol's whole tail (recursive smoothers
  and pandas' online rolling moments therefore see exactly the history the batch table's do),
  for the requested traded symbols only — an untraded member enters through its close only;
* cross-asset features only at the read rows (:mod:`.cross_tail`, numpy), from the union of the
  tail's timestamps as the batch pivot builds it;
* funding: the as-of settlement and its z-score over the trailing settlements, per read row;
* calendar features per read row;
* the pooled family at the read rows (:mod:`.pooled_tail`, numpy), every member at every read
  timestamp for the market move and the ranks; the basis from the traded rows' ``spot_close``
  (the perpetual's spot close on the same bar, where the tail carries it).

The values equal ``compute_features``' on the tail to float rounding (tested to 1e-9 in
``test_signal_fast_features.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import DataValidationError, InputError
from cryptoml_pipeline.features import technical as ta
from cryptoml_pipeline.features.build import plan_features, technical_features
from cryptoml_pipeline.features.flow import (
    funding_extreme,
    liquidation_cascade_proxy,
)
from cryptoml_pipeline.features.microstructure import microstructure_features, volume_spike_z
from cryptoml_pipeline.features.regimes import regime_features
from cryptoml_pipeline.features.temporal import temporal_features
from cryptoml_pipeline.live.cross_tail import cross_lookback, cross_rows
from cryptoml_pipeline.live.pooled_tail import pooled_rows, trailing_z
from cryptoml_pipeline.market.settlements import rate_per_hour
from cryptoml_pipeline.settings import FeatureConfig
from cryptoml_pipeline.timing import timeframe_to_timedelta


def _ns(values: pd.Series) -> np.ndarray:
    return np.asarray(values.astype("datetime64[ns, UTC]").array.asi8)


def _symbol_block(
    arrays: dict[str, np.ndarray],
    rows: np.ndarray,
    keep: slice,
    funding_z: np.ndarray | None,
    config: FeatureConfig,
) -> dict[str, np.ndarray]:
    """Per-symbol families of ONE symbol's time-ordered tail rows ``rows``, at ``keep``."""
    h, lw, c = (arrays[k][rows] for k in ("high", "low", "close"))
    volume = arrays["volume"][rows] if "volume" in arrays else None
    micro, flow = config.market_microstructure, config.sentiment_flow
    out = {k: v[keep] for k, v in technical_features(h, lw, c, config).items()}
    if micro.enabled and volume is not None:
        out |= {k: v[keep] for k, v in microstructure_features(h, lw, c, volume, micro).items()}
    if config.temporal.enabled:
        out |= {k: v[keep] for k, v in regime_features(c, config.temporal).items()}
    if funding_z is not None and volume is not None:
        # the liquidation proxy's inputs: the same functions' values when a family above has
        # them already (ret_1 = log_returns(c, 1), rv_w = rolling_volatility(c, w),
        # volume_z_W = volume_spike_z(volume, W))
        ret = out["ret_1"] if 1 in config.return_horizons else ta.log_returns(c, 1).to_numpy()[keep]
        w, vw = flow.liquidation_vol_window, micro.volume_spike_window
        sigma = (
            out[f"rv_{w}"]
            if w in config.volatility_windows
            else ta.rolling_volatility(c, w).to_numpy()[keep]
        )
        vz = (
            out[f"volume_z_{vw}"]
            if micro.enabled
            else volume_spike_z(volume, micro.volume_spike_window)[keep]
        )
        out["liq_cascade_proxy"] = liquidation_cascade_proxy(
            ret, sigma, vz, funding_z, flow.funding_extreme_z
        )
    return out


def _funding_rows(
    funding: pd.DataFrame, symbol: str, stamps: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(funding_rate_per_hour, funding_zscore)`` at ``stamps``: the last settlement ``<= t``
    (its rate per hour of its interval) and the z-score over the last ``window`` settlements up
    to it (``flow.funding_features``)."""
    keep = (funding["symbol"].astype(str) == symbol).to_numpy()
    ts = _ns(funding["timestamp"])[keep]
    order = np.argsort(ts, kind="stable")
    ts, rate = ts[order], funding["funding_rate"].to_numpy(dtype=np.float64)[keep][order]
    if (np.diff(ts) == 0).any():
        raise DataValidationError(f"duplicate funding settlement for {symbol}")
    rate = rate_per_hour(ts, rate)
    at = np.searchsorted(ts, stamps, side="right") - 1
    value = np.full(len(stamps), np.nan)
    known = at >= 0
    value[known] = rate[at[known]]
    # the trailing windows as ta.rolling_mean / ta.rolling_std evaluate them, at the read rows
    z = trailing_z(rate, at, window)
    return value, z


@dataclass(frozen=True)
class SignalRows:
    """:func:`signal_features`' rows as arrays: ``stamps`` (ns) and ``symbols`` per row (each
    symbol's rows contiguous, time-ordered), ``columns`` (name -> float64 values, in
    ``names``' order: the columns ``compute_features`` would give)."""

    stamps: np.ndarray
    symbols: np.ndarray
    names: list[str]
    columns: dict[str, np.ndarray]

    def frame(self) -> pd.DataFrame:
        times = pd.DatetimeIndex(self.stamps.astype("datetime64[ns]")).tz_localize("UTC")
        head = pd.DataFrame({"timestamp": times, "symbol": pd.array(self.symbols, dtype="str")})
        body = pd.DataFrame({n: self.columns[n] for n in self.names})
        return pd.concat([head, body], axis=1)


def signal_features(
    tail: pd.DataFrame,
    funding: pd.DataFrame | None,
    config: FeatureConfig,
    timeframe: str,
    bars: dict[str, pd.Timestamp],
    symbols: Sequence[str],
    history_rows: int,
) -> pd.DataFrame:
    """Feature rows (``timestamp, symbol`` + every column ``compute_features`` would give) of
    each symbol from ``history_rows`` bars before its bar in ``bars`` up to it, in that order."""
    return signal_rows(tail, funding, config, timeframe, bars, symbols, history_rows).frame()


def signal_rows(
    tail: pd.DataFrame,
    funding: pd.DataFrame | None,
    config: FeatureConfig,
    timeframe: str,
    bars: dict[str, pd.Timestamp],
    symbols: Sequence[str],
    history_rows: int,
) -> SignalRows:
    """:func:`signal_features` without the DataFrame."""
    bar = timeframe_to_timedelta(timeframe).value
    stamp = _ns(tail["timestamp"])
    codes, names = pd.factorize(tail["symbol"].astype(str), sort=True)
    members = [str(name) for name in names]  # sorted: the batch pivot's column order
    flow = config.sentiment_flow
    with_funding = funding is not None and flow.enabled
    spot = tail["spot_close"].to_numpy(dtype=np.float64) if "spot_close" in tail else None
    plan = plan_features(
        config,
        symbols=members,
        has_volume="volume" in tail.columns,
        with_funding=with_funding,
        with_spot=spot is not None and bool(np.isfinite(spot).any()),
        with_pooled_funding=funding is not None,
    )
    prices = [k for k in ("high", "low", "close", "volume") if k in tail.columns]
    arrays = {k: tail[k].to_numpy(dtype=np.float64) for k in prices}
    blocks, read = [], []
    for symbol in symbols:
        rows = np.flatnonzero(codes == members.index(symbol))
        rows = rows[np.argsort(stamp[rows], kind="stable")]
        ts = stamp[rows]
        if (np.diff(ts) == 0).any():
            raise InputError(f"compute_features: duplicate candle for {symbol}")
        t = bars[symbol].value
        keep = slice(
            int(np.searchsorted(ts, t - history_rows * bar)), int(np.searchsorted(ts, t, "right"))
        )
        block: dict[str, np.ndarray] = {}
        fz = None
        if with_funding and funding is not None:
            rate, fz = _funding_rows(funding, symbol, ts[keep], flow.funding_zscore_window)
            zname = f"funding_zscore_{flow.funding_zscore_window}"
            block |= {"funding_rate_per_hour": rate, zname: fz}
            block["funding_extreme"] = funding_extreme(fz, flow.funding_extreme_z)
        block |= _symbol_block(arrays, rows, keep, fz, config)
        blocks.append(block)
        read.append(ts[keep])
    stamps = np.concatenate(read) if read else np.empty(0, dtype=np.int64)
    columns: dict[str, np.ndarray] = {}
    if config.temporal.enabled:
        times = pd.DatetimeIndex(stamps.astype("datetime64[ns]")).tz_localize("UTC")
        columns |= temporal_features(times, config)
    if plan.families["cross_asset"]:
        columns |= _cross(stamp, codes, arrays["close"], members, stamps, symbols, read, config)
    if plan.families.get("pooled"):
        pooled_arrays = arrays if spot is None else {**arrays, "spot_close": spot}
        columns |= pooled_rows(
            stamp,
            codes,
            pooled_arrays,
            members,
            symbols,
            read,
            funding,
            config.pooled,
            plan.families["pooled"],
        )
    out: dict[str, np.ndarray] = {}
    for name in plan.names:
        if name in columns:
            out[name] = np.asarray(columns[name], dtype=np.float64)
            continue
        parts = [b.get(name, np.full(len(r), np.nan)) for b, r in zip(blocks, read, strict=True)]
        out[name] = np.concatenate(parts).astype(np.float64) if parts else np.empty(0)
    keys = np.repeat(np.array(list(symbols), dtype=object), [len(r) for r in read])
    return SignalRows(stamps=stamps, symbols=keys, names=list(plan.names), columns=out)


def _cross(
    stamp: np.ndarray,
    codes: np.ndarray,
    close_all: np.ndarray,
    members: list[str],
    stamps: np.ndarray,
    symbols: Sequence[str],
    read: list[np.ndarray],
    config: FeatureConfig,
) -> dict[str, np.ndarray]:
    """Cross-asset values of the read rows (each symbol's own column of the wide frame)."""
    union = np.unique(stamp)
    pos = np.searchsorted(union, stamps)
    if len(pos) == 0:
        return {}
    lo = max(0, int(pos.min()) - cross_lookback(config.cross_asset) - 1)
    hi = int(pos.max()) + 1
    inside = (stamp >= union[lo]) & (stamp <= union[hi - 1])
    close = np.full((hi - lo, len(members)), np.nan)
    close[
        np.searchsorted(union[lo:hi], stamp[inside]),
        codes[inside],
    ] = close_all[inside]
    with np.errstate(invalid="ignore", divide="ignore"):
        logp = np.log(close)
    values = cross_rows(members, logp, pos - lo, config.cross_asset)
    col = np.repeat([members.index(s) for s in symbols], [len(r) for r in read])
    return {name: v[np.arange(len(col)), col] for name, v in values.items()}
