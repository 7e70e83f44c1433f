"""``build_features`` / ``compute_features``: the causal feature table of long candles.

Families (each switchable in :class:`FeatureConfig`, see ``docs/features.md``):

* ``technical`` — ``ret_h``, ``rv_w``, RSI / CCI / WaveTrend (the spec's "existing features",
  ``use_existing_features`` + ``existing_features``), ``atr_pct``, Bollinger %B, MACD histogram;
* ``microstructure`` — OHLCV estimators (:mod:`.microstructure`) and, when trades are given, the
  exact trade-level versions (:mod:`.trades`);
* ``cross_asset`` — correlations, beta, relative strength, sector rotation (:mod:`.cross_asset`);
* ``temporal`` — cyclical calendar + sessions (:mod:`.temporal`), volatility regime and
  trend-strength decay (:mod:`.regimes`);
* ``sentiment_flow`` — funding z-score / extremes, open-interest change, liquidation-cascade
  proxy (:mod:`.flow`), whale / social sources (:mod:`.sentiment_sources`);
* ``pooled`` — moves in volatility units, volume against its month, market / BTC move,
  cross-sectional ranks, perpetual-spot basis, funding carry per hour (:mod:`.pooled`; off by
  default). With ``pooled.exclude_raw_scale`` the models' inputs
  (:func:`model_feature_columns`) leave out the raw-scale columns, which stay in the table.

A feature that cannot be computed from the data given (no volume, no trades, no open interest, a
reference asset or sector missing from the symbol set, no sentiment source) is ABSENT from the table
and listed with its reason in :attr:`FeaturePlan.unavailable` — never zero-filled or invented.

The result has one row per input row in the INPUT order, stamped with the candle's open time;
row ``t`` uses candles up to and including ``t``, funding / open interest / source values stamped
``<= t``, and trades before the bar's close.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features import technical as ta
from cryptoml_pipeline.features.cross_asset import (
    cross_asset_features,
    cross_asset_plan,
    cross_asset_warmup,
)
from cryptoml_pipeline.features.flow import (
    funding_extreme,
    funding_features,
    liquidation_cascade_proxy,
    open_interest_change,
)
from cryptoml_pipeline.features.microstructure import (
    microstructure_features,
    microstructure_names,
    microstructure_warmup,
    volume_spike_z,
)
from cryptoml_pipeline.features.pooled import (
    is_raw_scale,
    pooled_features,
    pooled_plan,
    pooled_warmup,
)
from cryptoml_pipeline.features.regimes import regime_features, regime_names, regime_warmup
from cryptoml_pipeline.features.sentiment_sources import (
    SOURCE_FEATURES,
    SentimentSource,
    SourceResult,
    asof_values,
    resolve_source,
)
from cryptoml_pipeline.features.temporal import CALENDAR_NAMES, temporal_features
from cryptoml_pipeline.features.trades import trade_feature_names, trade_features, trades_frame
from cryptoml_pipeline.settings import FeatureConfig
from cryptoml_pipeline.timing import timeframe_to_timedelta

__all__ = [
    "FAMILIES",
    "KEY_COLUMNS",
    "FeatureBuild",
    "FeaturePlan",
    "build_features",
    "compute_features",
    "family_of_column",
    "feature_columns",
    "feature_names",
    "model_feature_columns",
    "technical_features",
    "warmup_bars",
]

logger = logging.getLogger(__name__)

KEY_COLUMNS: tuple[str, ...] = ("timestamp", "symbol")
FAMILIES: tuple[str, ...] = (
    "technical",
    "microstructure",
    "cross_asset",
    "temporal",
    "sentiment_flow",
    "pooled",
)
_CANDLE_COLUMNS = ("timestamp", "symbol", "high", "low", "close")


@dataclass(frozen=True)
class FeaturePlan:
    """Which columns each family yields for this config and data, and why others are absent."""

    families: dict[str, list[str]]
    unavailable: dict[str, str] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [name for family in FAMILIES for name in self.families.get(family, [])]

    def metadata(self) -> dict[str, object]:
        """JSON-able summary for asset metadata, reports and docs."""
        return {
            "families": {f: list(v) for f, v in self.families.items()},
            "unavailable": dict(self.unavailable),
            "disabled": list(self.disabled),
        }


@dataclass(frozen=True)
class FeatureBuild:
    table: pd.DataFrame
    plan: FeaturePlan


_FAMILY_PREFIXES: tuple[tuple[str, str], ...] = (
    ("ret_", "technical"),
    ("rv_", "technical"),
    ("rsi_", "technical"),
    ("cci_", "technical"),
    ("wt", "technical"),
    ("atr_pct_", "technical"),
    ("bb_pctb_", "technical"),
    ("macd", "technical"),
    ("ofi_", "microstructure"),
    ("tick_", "microstructure"),
    ("spread_", "microstructure"),
    ("vw_pressure_", "microstructure"),
    ("volume_z_", "microstructure"),
    ("large_", "microstructure"),
    ("corr_", "cross_asset"),
    ("beta_", "cross_asset"),
    ("rs_basket_", "cross_asset"),
    ("sector_rot_", "cross_asset"),
    ("hour_", "temporal"),
    ("dow_", "temporal"),
    ("session_", "temporal"),
    ("vol_", "temporal"),
    ("trend_", "temporal"),
    ("funding_", "sentiment_flow"),
    ("liq_", "sentiment_flow"),
    ("oi_", "sentiment_flow"),
    ("whale_", "sentiment_flow"),
    ("social_", "sentiment_flow"),
    ("pool_", "pooled"),
)


def family_of_column(name: str) -> str:
    """The family a feature column belongs to (by its name), ``"other"`` if unknown."""
    for prefix, family in _FAMILY_PREFIXES:
        if name.startswith(prefix):
            return family
    return "other"


def technical_names(config: FeatureConfig) -> list[str]:
    names = [f"ret_{h}" for h in config.return_horizons]
    names += [f"rv_{w}" for w in config.volatility_windows]
    if config.use_existing_features:
        if "rsi" in config.existing_features:
            names.append(f"rsi_{config.rsi_period}")
        if "cci" in config.existing_features:
            names.append(f"cci_{config.cci_period}")
        if "wave_trend" in config.existing_features:
            names += ["wt1", "wt2", "wt_cross"]
    names.append(f"atr_pct_{config.atr_period}")
    names += [f"bb_pctb_{config.bollinger_window}", "macd_hist_pct"]
    return names


def feature_names(config: FeatureConfig, *, with_funding: bool) -> list[str]:
    """Columns for ONE symbol with volume and (optionally) funding, no trades/OI/sources."""
    return plan_features(
        config, symbols=["X/USDT"], has_volume=True, with_funding=with_funding
    ).names


def plan_features(
    config: FeatureConfig,
    *,
    symbols: Sequence[str],
    has_volume: bool,
    with_funding: bool,
    with_open_interest: bool = False,
    with_trades: bool = False,
    source_results: Mapping[str, SourceResult] | None = None,
    with_spot: bool = False,
    with_pooled_funding: bool | None = None,
) -> FeaturePlan:
    """Decide every column and every absence reason before computing anything.

    ``with_spot``: spot candles of the perpetuals are given (the pooled basis);
    ``with_pooled_funding``: funding is given to the pooled family (default ``with_funding``)."""
    fam: dict[str, list[str]] = {f: [] for f in FAMILIES}
    absent: dict[str, str] = {}
    disabled: list[str] = []
    if config.pooled.enabled:
        fam["pooled"], pooled_absent = pooled_plan(
            symbols,
            config.pooled,
            has_volume=has_volume,
            with_funding=with_funding if with_pooled_funding is None else with_pooled_funding,
            with_spot=with_spot,
        )
        absent.update(pooled_absent)
    else:
        disabled.append("pooled")
    fam["technical"] = technical_names(config)
    if not config.use_existing_features:
        disabled.append("existing_features (rsi, cci, wave_trend)")
    micro = config.market_microstructure
    if not micro.enabled:
        disabled.append("market_microstructure")
    elif not has_volume:
        absent["microstructure"] = "candles have no volume column"
    else:
        fam["microstructure"] = microstructure_names(micro)
    if micro.enabled:
        if with_trades:
            fam["microstructure"] += trade_feature_names(micro.trade_size_buckets)
        else:
            absent["*_trades, large_trade_share_*"] = (
                "no trade-level data (ccxt fetch_trades) given: OHLCV estimators only"
            )
        absent[f"orderbook_*_{micro.orderbook_levels}"] = "no order-book snapshots available"
    if config.cross_asset.enabled:
        fam["cross_asset"], cross_absent = cross_asset_plan(symbols, config.cross_asset)
        absent.update(cross_absent)
    else:
        disabled.append("cross_asset")
    if config.temporal.enabled:
        fam["temporal"] = [*CALENDAR_NAMES, *regime_names(config.temporal)]
    else:
        disabled.append("temporal")
    flow = config.sentiment_flow
    if not flow.enabled:
        disabled.append("sentiment_flow")
        return FeaturePlan(fam, absent, disabled)
    if with_funding:
        w = flow.funding_zscore_window
        fam["sentiment_flow"] += ["funding_rate_per_hour", f"funding_zscore_{w}", "funding_extreme"]
        if has_volume:
            fam["sentiment_flow"].append("liq_cascade_proxy")
        else:
            absent["liq_cascade_proxy"] = "candles have no volume column"
    else:
        absent["funding_*, liq_cascade_proxy"] = "no funding data given"
    if with_open_interest:
        fam["sentiment_flow"] += [f"oi_change_{h}" for h in flow.oi_change_horizons]
    else:
        absent["oi_change_*"] = "no open-interest data given"
    for kind, name in SOURCE_FEATURES.items():
        result = (source_results or {}).get(kind)
        if result is not None and result.state == "available":
            fam["sentiment_flow"].append(name)
        else:
            absent[name] = result.reason if result is not None else f"no {kind} source configured"
    return FeaturePlan(fam, absent, disabled)


def warmup_bars(config: FeatureConfig) -> int:
    """Declared warm-up: rows of a symbol's history after which every candle-based feature is
    defined AND no longer depends (beyond ``config.warmup_tolerance``, relative) on how much
    history precedes it. Recursive smoothers (EMA, Wilder) count ``settle_bars`` on top of their
    window; chained smoothers add up. Funding z-scores need ``funding_zscore_window`` settlements
    instead (see :func:`warmup_period`)."""
    tol = config.warmup_tolerance

    def ema_settle(span: int) -> int:
        return span - 1 + ta.settle_bars(2.0 / (span + 1), tol)

    def wilder_settle(period: int) -> int:
        return period - 1 + ta.settle_bars(1.0 / period, tol)

    lookbacks = [max(config.return_horizons, default=0), max(config.volatility_windows, default=0)]
    lookbacks += [1 + wilder_settle(config.atr_period), config.bollinger_window - 1]
    lookbacks.append(ema_settle(config.macd_slow) + ema_settle(config.macd_signal))
    if config.use_existing_features:
        lookbacks += [1 + wilder_settle(config.rsi_period), config.cci_period - 1]
        wt = 2 * ema_settle(config.wavetrend_channel) + ema_settle(config.wavetrend_average)
        lookbacks.append(wt + config.wavetrend_signal)  # + wt_cross's previous row
    if config.market_microstructure.enabled:
        lookbacks.append(microstructure_warmup(config.market_microstructure))
    if config.cross_asset.enabled:
        lookbacks.append(cross_asset_warmup(config.cross_asset))
    if config.temporal.enabled:
        lookbacks.append(regime_warmup(config.temporal))
    if config.sentiment_flow.enabled:
        flow = config.sentiment_flow
        lookbacks += [flow.liquidation_vol_window, max(flow.oi_change_horizons, default=0)]
    if config.pooled.enabled:
        lookbacks.append(pooled_warmup(config.pooled))
    return int(max(lookbacks))


def warmup_period(
    config: FeatureConfig, timeframe: str, funding_interval_hours: int = 8
) -> pd.Timedelta:
    """:func:`warmup_bars` as time, covering the funding z-score window too: ``window + 1``
    settlements (the first has no interval, so no per-hour rate) at ``funding_interval_hours``
    (the longest interval expected; shorter ones need less time)."""
    bars = timeframe_to_timedelta(timeframe) * warmup_bars(config)
    settlements = [config.sentiment_flow.funding_zscore_window] * config.sentiment_flow.enabled
    settlements += [config.pooled.funding_zscore_settlements] * config.pooled.enabled
    if not settlements:
        return bars
    funding = pd.Timedelta(hours=funding_interval_hours) * (max(settlements) + 1)
    return max(bars, funding)


def technical_features(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, config: FeatureConfig
) -> dict[str, np.ndarray]:
    """The technical block of ONE symbol's time-ordered arrays."""
    out: dict[str, np.ndarray] = {}
    for h in config.return_horizons:
        out[f"ret_{h}"] = ta.log_returns(close, h).to_numpy()
    for w in config.volatility_windows:
        out[f"rv_{w}"] = ta.rolling_volatility(close, w).to_numpy()
    existing = config.existing_features if config.use_existing_features else ()
    if "rsi" in existing:
        out[f"rsi_{config.rsi_period}"] = ta.rsi(close, config.rsi_period).to_numpy()
    if "cci" in existing:
        out[f"cci_{config.cci_period}"] = ta.cci(high, low, close, config.cci_period).to_numpy()
    if "wave_trend" in existing:
        wt1, wt2 = ta.wavetrend(
            high,
            low,
            close,
            channel=config.wavetrend_channel,
            average=config.wavetrend_average,
            signal=config.wavetrend_signal,
        )
        out["wt1"] = wt1.to_numpy()
        out["wt2"] = wt2.to_numpy()
        out["wt_cross"] = ta.wavetrend_cross(wt1, wt2).to_numpy()
    atr = ta.atr(high, low, close, config.atr_period).to_numpy()
    out[f"atr_pct_{config.atr_period}"] = atr / close
    out[f"bb_pctb_{config.bollinger_window}"] = ta.bollinger_pctb(
        close, config.bollinger_window
    ).to_numpy()
    _, _, hist = ta.macd(close, config.macd_fast, config.macd_slow, config.macd_signal)
    out["macd_hist_pct"] = hist.to_numpy() / close
    return out


def _symbol_groups(symbol_codes: np.ndarray, ts_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order sorted by (symbol, time) and the group boundaries in that order."""
    order = np.lexsort((ts_ns, symbol_codes))
    codes_sorted = symbol_codes[order]
    bounds = np.flatnonzero(codes_sorted[1:] != codes_sorted[:-1]) + 1
    return order, np.r_[0, bounds, len(order)]


def _validate(candles: pd.DataFrame, timeframe: str) -> None:
    missing = [c for c in _CANDLE_COLUMNS if c not in candles.columns]
    if missing:
        raise InputError(f"compute_features: candles lack column(s) {missing}")
    try:
        timeframe_to_timedelta(timeframe)
    except ValueError as err:
        raise InputError(str(err)) from None


def build_features(
    candles: pd.DataFrame,
    funding: pd.DataFrame | None = None,
    config: FeatureConfig | None = None,
    timeframe: str = "1h",
    *,
    open_interest: pd.DataFrame | None = None,
    trades: pd.DataFrame | Sequence[dict] | None = None,
    sources: Mapping[str, SentimentSource] | None = None,
    spot: pd.DataFrame | None = None,
) -> FeatureBuild:
    """Causal feature table plus its :class:`FeaturePlan` (families, absences and reasons).

    ``open_interest``: frame ``timestamp, symbol, open_interest``; ``trades``: ccxt
    ``fetch_trades`` dicts or frame; ``sources``: whale / social sources by name; ``spot``:
    spot candles (``timestamp, symbol, close``, user symbol spelling) of the symbols whose
    ``candles`` are perpetual prices, for the pooled family's basis. Raises
    :class:`InputError` on missing columns, unknown timeframe or duplicate candles.
    """
    config = config or FeatureConfig()
    _validate(candles, timeframe)
    n = len(candles)
    timestamps = candles["timestamp"].astype("datetime64[ns, UTC]").reset_index(drop=True)
    symbols = candles["symbol"].astype(str).reset_index(drop=True)
    codes, uniques = pd.factorize(symbols)
    ts_ns = timestamps.array.asi8
    order, bounds = _symbol_groups(codes, ts_ns)
    ts_sorted = ts_ns[order]
    dup = (codes[order][1:] == codes[order][:-1]) & (ts_sorted[1:] == ts_sorted[:-1])
    if dup.any():
        row = int(order[np.flatnonzero(dup)[0]])
        raise InputError(
            f"compute_features: duplicate candle for {symbols.iloc[row]} at {timestamps.iloc[row]}"
        )
    flow = config.sentiment_flow
    has_volume = "volume" in candles.columns
    with_funding = funding is not None and flow.enabled
    with_oi = open_interest is not None and len(open_interest) > 0 and flow.enabled
    trade_frame = trades_frame(trades) if trades is not None else None
    with_trades = trade_frame is not None and len(trade_frame) > 0
    sym_list = [str(s) for s in uniques]
    start = timestamps.min() if n else None
    end = timestamps.max() if n else None
    source_results = (
        {
            kind: resolve_source(
                kind,
                flow.whale_source if kind == "whale" else flow.social_source,
                sources,
                sym_list,
                start,
                end,
            )
            for kind in SOURCE_FEATURES
        }
        if flow.enabled
        else {}
    )
    plan = plan_features(
        config,
        symbols=sym_list,
        has_volume=has_volume,
        with_funding=with_funding,
        with_open_interest=with_oi,
        with_trades=with_trades,
        source_results=source_results,
        with_spot=spot is not None and len(spot) > 0,
        with_pooled_funding=funding is not None,
    )
    names = plan.names
    columns: dict[str, np.ndarray] = {name: np.full(n, np.nan) for name in names}
    wanted = set(names)

    def keep(block: Mapping[str, np.ndarray], rows: np.ndarray | slice) -> None:
        for name, values in block.items():
            if name in wanted:
                columns[name][rows] = values

    if with_funding and funding is not None:
        fz = funding_features(
            timestamps, symbols, funding, zscore_window=flow.funding_zscore_window
        )
        zname = f"funding_zscore_{flow.funding_zscore_window}"
        fz["funding_extreme"] = funding_extreme(fz[zname], flow.funding_extreme_z)
        keep(fz, slice(None))
    oi_aligned = (
        asof_values(timestamps, symbols, open_interest, "open_interest")
        if with_oi and open_interest is not None
        else None
    )
    high = candles["high"].to_numpy(dtype=np.float64)
    low = candles["low"].to_numpy(dtype=np.float64)
    close = candles["close"].to_numpy(dtype=np.float64)
    volume = candles["volume"].to_numpy(dtype=np.float64) if has_volume else None
    micro = config.market_microstructure
    for lo, hi in itertools.pairwise(bounds):
        rows = order[lo:hi]
        h, lw, c = high[rows], low[rows], close[rows]
        keep(technical_features(h, lw, c, config), rows)
        if micro.enabled and volume is not None:
            keep(microstructure_features(h, lw, c, volume[rows], micro), rows)
        if with_trades and trade_frame is not None:
            keep(
                trade_features(
                    timestamps.iloc[rows],
                    symbols.iloc[rows[0]],
                    trade_frame,
                    timeframe=timeframe,
                    buckets=micro.trade_size_buckets,
                ),
                rows,
            )
        if config.temporal.enabled:
            keep(regime_features(c, config.temporal), rows)
        if "liq_cascade_proxy" in wanted and volume is not None:
            ret = ta.log_returns(c, 1).to_numpy()
            sigma = ta.rolling_volatility(c, flow.liquidation_vol_window).to_numpy()
            vz = volume_spike_z(volume[rows], micro.volume_spike_window)
            fzr = columns[f"funding_zscore_{flow.funding_zscore_window}"][rows]
            liq = liquidation_cascade_proxy(ret, sigma, vz, fzr, flow.funding_extreme_z)
            keep({"liq_cascade_proxy": liq}, rows)
        if oi_aligned is not None:
            keep(
                {
                    f"oi_change_{hz}": open_interest_change(oi_aligned[rows], hz)
                    for hz in flow.oi_change_horizons
                },
                rows,
            )
    if config.temporal.enabled:
        keep(temporal_features(timestamps, config), slice(None))
    if plan.families["cross_asset"]:
        keep(cross_asset_features(timestamps, symbols, close, config.cross_asset), slice(None))
    if plan.families["pooled"]:
        pooled = pooled_features(
            timestamps,
            symbols,
            high,
            low,
            close,
            volume,
            config.pooled,
            funding=funding,
            spot=spot if spot is not None and len(spot) > 0 else None,
        )
        keep(pooled, slice(None))
    for kind, result in source_results.items():
        if result.state == "available" and result.frame is not None:
            keep(
                {SOURCE_FEATURES[kind]: asof_values(timestamps, symbols, result.frame, "value")},
                slice(None),
            )
    logger.debug("computed %d features for %d rows of %d symbols", len(names), n, len(uniques))
    frame = pd.DataFrame({"timestamp": timestamps.array, "symbol": symbols.array})
    features = pd.DataFrame({name: columns[name].astype(np.float64) for name in names})
    return FeatureBuild(table=pd.concat([frame, features], axis=1), plan=plan)


def compute_features(
    candles: pd.DataFrame,
    funding: pd.DataFrame | None = None,
    config: FeatureConfig | None = None,
    timeframe: str = "1h",
    *,
    open_interest: pd.DataFrame | None = None,
    trades: pd.DataFrame | Sequence[dict] | None = None,
    sources: Mapping[str, SentimentSource] | None = None,
    spot: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The table of :func:`build_features`: RangeIndex, ``timestamp``, ``symbol``, then float64
    features only, one row per input row in input order; NaN during warm-up."""
    return build_features(
        candles,
        funding,
        config,
        timeframe,
        open_interest=open_interest,
        trades=trades,
        sources=sources,
        spot=spot,
    ).table


def feature_columns(df: pd.DataFrame) -> list[str]:
    """Every column of a feature table except ``timestamp`` and ``symbol``."""
    return [c for c in df.columns if c not in KEY_COLUMNS]


def model_feature_columns(df: pd.DataFrame, config: FeatureConfig) -> list[str]:
    """The columns a model sees: :func:`feature_columns`, less the raw-scale ones
    (:data:`.pooled.RAW_SCALE_PREFIXES`) when the pooled family is on with
    ``exclude_raw_scale`` (they stay in the table for decisions and reports)."""
    cols = feature_columns(df)
    if config.pooled.enabled and config.pooled.exclude_raw_scale:
        cols = [c for c in cols if not is_raw_scale(c)]
    return cols
