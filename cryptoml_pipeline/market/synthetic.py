"""A seeded SYNTHETIC market, for demos and tests without data. Says nothing about real markets.

Prices follow a regime-switching geometric Brownian motion shared by all assets (one Markov chain
of calm / normal / stress volatility regimes without drift, correlated shocks through a common
factor), with hourly volatility of about 0.5-1 %; with ``signal_strength = 0`` returns are
unpredictable (pure noise around a volatility regime). Candles are valid OHLC with positive
volume, each open the previous close.
Funding settles every 8h at 00/08/16 UTC with small, mean-reverting rates whose level depends on
the regime; only the traded symbols have funding, the other universe members are "spot" series.

Planted predictable component (``signal_strength = s``): a weak per-symbol short-term REVERSAL.
Bar ``t``'s log return of symbol ``j`` gets the extra drift ``-s * sigma_j(t) * z_j(t-1)``, with
``sigma_j(t)`` the bar's model volatility and

    z_j(t) = clip(ret_24[t] / (rv_24[t] * sqrt(24)), -3, 3)

computed from closes up to bar ``t`` only (``ret_24`` = 24-bar log return, ``rv_24`` = std of the
last 24 one-bar log returns, the pipeline's feature columns of those names; ``z = 0`` for the
first 24 bars). The drift is a known function of past prices, so ``-z`` computed at the close of
bar ``t`` forecasts the pipeline's target, the return from ``open[t+1]`` onwards. ``s = 0`` is the
plain regime-switching GBM.

The default strength is 0.08 (the pipeline's default rule, which enters only above twice the
round-trip cost, trades it; ``test_learning_synthetic.py``: rank IC 0.13, t 6.7 at the default).
Measured at ``s = 0.03`` with the earlier regime drift (1h bars, 2024-10-01 .. 2025-10-01,
seeds 7..16; the feature ``-z[t]``, the target ``log(open[t+7] / open[t+1])``):

    symbols                       pooled rank IC         per-bar cross-sectional rank IC
                                  mean (min .. max)      mean (min .. max), t of daily means
    BTC ETH SOL BNB       s=0.03  0.063 (0.040..0.105)   0.044 (0.025..0.065), t 3.7 (2.1..5.9)
                          s=0     0.003 (-.020..0.047)   -.003 (-.027..0.018), t -.3
    + XRP AVAX LINK DOGE  s=0.03  0.061 (0.040..0.106)   0.052 (0.040..0.062), t 6.3 (4.9..7.6)
                          s=0     0.001 (-.022..0.046)   -.001 (-.013..0.009), t -.1

The pooled IC's spread under ``s = 0`` is wide (the assets share a 0.7-correlated factor), so
one year of it alone is weak evidence; the cross-sectional IC has the tighter null. (Daily ICs
pooled over a day's rows are biased upwards by the within-day demeaning of a backward sum
against a forward sum; average the per-bar cross-sectional ICs per day instead.) The edge is
thin next to costs: entering only when ``|z| > 2`` and holding 6 bars earns 0.26-0.29 % gross
per trade on average (about a ~0.25 % round trip), holding 24 bars 0.64-0.71 %; trading
``sign(-z)`` every bar earns ~0.10 % per 6-bar trade, well below costs.

Each symbol's own shocks, wicks, volume and funding noise come from a generator seeded by
(``seed``, symbol name), so adding universe members does not change the other symbols' series.

Other timeframes (:func:`synthetic_timeframe_candles`, what the multi-timeframe LSTM-CNN reads):
a finer bar (5m, 15m: any divisor of the base bar) is cut out of its base bar, never the other way
round, so the base candles above (and their planted signal) stay exactly as they are. Inside each
base bar a Brownian bridge in log price runs from its open to its close at the finest requested
resolution, shrunk to stay inside the bar's low..high; the sub-bar with the highest body gets the
bar's high as its high, the one with the lowest body its low, the bar's volume is split by random
weights. Coarser timeframes are grouped from those sub-bars, so each finer series aggregates to the
base bars exactly (open, high, low, close; volume up to rounding). The draws of a base bar depend
on (``seed``, symbol, the bar's open time) only: any window gives the same sub-bars.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market.layout import spot_symbol
from cryptoml_pipeline.market.schemas import (
    CANDLE_COLUMNS,
    FUNDING_COLUMNS,
    TS_DTYPE,
    validate_candles,
    validate_funding,
)
from cryptoml_pipeline.market.source import FUNDING_INTERVAL, MarketData
from cryptoml_pipeline.timing import timeframe_to_timedelta, to_utc

__all__ = [
    "DEFAULT_SIGNAL_STRENGTH",
    "PLANTED_CLIP",
    "PLANTED_WINDOW",
    "planted_score",
    "synthetic_market",
    "synthetic_timeframe_candles",
    "unsupported_timeframes",
]

log = logging.getLogger(__name__)

DEFAULT_SIGNAL_STRENGTH = 0.08  # strong enough for the default (cost-filtered) rule to trade
PLANTED_WINDOW = 24  # bars of the planted reversal's trailing return and volatility
PLANTED_CLIP = 3.0

# Regimes: hourly drift, hourly volatility, funding level (per 8h), mean stay (hours).
# No regime drift: a drifting regime would be a second, unplanted predictable component
# (momentum), so that ``signal_strength = 0`` would not be pure noise. Regimes move volatility
# and funding only.
_DRIFT = np.zeros(3)
_VOL = np.array([0.0055, 0.0075, 0.0110])
_FUNDING_LEVEL = np.array([1.5e-4, 0.5e-4, -0.5e-4])
_STAY_HOURS = np.array([240.0, 160.0, 48.0])
_NEXT = np.array([[0.0, 0.8, 0.2], [0.7, 0.0, 0.3], [0.5, 0.5, 0.0]])  # given a switch
_CORRELATION = 0.7
_FUNDING_PHI = 0.85
_FUNDING_NOISE = 4.0e-5

_BASE_PRICE = {"BTC": 40_000.0, "ETH": 2_400.0, "SOL": 100.0, "BNB": 300.0, "XRP": 0.6}
_VOL_SCALE = {"BTC": 1.0, "ETH": 1.15, "SOL": 1.5}
_BASE_VOLUME = {"BTC": 900.0, "ETH": 12_000.0, "SOL": 90_000.0}


def _base(symbol: str) -> str:
    return spot_symbol(symbol).split("/", 1)[0]


def _name_number(symbol: str) -> float:
    """A stable number in [0, 1) from the symbol's name (for unknown assets)."""
    return (zlib.crc32(_base(symbol).encode()) % 10_000) / 10_000


def _symbol_rng(seed: int, symbol: str, stream: int) -> np.random.Generator:
    """The symbol's own generator: stream 0 candles, 1 funding."""
    return np.random.default_rng([seed, zlib.crc32(symbol.encode()), stream])


def planted_score(close: np.ndarray) -> np.ndarray:
    """``z`` of the planted reversal for ONE symbol's closes (module docstring): causal, the
    first :data:`PLANTED_WINDOW` entries 0. Rows whose trailing returns are all equal get 0."""
    close = np.asarray(close, dtype=float)
    n, w = close.shape[0], PLANTED_WINDOW
    out = np.zeros(n)
    if n <= w:
        return out
    r = np.diff(np.log(close))  # r[i-1] = log(close[i] / close[i-1])
    windows = np.lib.stride_tricks.sliding_window_view(r, w)  # row i: returns ending at bar w+i
    total = windows.sum(axis=1)
    sd = windows.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, total / (sd * np.sqrt(w)), 0.0)
    out[w:] = np.clip(z, -PLANTED_CLIP, PLANTED_CLIP)
    return out


def _regimes(rng: np.random.Generator, n: int, bar_hours: float) -> np.ndarray:
    switch = 1.0 - np.exp(-bar_hours / _STAY_HOURS)
    u_switch, u_next = rng.random(n), rng.random(n)
    states = np.empty(n, dtype=np.int64)
    state = 0
    cumulative = np.cumsum(_NEXT, axis=1)
    for i in range(n):  # a Markov chain is sequential by nature
        if u_switch[i] < switch[state]:
            state = int(np.searchsorted(cumulative[state], u_next[i], side="right"))
        states[i] = state
    return states


def _log_returns(
    base: np.ndarray, sigma: np.ndarray, strength: float, window: int = PLANTED_WINDOW
) -> np.ndarray:
    """Bar log returns ``(n, k)``: ``base`` plus the planted drift ``-strength * sigma * z(t-1)``.

    Sequential in time (the drift feeds back into ``z``), vectorised over symbols; the trailing
    sums are updated incrementally. ``z`` matches :func:`planted_score` of the resulting closes.
    """
    if strength == 0.0:
        return base
    n, k = base.shape
    out = np.empty_like(base)
    ring = np.zeros((window, k))
    total, squares = np.zeros(k), np.zeros(k)
    z = np.zeros(k)
    root_w = np.sqrt(window)
    for t in range(n):  # the drift depends on the path so far
        r = base[t] - strength * sigma[t] * z
        out[t] = r
        slot = t % window
        total += r - ring[slot]
        squares += r * r - ring[slot] ** 2
        ring[slot] = r
        # z at bar t needs `window` returns, i.e. bars 1..t; bar 0's "return" is from p0
        if t >= window:
            var = np.maximum(squares - total * total / window, 0.0) / (window - 1)
            sd = np.sqrt(var)
            z = np.clip(
                np.divide(total, sd * root_w, out=np.zeros(k), where=sd > 0),
                -PLANTED_CLIP,
                PLANTED_CLIP,
            )
    return out


def _candles(
    rng: np.random.Generator,
    seed: int,
    symbols: Sequence[str],
    timestamps: pd.DatetimeIndex,
    states: np.ndarray,
    bar_hours: float,
    strength: float,
) -> pd.DataFrame:
    n, k = len(timestamps), len(symbols)
    common = rng.standard_normal(n)
    own = np.empty((n, k))
    wicks = np.empty((n, k, 2))
    volume_noise = np.empty((n, k))
    for j, symbol in enumerate(symbols):
        own_rng = _symbol_rng(seed, symbol, 0)
        own[:, j] = own_rng.standard_normal(n)
        wicks[:, j] = np.abs(own_rng.standard_normal((n, 2)))
        volume_noise[:, j] = own_rng.standard_normal(n)
    shocks = np.sqrt(_CORRELATION) * common[:, None] + np.sqrt(1.0 - _CORRELATION) * own
    scale = np.array([_VOL_SCALE.get(_base(s), 1.2 + 0.4 * _name_number(s)) for s in symbols])
    sigma = _VOL[states][:, None] * scale[None, :] * np.sqrt(bar_hours)
    drift = _DRIFT[states][:, None] * bar_hours - 0.5 * sigma**2
    log_ret = _log_returns(drift + sigma * shocks, sigma, strength)
    hours = timestamps.hour.to_numpy()
    session = 1.0 + 0.35 * ((hours >= 13) & (hours < 21))  # busier US hours
    frames = []
    for j, symbol in enumerate(symbols):
        base = _base(symbol)
        p0 = _BASE_PRICE.get(base, 5.0 + 200.0 * _name_number(symbol))
        close = p0 * np.exp(np.cumsum(log_ret[:, j]))
        open_ = np.concatenate([[p0], close[:-1]])
        s = sigma[:, j]
        high = np.maximum(open_, close) * np.exp(0.5 * s * wicks[:, j, 0])
        low = np.minimum(open_, close) * np.exp(-0.5 * s * wicks[:, j, 1])
        activity = np.exp(0.35 * volume_noise[:, j] + 0.8 * np.abs(log_ret[:, j]) / s)
        volume = _BASE_VOLUME.get(base, 50_000.0) * bar_hours * session * activity
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": timestamps,
                    "symbol": symbol,
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[list(CANDLE_COLUMNS)]


def _funding(
    seed: int,
    symbols: Sequence[str],
    timestamps: pd.DatetimeIndex,
    states: np.ndarray,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> pd.DataFrame:
    settlements = pd.date_range(
        (start - FUNDING_INTERVAL).ceil("8h"), end, freq="8h", inclusive="left"
    ).astype(TS_DTYPE)
    m = len(settlements)
    position = np.clip(timestamps.searchsorted(settlements, side="right") - 1, 0, None)
    level = _FUNDING_LEVEL[states[position]] if m else np.empty(0)
    frames = []
    for symbol in symbols:
        noise = _symbol_rng(seed, symbol, 1).standard_normal(m) * _FUNDING_NOISE
        rates = np.empty(m)
        previous = level[0] if m else 0.0
        for i in range(m):  # AR(1) around the regime's level
            previous = level[i] + _FUNDING_PHI * (previous - level[i]) + noise[i]
            rates[i] = previous
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": settlements,
                    "symbol": symbol,
                    "funding_rate": np.clip(rates, -0.0075, 0.0075),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[list(FUNDING_COLUMNS)]


def _members(symbols: Sequence[str], universe: Sequence[str] | None) -> tuple[str, ...]:
    if not symbols:
        raise InputError("no symbols selected")
    if len(set(symbols)) != len(symbols):
        raise InputError(f"duplicate symbols in {list(symbols)}")
    if universe is None:
        return tuple(sorted(symbols))
    if len(set(universe)) != len(universe):
        raise InputError(f"duplicate symbols in universe {list(universe)}")
    return tuple(sorted(set(symbols) | set(universe)))


def synthetic_market(
    symbols: Sequence[str],
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    seed: int = 7,
    universe: Sequence[str] | None = None,
    signal_strength: float = DEFAULT_SIGNAL_STRENGTH,
    history: pd.Timedelta | None = None,
) -> MarketData:
    """Seeded synthetic candles of the universe (bars in ``[start - history, start)`` as warm-up,
    then ``[start, end)``) and funding of the traded ``symbols`` (from ``start - history - 8h``).

    ``universe`` (default: ``symbols``) adds members that have candles but no funding; the traded
    symbols are always members. ``signal_strength`` scales the planted reversal (module
    docstring; 0 = none). ``MarketData.start`` stays ``start``. Deterministic for given
    arguments; labelled ``source="synthetic"``.
    """
    members = _members(symbols, universe)
    if not np.isfinite(signal_strength) or signal_strength < 0:
        raise InputError(f"signal_strength must be finite and >= 0, got {signal_strength}")
    try:
        bar = timeframe_to_timedelta(timeframe)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    start, end = to_utc(start), to_utc(end)
    history = pd.Timedelta(0) if history is None else pd.Timedelta(history)
    if history < pd.Timedelta(0):
        raise InputError(f"history must not be negative, got {history}")
    first = start - history
    timestamps = pd.date_range(first.ceil(bar), end, freq=bar, inclusive="left").astype(TS_DTYPE)
    if len(timestamps) == 0 or start >= end:
        raise InputError(f"empty synthetic window [{start}, {end}) for timeframe {timeframe}")
    traded = tuple(sorted(symbols))
    rng = np.random.default_rng(seed)
    bar_hours = bar / pd.Timedelta(hours=1)
    states = _regimes(rng, len(timestamps), bar_hours)
    candles = _candles(rng, seed, members, timestamps, states, bar_hours, float(signal_strength))
    funding = _funding(seed, traded, timestamps, states, first, end)
    log.warning("SYNTHETIC market (seed %d): results say nothing about real markets", seed)
    return MarketData(
        candles=validate_candles(candles, source="synthetic"),
        funding=validate_funding(funding, source="synthetic"),
        source="synthetic",
        synthetic=True,
        price_source="synthetic",
        price_sources=dict.fromkeys(traded, "synthetic"),
        timeframe=timeframe,
        start=start,
        end=end,
        traded=traded,
        universe=members,
    )


_FINE_BLOCK = 512  # base bars per random block of the sub-bar draws (window-independent)


def unsupported_timeframes(base: str, timeframes: Sequence[str]) -> dict[str, str]:
    """``{timeframe: reason}`` for each of ``timeframes`` that :func:`synthetic_timeframe_candles`
    cannot derive from ``base`` bars (neither a divisor nor a multiple of the base bar)."""
    bar = timeframe_to_timedelta(base)
    out = {}
    for tf in timeframes:
        try:
            step = timeframe_to_timedelta(tf)
        except ValueError as exc:
            out[tf] = str(exc)
            continue
        if bar % step != pd.Timedelta(0) and step % bar != pd.Timedelta(0):
            out[tf] = f"{tf} neither divides nor is a multiple of the synthetic {base} bar"
    return out


def _sub_bar_draws(seed: int, symbol: str, bar_no: np.ndarray, m: int) -> np.ndarray:
    """``(n, m, 4)`` standard normals per base bar (bar number since the epoch) and sub-bar:
    the bridge shock, two wicks and the volume weight. Blocks of :data:`_FINE_BLOCK` bars share a
    generator seeded by (seed, symbol, m, block), so a bar's draws do not depend on the window."""
    out = np.empty((len(bar_no), m, 4))
    block = bar_no // _FINE_BLOCK
    for b in np.unique(block):
        sel = block == b
        rng = np.random.default_rng([seed, zlib.crc32(symbol.encode()), 2, m, int(b)])
        out[sel] = rng.standard_normal((_FINE_BLOCK, m, 4))[bar_no[sel] - b * _FINE_BLOCK]
    return out


def _split(
    candles: pd.DataFrame, symbol: str, base_ns: int, m: int, seed: int
) -> dict[str, np.ndarray]:
    """``m`` sub-bars (arrays ``(n, m)``) of each base bar of ONE symbol, aggregating exactly."""
    ts = candles["timestamp"].astype(TS_DTYPE).array.asi8
    o, h, lw, c, v = (
        candles[k].to_numpy(dtype=np.float64) for k in ("open", "high", "low", "close", "volume")
    )
    n = len(ts)
    draws = _sub_bar_draws(seed, symbol, ts // base_ns, m)
    lo, lc, lh, ll = np.log(o), np.log(c), np.log(h), np.log(lw)
    scale = np.maximum(lh - ll, 1e-12) / (2.0 * np.sqrt(m))
    frac = np.arange(1, m + 1) / m
    walk = np.cumsum(draws[:, :, 0] * scale[:, None], axis=1)
    bridge = walk - frac[None, :] * walk[:, -1:]  # 0 at the bar's close
    line = lo[:, None] + (lc - lo)[:, None] * frac[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(
            bridge > 0,
            (lh[:, None] - line) / bridge,
            np.where(bridge < 0, (ll[:, None] - line) / bridge, np.inf),
        )
    shrink = np.minimum(1.0, 0.9 * room.min(axis=1))  # keep the path inside low..high
    close = np.clip(np.exp(line + shrink[:, None] * bridge), lw[:, None], h[:, None])
    close[:, -1] = c
    open_ = np.concatenate([o[:, None], close[:, :-1]], axis=1)
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    wick = 0.5 * scale[:, None]
    high = np.maximum(np.minimum(h[:, None], top * np.exp(wick * np.abs(draws[:, :, 1]))), top)
    low = np.minimum(
        np.maximum(lw[:, None], bottom * np.exp(-wick * np.abs(draws[:, :, 2]))), bottom
    )
    rows = np.arange(n)
    high[rows, top.argmax(axis=1)] = h  # the bar's extremes, each inside one sub-bar
    low[rows, bottom.argmin(axis=1)] = lw
    weight = np.exp(0.5 * draws[:, :, 3])
    volume = v[:, None] * weight / weight.sum(axis=1, keepdims=True)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def _group(parts: dict[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Consecutive groups of ``k`` sub-bars (along axis 1) as one bar each."""
    n, m = parts["open"].shape
    g = {name: a.reshape(n, m // k, k) for name, a in parts.items()}
    return {
        "open": g["open"][:, :, 0],
        "high": g["high"].max(axis=2),
        "low": g["low"].min(axis=2),
        "close": g["close"][:, :, -1],
        "volume": g["volume"].sum(axis=2),
    }


def _coarser(candles: pd.DataFrame, step_ns: int, base_ns: int) -> pd.DataFrame:
    """Base bars of ONE symbol grouped into complete ``step`` bars on the epoch grid."""
    ts = candles["timestamp"].astype(TS_DTYPE).array.asi8
    key = ts // step_ns
    grouped = candles.assign(_key=key).groupby("_key", sort=True)
    out = grouped.agg(
        open=("open", "first"),
        high=("high", "max"),
        low=("low", "min"),
        close=("close", "last"),
        volume=("volume", "sum"),
        _n=("open", "size"),
    )
    out = out[out["_n"] == step_ns // base_ns]
    stamps = pd.to_datetime(out.index.to_numpy() * step_ns, utc=True).astype(TS_DTYPE)
    return pd.DataFrame(
        {
            "timestamp": stamps,
            "symbol": candles["symbol"].iloc[0],
            **{k: out[k].to_numpy() for k in ("open", "high", "low", "close", "volume")},
        }
    )


def synthetic_timeframe_candles(
    candles: pd.DataFrame, base: str, timeframes: Sequence[str], *, seed: int = 7
) -> dict[str, pd.DataFrame]:
    """Candles of each of ``timeframes`` derived from the synthetic ``base`` candles (module
    docstring): finer ones cut out of each base bar, ``base`` itself as given, coarser ones
    grouped (complete bars only). Long frames sorted by symbol, then time. Deterministic: the
    sub-bars of a base bar depend on (``seed``, symbol, its open time), not on the window."""
    bad = unsupported_timeframes(base, timeframes)
    if bad:
        raise InputError(f"synthetic market: {'; '.join(bad.values())}")
    base_ns = timeframe_to_timedelta(base).value
    steps = {tf: timeframe_to_timedelta(tf).value for tf in timeframes}
    finer = [tf for tf, s in steps.items() if s < base_ns]
    finest = int(np.gcd.reduce([base_ns, *(steps[tf] for tf in finer)]))
    m = base_ns // finest
    columns = list(CANDLE_COLUMNS)
    frames: dict[str, list[pd.DataFrame]] = {tf: [] for tf in timeframes}
    ordered = candles.sort_values(["symbol", "timestamp"], kind="stable")
    for symbol, own in ordered.groupby("symbol", sort=True):
        own = own.reset_index(drop=True)
        parts = _split(own, str(symbol), base_ns, m, seed) if finer and len(own) else None
        opens = own["timestamp"].astype(TS_DTYPE).array.asi8
        for tf, step in steps.items():
            if step == base_ns:
                frames[tf].append(own[columns])
            elif step > base_ns:
                frames[tf].append(_coarser(own, step, base_ns)[columns])
            elif parts is not None:
                k = step // finest
                bars = _group(parts, k) if k > 1 else parts
                per = m // k
                stamps = (opens[:, None] + step * np.arange(per)[None, :]).ravel()
                frame = pd.DataFrame(
                    {
                        "timestamp": pd.to_datetime(stamps, utc=True).astype(TS_DTYPE),
                        "symbol": str(symbol),
                        **{name: a.ravel() for name, a in bars.items()},
                    }
                )
                frames[tf].append(frame[columns])
    empty = pd.DataFrame({c: pd.Series(dtype=candles[c].dtype) for c in columns})
    return {
        tf: pd.concat(parts, ignore_index=True) if parts else empty.copy()
        for tf, parts in frames.items()
    }
