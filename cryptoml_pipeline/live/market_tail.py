"""Real-time inputs of the signal: the causal tail of every universe member's candles and the
traded symbols' funding, and the last bar every needed series has closed.

A bar ``t`` (open time) is *closed for symbol X* when every universe member has its candle at
``t`` (only closed candles are ever stored or generated) and X's funding is known through the
bar: X's last settlement ``S`` satisfies ``t < S + funding interval`` (a later bar would need a
settlement the data does not have yet, and taking ``S`` for it would forward-fill a stale rate).
Nothing is filled: a member missing the latest bar moves the signal back to the last bar all have.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.features.build import warmup_period
from cryptoml_pipeline.live.loader import ServedModel
from cryptoml_pipeline.market import derived
from cryptoml_pipeline.market.layout import perpetual_symbol, spot_symbol
from cryptoml_pipeline.market.source import (
    load_market_data,
    perpetual_spot_closes,
    with_spot_close,
)
from cryptoml_pipeline.market.store import ParquetStore
from cryptoml_pipeline.timing import timeframe_to_timedelta


def tail_span(served: ServedModel) -> pd.Timedelta:
    """History before the signal's bar that its features need: the declared warm-up (funding
    z-score window included), the rows the model reads before the bar, and one spare bar."""
    settings = served.settings
    bar = timeframe_to_timedelta(served.timeframe)
    warm = warmup_period(settings.features, served.timeframe, settings.data.funding_interval_hours)
    return warm + (served.history_rows + 2) * bar


def _funding_interval(served: ServedModel) -> pd.Timedelta:
    return pd.Timedelta(hours=served.settings.data.funding_interval_hours)


def _needs_funding(served: ServedModel) -> bool:
    return served.settings.features.sentiment_flow.enabled


def needs_spot(served: ServedModel) -> bool:
    """Whether the model reads the perpetual-spot basis (the pooled family's ``pool_basis*``):
    the traded rows then carry their spot close (``spot_close``)."""
    return any(c.startswith("pool_basis") for c in served.model.feature_cols)


def attach_spot(store: ParquetStore, served: ServedModel, candles: pd.DataFrame) -> pd.DataFrame:
    """``candles`` with the traded rows' stored spot closes (``spot_close``) when the model
    reads the basis; unchanged otherwise."""
    if not needs_spot(served) or candles.empty:
        return candles
    ts = candles["timestamp"]
    spot = perpetual_spot_closes(
        store,
        list(served.symbols),
        served.timeframe,
        ts.min(),
        ts.max() + timeframe_to_timedelta(served.timeframe),
    )
    return with_spot_close(candles, spot)


def member_label(served: ServedModel, member: str) -> str:
    """The ``symbol`` a member's candles carry: a traded symbol's own name (perpetual candles),
    another member's spot symbol (as ``market.source.load_market_data`` labels them)."""
    return member if member in served.symbols else spot_symbol(member)


def check_symbols(served: ServedModel, symbols: Sequence[str]) -> list[str]:
    symbols = list(dict.fromkeys(symbols)) or list(served.symbols)
    unknown = [s for s in symbols if s not in served.symbols]
    if unknown:
        raise InputError(
            f"model {served.version} does not trade {unknown}; it trades {list(served.symbols)}"
        )
    return symbols


def closed_bars(
    served: ServedModel,
    candles: pd.DataFrame,
    funding: pd.DataFrame | None,
    symbols: Sequence[str],
) -> dict[str, pd.Timestamp]:
    """Per symbol, the last bar closed by every universe member and by the symbol's funding."""
    labels = [member_label(served, m) for m in served.universe]
    codes, names = pd.factorize(candles["symbol"].astype(str))
    present = {str(name): i for i, name in enumerate(names)}
    missing = sorted(set(labels) - set(present))
    if missing:
        raise InputError(f"no {served.timeframe} candles for universe member(s) {missing}")
    # the bars every member has: one pass over the rows (member column of a [bar, member] grid)
    member = np.full(len(names), -1, dtype=np.int64)
    for j, label in enumerate(dict.fromkeys(labels)):
        member[present[label]] = j
    col = member[codes]
    stamps = candles["timestamp"].astype("datetime64[ns, UTC]").array.asi8[col >= 0]
    col = col[col >= 0]
    union = np.unique(stamps)
    grid = np.zeros((len(union), int(col.max()) + 1 if len(col) else 0), dtype=bool)
    grid[np.searchsorted(union, stamps), col] = True
    common_ns = union[grid.all(axis=1)]
    if len(common_ns) == 0:
        raise InputError("the universe members have no bar in common")
    out = {}
    if not _needs_funding(served):
        last = pd.Timestamp(int(common_ns[-1]), tz="UTC")
        return dict.fromkeys(symbols, last)
    if funding is not None:
        fcodes, fnames = pd.factorize(funding["symbol"].astype(str))
        fstamps = funding["timestamp"].astype("datetime64[ns, UTC]").array.asi8
        fpos = {str(name): i for i, name in enumerate(fnames)}
    interval = _funding_interval(served).value
    for symbol in symbols:
        if funding is None or symbol not in fpos:
            raise InputError(f"no funding settlements for {symbol}")
        settled = int(fstamps[fcodes == fpos[symbol]].max())
        n = int(np.searchsorted(common_ns, settled + interval, side="left"))
        if n == 0:
            raise InputError(
                f"{symbol}: funding ends {pd.Timestamp(settled, tz='UTC')}, before the candles"
            )
        out[symbol] = pd.Timestamp(int(common_ns[n - 1]), tz="UTC")
    return out


def store_tail(
    store: ParquetStore, served: ServedModel, symbols: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The universe's candles and the traded symbols' funding from the store, covering the
    tail of every requested symbol's latest closed bar (read as the run read them:
    ``market.source.load_market_data``, perpetuals for traded symbols, spot otherwise)."""
    symbols = check_symbols(served, symbols)
    tf = served.timeframe
    bar = timeframe_to_timedelta(tf)
    lasts = {}
    for member in served.universe:
        instrument = perpetual_symbol(member) if member in served.symbols else spot_symbol(member)
        cov = derived.candle_coverage(store, instrument, tf)
        if cov is None:
            raise InputError(f"no {tf} candles of {instrument} (universe member) in {store.root}")
        lasts[member] = cov[1]
    end = min(lasts.values()) + bar
    first_needed = end - bar
    if _needs_funding(served):
        for symbol in symbols:
            cov = store.funding_coverage(perpetual_symbol(symbol))
            if cov is None:
                raise InputError(f"no funding of {perpetual_symbol(symbol)} in {store.root}")
            first_needed = min(first_needed, cov[1] + _funding_interval(served) - bar)
    start = first_needed.floor(bar) - tail_span(served)
    data = load_market_data(
        store,
        list(served.symbols),
        tf,
        start,
        end,
        funding_interval_hours=served.settings.data.funding_interval_hours,
        universe=list(served.universe),
    )
    return attach_spot(store, served, data.candles), data.funding
