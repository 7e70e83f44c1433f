"""Market data of a run: the window rule and the loaders (parquet store, ccxt download).

Two universes (:func:`resolve_symbols`):

* **traded** symbols (``--symbols``): each traded as its USDT-M perpetual ``BTC/USDT:USDT``; its
  perpetual candles AND funding must cover the window (else a one-line :class:`InputError`).
  Default: every perpetual in the store with candles of the timeframe and a funding file.
* **universe** (``--universe``): the symbols the models train on, pooled, and over which the
  cross-asset features are computed; the traded symbols are always in it (as their perpetual's
  candles), the other members come as spot candles. Default: every spot series of the timeframe
  with data inside the window. Universe members never move the window; a member with a shorter
  history joins where it has data; nothing is filled across gaps.

The window is resolved from the traded symbols only (:func:`resolve_window`). Every frame carries
the user symbol (``BTC/USDT``) in its ``symbol`` column. A timeframe the
store has no file for (e.g. ``4h``) is resampled from a finer stored one (:mod:`.derived`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market import derived
from cryptoml_pipeline.market.layout import perpetual_symbol, spot_symbol
from cryptoml_pipeline.market.repair import INPUT_REPAIRS, merge_input_repairs
from cryptoml_pipeline.market.schemas import CANDLE_COLUMNS, FUNDING_COLUMNS
from cryptoml_pipeline.market.store import Coverage, ParquetStore
from cryptoml_pipeline.timing import timeframe_to_timedelta, to_utc

if TYPE_CHECKING:
    from ccxt.base.exchange import Exchange

log = logging.getLogger(__name__)

FUNDING_INTERVAL = pd.Timedelta(hours=8)
NO_HISTORY = pd.Timedelta(0)
ALL_HISTORY_FROM = pd.Timestamp("2009-01-03", tz="UTC")  # before any crypto candle


@dataclass(frozen=True)
class MarketData:
    """Candles of every universe member (a traded symbol's rows are its USDT-M perpetual's
    candles, another member's its spot candles; ``symbol`` is always the user spelling
    ``BTC/USDT``) and the funding of the traded symbols.

    ``traded`` are the instruments the strategy trades; ``universe`` the symbols the models train
    on, pooled, and over which cross-asset features are computed (``traded`` is a subset). Empty
    tuples (old callers) mean "every symbol in ``candles``"."""

    candles: pd.DataFrame  # long candles of the universe (perp for traded symbols, else spot)
    funding: pd.DataFrame  # long funding of the traded symbols
    source: Literal["parquet", "ccxt", "synthetic"]
    synthetic: bool
    price_source: str  # "perpetual" | "spot_proxy" | "mixed"
    price_sources: dict[str, str]  # per symbol: "perpetual" | "spot_proxy"
    timeframe: str
    start: pd.Timestamp  # window [start, end)
    end: pd.Timestamp
    traded: tuple[str, ...] = ()
    universe: tuple[str, ...] = ()

    @property
    def traded_symbols(self) -> tuple[str, ...]:
        if self.traded:
            return self.traded
        return tuple(sorted(self.candles["symbol"].astype(str).unique()))

    @property
    def universe_symbols(self) -> tuple[str, ...]:
        return self.universe or self.traded_symbols

    def symbol_starts(self) -> dict[str, pd.Timestamp]:
        """Per traded symbol, where it enters the window (ragged windows): the latest of
        ``start``, its first candle and its first funding settlement."""
        out = {}
        for symbol in self.traded_symbols:
            first = [self.start]
            for frame in (self.candles, self.funding):
                own = frame.loc[frame["symbol"].astype(str) == symbol, "timestamp"]
                if len(own):
                    first.append(own.min())
            out[symbol] = max(first)
        return out


@dataclass(frozen=True)
class _SymbolData:
    """What the store holds for one user symbol: (first, last) of its series."""

    symbol: str
    traded: Coverage  # perp candles when a perp file exists, else spot
    funding: Coverage
    bar: pd.Timedelta
    funding_interval: pd.Timedelta = FUNDING_INTERVAL

    @property
    def first(self) -> pd.Timestamp:
        return max(self.traded[0], self.funding[0])

    @property
    def end(self) -> pd.Timestamp:
        """Exclusive end: the last traded bar + one bar, but never past the funding history (the
        last settlement + one interval) — a position can't be charged funding nobody recorded."""
        return min(self.traded[1] + self.bar, self.funding[1] + self.funding_interval)


def _bar(timeframe: str) -> pd.Timedelta:
    try:
        return timeframe_to_timedelta(timeframe)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _symbol_data(
    store: ParquetStore,
    symbol: str,
    timeframe: str,
    bar: pd.Timedelta,
    funding_interval: pd.Timedelta = FUNDING_INTERVAL,
) -> _SymbolData:
    perp = perpetual_symbol(symbol)
    traded = derived.candle_coverage(store, perp, timeframe)
    if traded is None:
        spot = derived.has_candles(store, spot_symbol(symbol), timeframe)
        hint = " (only spot candles: it can be a --universe member, not traded)" if spot else ""
        raise InputError(
            f"traded symbol {symbol!r} has no {timeframe} perpetual candles "
            f"({store.candles_path(perp, timeframe).name}) in {store.root / 'market'}{hint}"
        )
    funding = store.funding_coverage(perp)
    if funding is None:
        path = store.funding_path(perp)
        raise InputError(
            f"no funding data for {symbol!r}: {path.name} missing or empty in {path.parent}"
        )
    return _SymbolData(
        symbol=symbol, traded=traded, funding=funding, bar=bar, funding_interval=funding_interval
    )


def _stems(directory, suffix: str) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name[: -len(suffix)] for p in directory.glob(f"*{suffix}"))


def _stem_symbol(stem: str) -> str | None:
    """``BTC_USDT`` -> ``BTC/USDT``; ``BTC_USDT_USDT`` -> ``BTC/USDT:USDT`` (None otherwise)."""
    parts = stem.split("_")
    if len(parts) == 2:
        return f"{parts[0]}/{parts[1]}"
    if len(parts) == 3:
        return f"{parts[0]}/{parts[1]}:{parts[2]}"
    return None


def available_perpetuals(store: ParquetStore, timeframe: str) -> list[str]:
    """User symbols (``BTC/USDT``) whose perpetual has candles of ``timeframe`` and funding."""
    out = []
    for stem in _stems(store.root / "market", f"-{timeframe}.parquet"):
        sym = _stem_symbol(stem)
        if sym and ":" in sym and store.funding_path(sym).is_file():
            out.append(spot_symbol(sym))
    return sorted(out)


def available_spot(store: ParquetStore, timeframe: str) -> list[str]:
    """Spot symbols with a candle file of ``timeframe``."""
    out = []
    for stem in _stems(store.root / "market", f"-{timeframe}.parquet"):
        sym = _stem_symbol(stem)
        if sym and ":" not in sym:
            out.append(sym)
    return sorted(out)


def resolve_symbols(
    store: ParquetStore,
    symbols: Sequence[str] | None,
    universe: Sequence[str] | None,
    timeframe: str,
) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
    """``(traded, universe or None)`` with the defaults applied; ``universe=None`` means
    "every spot series with data in the window" (resolved by :func:`universe_in_window`)."""
    traded = (
        [spot_symbol(s) for s in symbols] if symbols else available_perpetuals(store, timeframe)
    )
    if not traded:
        raise InputError(
            f"no perpetual with {timeframe} candles and funding in {store.root}: pass --symbols"
        )
    if len(set(traded)) != len(traded):
        raise InputError(f"duplicate traded symbols in {traded}")
    if universe is None:
        return tuple(traded), None
    members = sorted({spot_symbol(s) for s in universe} | set(traded))
    return tuple(traded), tuple(members)


def universe_in_window(
    store: ParquetStore,
    traded: Sequence[str],
    universe: Sequence[str] | None,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> tuple[str, ...]:
    """The universe over ``[start, end)``: the traded symbols plus every (given, or every
    stored) spot series with data inside the window; members without data there are skipped
    with a log line (a named member without any candle file is an error)."""
    candidates = list(universe) if universe is not None else available_spot(store, timeframe)
    members = set(traded)
    for sym in candidates:
        if sym in members:
            continue
        cov = derived.candle_coverage(store, spot_symbol(sym), timeframe)
        if cov is None:
            if universe is not None:
                raise InputError(
                    f"universe member {sym!r} has no {timeframe} spot candles "
                    f"({store.candles_path(spot_symbol(sym), timeframe).name})"
                )
            continue
        if cov[0] >= end or cov[1] < start:
            log.info("universe member %s has no data in [%s, %s): skipped", sym, start, end)
            continue
        members.add(sym)
    return tuple(sorted(members))


def resolve_window(
    store: ParquetStore,
    symbols: Sequence[str],
    timeframe: str,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    lookback_days: int | None,
    *,
    funding_interval_hours: int = 8,
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The run's window ``[start, end)``: ragged at the start, common at the end.

    Default ``end`` = earliest (last traded candle + one bar, capped at the last funding
    settlement + one interval) over the symbols: every traded symbol has data up to the end.
    Default ``start`` = the EARLIEST first timestamp of any selected symbol (a symbol's first
    timestamp is the later of its first traded candle and its first funding settlement): all
    the data; a symbol whose data begin later joins the window there (:func:`load_market_data`
    reads it from its first bar, nothing is filled before it). With ``lookback_days``, the
    default start is ``end - lookback_days``, never before that earliest first timestamp. A
    given window is clipped to the data with a warning; one that lies entirely outside the data
    of a symbol is an :class:`InputError`.
    """
    if not symbols:
        raise InputError("no symbols selected")
    bar = _bar(timeframe)
    start = to_utc(start) if start is not None else None
    end = to_utc(end) if end is not None else None
    if start is not None and end is not None and start >= end:
        raise InputError(f"empty window: start {start} is not before end {end}")
    interval = pd.Timedelta(hours=funding_interval_hours)
    infos = [_symbol_data(store, symbol, timeframe, bar, interval) for symbol in symbols]
    for info in infos:
        outside = (start is not None and start >= info.end) or (
            end is not None and end <= info.first
        )
        if outside:
            raise InputError(
                f"window [{start or '...'}, {end or '...'}) lies outside the data of {info.symbol} "
                f"({info.first} .. {info.end})"
            )
    data_start = min(info.first for info in infos)  # ragged: later symbols join later
    data_end = min(info.end for info in infos)
    if end is None:
        end = data_end
    elif end > data_end:
        log.warning("end %s is beyond the data; using %s (last common bar + 1)", end, data_end)
        end = data_end
    if start is None:
        start = data_start
        if lookback_days is not None and end - pd.Timedelta(days=lookback_days) > data_start:
            start = end - pd.Timedelta(days=lookback_days)
    elif start < data_start:
        log.warning("start %s is before the data; using %s", start, data_start)
        start = data_start
    late = [i for i in infos if i.first >= end]
    if start >= end or late:
        ranges = ", ".join(f"{i.symbol} {i.first} .. {i.end}" for i in infos)
        raise InputError(f"no common data window [{start}, {end}) for the symbols ({ranges})")
    return start, end


def symbol_starts(
    store: ParquetStore,
    symbols: Sequence[str],
    timeframe: str,
    start: pd.Timestamp,
    *,
    funding_interval_hours: int = 8,
) -> dict[str, pd.Timestamp]:
    """Per traded symbol, where it enters the window: the later of ``start`` and its first
    timestamp (first traded candle and first funding settlement)."""
    bar = _bar(timeframe)
    interval = pd.Timedelta(hours=funding_interval_hours)
    out = {}
    for symbol in symbols:
        info = _symbol_data(store, symbol, timeframe, bar, interval)
        out[symbol] = max(to_utc(start), info.first)
    return out


def load_market_data(
    store: ParquetStore,
    symbols: Sequence[str],
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    history: pd.Timedelta | None = NO_HISTORY,
    funding_interval_hours: int = 8,
    universe: Sequence[str] | None = None,
) -> MarketData:
    """Candles of the universe and funding of the traded symbols for ``[start, end)``.

    A traded symbol's rows are its perpetual's candles from its first bar inside the window
    (ragged: a perpetual whose data begin after ``start`` joins there, nothing is filled before
    it); another universe member's rows its spot candles where they exist in the window.
    Funding (from the perpetual's file) covers ``[start - 8h, end)`` where it exists. With
    ``history``, rows of the same instruments from ``[start - history, start)`` are prepended
    where the files have them (``history=None``: everything the files hold before ``start``):
    feature warm-up and training history (``MarketData.start`` stays ``start``; test windows and
    evaluation never use rows before it).
    """
    if not symbols:
        raise InputError("no symbols selected")
    _bar(timeframe)
    start, end = to_utc(start), to_utc(end)
    if start >= end:
        raise InputError(f"empty window: start {start} is not before end {end}")
    if history is None:  # everything stored before start (bounded by the files)
        history = start - ALL_HISTORY_FROM
    candles, funding, sources = [], [], {}
    for symbol in symbols:
        frame, sources[symbol] = _traded_candles(
            store, symbol, timeframe, start, end, history=history
        )
        candles.append(frame)
        funding.append(
            _funding(
                store, symbol, start - history - pd.Timedelta(hours=funding_interval_hours), end
            )
        )
    members = [s for s in (universe or ()) if s not in set(symbols)]
    for member in members:
        spot = spot_symbol(member)
        frame = derived.read_candles(store, spot, timeframe, start - history, end, as_symbol=spot)
        if not (frame["timestamp"] >= start).any():
            log.info("universe member %s: no candles in [%s, %s); skipped", member, start, end)
            continue
        candles.append(frame)
    kinds = set(sources.values())
    price_source = kinds.pop() if len(kinds) == 1 else "mixed"
    return MarketData(
        candles=_concat(candles, CANDLE_COLUMNS),
        funding=_concat(funding, FUNDING_COLUMNS),
        source="parquet",
        synthetic=False,
        price_source=price_source,
        price_sources=sources,
        timeframe=timeframe,
        start=start,
        end=end,
        traded=tuple(sorted(symbols)),
        universe=tuple(sorted(set(symbols) | set(members))),
    )


def _traded_candles(
    store: ParquetStore,
    symbol: str,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    history: pd.Timedelta = NO_HISTORY,
) -> tuple[pd.DataFrame, str]:
    perp = perpetual_symbol(symbol)
    perp_cov = derived.candle_coverage(store, perp, timeframe)
    if perp_cov is None or perp_cov[0] >= end:
        why = "no candle file" if perp_cov is None else f"candles only from {perp_cov[0]}"
        raise InputError(
            f"traded symbol {symbol!r}: perpetual {perp} has {why} "
            f"({store.candles_path(perp, timeframe).name}); the window ends {end}"
        )
    if perp_cov[0] > start:
        log.info("traded symbol %s joins the window at its first bar %s", symbol, perp_cov[0])
    instrument, kind = perp, "perpetual"
    frame = derived.read_candles(
        store, instrument, timeframe, start - history, end, as_symbol=symbol
    )
    if not (frame["timestamp"] >= start).any():
        raise InputError(f"no {instrument} {timeframe} candles in [{start}, {end})")
    return frame, kind


def _funding(
    store: ParquetStore, symbol: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    perp = perpetual_symbol(symbol)
    if not store.has_funding(perp):
        raise InputError(
            f"traded symbol {symbol!r} has no funding file {store.funding_path(perp).name}"
        )
    return store.read_funding(perp, start, end, as_symbol=symbol)


def _concat(frames: list[pd.DataFrame], columns: tuple[str, ...]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty(columns)
    out = pd.concat(frames, ignore_index=True)[list(columns)]
    out = out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    out.attrs[INPUT_REPAIRS] = merge_input_repairs(frames)  # read repairs of every file
    return out


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    out["timestamp"] = pd.Series(dtype="datetime64[ns, UTC]")
    out["symbol"] = pd.Series(dtype="str")
    return out[list(columns)]


def load_via_ccxt(
    store: ParquetStore,
    symbols: Sequence[str],
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    *,
    exchange: Exchange | None = None,
    exchange_id: str = "binance",
) -> MarketData:
    """Land the days of ``[start, end)`` the store lacks (spot/perp candles; funding from
    ``start - 8h``) via the
    incremental :func:`~cryptoml_pipeline.market.ingest.backfill`, then load them like parquet
    data (labelled ``source="ccxt"``). Needs network unless ``exchange`` is canned."""
    from cryptoml_pipeline.market.ccxt_source import make_exchange
    from cryptoml_pipeline.market.ingest import backfill
    from cryptoml_pipeline.settings import IngestConfig

    config = IngestConfig(
        exchange=exchange_id, symbols=tuple(symbols), timeframes=(timeframe,), open_interest=False
    )
    exchange = exchange if exchange is not None else make_exchange(exchange_id)
    start, end = to_utc(start), to_utc(end)
    backfill(store, exchange, start, end, config, funding_start=start - FUNDING_INTERVAL)
    return dataclasses.replace(
        load_market_data(store, symbols, timeframe, start, end), source="ccxt"
    )


SPOT_CLOSE = "spot_close"  # a traded (perpetual) row's spot close at the same bar


def perpetual_spot_closes(
    store: ParquetStore,
    symbols: Sequence[str],
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> pd.DataFrame | None:
    """Spot closes (``timestamp, symbol, close``; ``symbol`` = the spot spelling, which is the
    traded symbol's) of ``symbols`` in ``[start, end)`` — the pooled family's perpetual-spot
    basis — or None when the store holds none (the basis is then absent, with the reason in
    the feature plan)."""
    parts = []
    for symbol in symbols:
        spot = spot_symbol(symbol)
        if not derived.has_candles(store, spot, timeframe):
            continue
        frame = derived.read_candles(store, spot, timeframe, start, end, as_symbol=spot)
        if len(frame):
            parts.append(frame[["timestamp", "close"]].assign(symbol=spot))
    if not parts:
        return None
    return pd.concat(parts, ignore_index=True)[["timestamp", "symbol", "close"]]


def with_spot_close(candles: pd.DataFrame, spot: pd.DataFrame | None) -> pd.DataFrame:
    """``candles`` with :data:`SPOT_CLOSE`: the spot close of the row's symbol at the row's
    bar (same open time, never filled; NaN where there is none)."""
    out = candles.drop(columns=[SPOT_CLOSE], errors="ignore")
    if spot is None or spot.empty:
        return out.assign(**{SPOT_CLOSE: float("nan")})
    right = pd.DataFrame(
        {
            "timestamp": pd.Series(spot["timestamp"]).astype("datetime64[ns, UTC]").array,
            "symbol": spot["symbol"].astype(str).array,
            SPOT_CLOSE: spot["close"].to_numpy(dtype="float64"),
        }
    ).drop_duplicates(["timestamp", "symbol"], keep="last")
    left = out[["timestamp", "symbol"]].astype({"symbol": str})
    left = left.assign(timestamp=left["timestamp"].astype("datetime64[ns, UTC]"))
    merged = left.merge(right, on=["timestamp", "symbol"], how="left")
    return out.assign(**{SPOT_CLOSE: merged[SPOT_CLOSE].to_numpy()})
