"""Dagster resources: thin typed wrappers that turn run configuration into domain settings/data."""

import logging
import os
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr
from sqlalchemy import Engine

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.market import (
    MarketData,
    ParquetStore,
    load_market_data,
    load_via_ccxt,
    resolve_window,
    synthetic_market,
)
from cryptoml_pipeline.market.layout import perpetual_symbol
from cryptoml_pipeline.market.source import resolve_symbols, universe_in_window
from cryptoml_pipeline.market.synthetic import (
    DEFAULT_SIGNAL_STRENGTH,
    synthetic_timeframe_candles,
    unsupported_timeframes,
)
from cryptoml_pipeline.monitoring.tracker import ModelPerformanceTracker
from cryptoml_pipeline.registry.db import DB_URL_ENV, make_engine, redacted, sqlite_url, upgrade
from cryptoml_pipeline.registry.model_registry import ModelRegistry
from cryptoml_pipeline.settings import (
    DEFAULT_SYMBOLS,
    PipelineSettings,
    apply_overrides,
    profile_settings,
)
from cryptoml_pipeline.timing import timeframe_to_timedelta, to_utc

log = logging.getLogger(__name__)

SYNTHETIC_DEFAULT_END = "2025-10-01"
# the synthetic market has no "all the data": without data.lookback_days it spans this many days;
# 460 = the demo profile's first 180-day training window, its warm-up and 3 walk-forward folds of
# 90 days, so that a fresh clone's offline `make run` (install included) stays under 15 minutes on
# 2 CPU cores with every zoo model and control (benchmarks/results/synthetic_run.json)
SYNTHETIC_DEFAULT_DAYS = 460
# ccxt downloads what it loads: without data.lookback_days / --start it fetches this many days
CCXT_DEFAULT_DAYS = 730
SYNTHETIC_TRADED: tuple[str, ...] = (*DEFAULT_SYMBOLS, "XRP/USDT")
SYNTHETIC_UNIVERSE: tuple[str, ...] = (
    *SYNTHETIC_TRADED,
    "AVAX/USDT",
    "DOGE/USDT",
    "LINK/USDT",
    "DOT/USDT",
)


def load_config_file(path: str | Path) -> dict:
    """A ``--config`` YAML: nested setting overrides, e.g. ``target: {kind: classes}``."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise InputError(f"config file {file} does not exist")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(
            f"config file {file} is not valid YAML: {str(exc).splitlines()[0]}"
        ) from None
    if not isinstance(raw, dict):
        raise InputError(f"config file {file} must hold a mapping of settings")
    raw.pop("description", None)
    return raw


class PipelineResource(dg.ConfigurableResource):
    """What a run computes: profile, symbols, timeframe, window and where outputs go."""

    profile: Literal["tiny", "demo", "full"] = "demo"
    # None: every perpetual with funding (traded) / every spot series in the window (universe)
    symbols: list[str] | None = None
    universe: list[str] | None = None
    timeframe: str = "1h"
    start: str | None = None
    end: str | None = None
    output_dir: str = "output"
    config_file: str | None = None  # a YAML of setting overrides (``cryptoml run --config``)
    holdout_start: str | None = None  # the report's development / held-back split

    _settings: PipelineSettings | None = PrivateAttr(default=None)

    def settings(self) -> PipelineSettings:
        """The run's settings: the profile (``profiles/<profile>.yaml``), the config file's
        overrides, then this resource's timeframe, window and symbols. Resolved once per
        resource instance (Dagster initialises one per run; the cache is also cleared around each
        run). Inside the asset graph, assets read the ``run_settings`` asset instead
        (``defs/assets/run_settings.py``), which calls this once."""
        if self._settings is None:
            self._settings = self._resolve()
        return self._settings

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._settings = None  # a new run reads the config file again

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self._settings = None

    def _resolve(self) -> PipelineSettings:
        base = profile_settings(self.profile)
        overrides = load_config_file(self.config_file) if self.config_file else {}
        settings = apply_overrides(base, overrides)
        data = settings.data.model_copy(
            update={
                "timeframe": self.timeframe,
                "start": to_utc(self.start).to_pydatetime() if self.start else None,
                "end": to_utc(self.end).to_pydatetime() if self.end else None,
                **({"symbols": tuple(self.symbols)} if self.symbols else {}),
                **({"universe": tuple(self.universe)} if self.universe else {}),
            }
        )
        return settings.model_copy(update={"data": data})

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)


class MarketDataResource(dg.ConfigurableResource):
    """Market data source: ``parquet`` (a directory in the shared layout), ``ccxt`` (downloads into
    ``data_dir`` first, needs network) or ``synthetic`` (seeded, clearly labelled)."""

    kind: Literal["parquet", "ccxt", "synthetic"] = "parquet"
    data_dir: str | None = None
    exchange: str = "binance"
    synthetic_seed: int = 7
    synthetic_signal_strength: float = DEFAULT_SIGNAL_STRENGTH  # planted reversal; 0 = noise
    synthetic_universe: list[str] | None = None  # extra untraded members (None: traded only)

    def _store(self) -> ParquetStore:
        if not self.data_dir:
            raise InputError(f"market source {self.kind!r} needs a data directory")
        path = Path(self.data_dir)
        if self.kind == "parquet" and not path.is_dir():
            raise InputError(f"data directory {path} does not exist")
        return ParquetStore(path)

    def symbols(self, settings: PipelineSettings) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
        """``(traded, universe or None = every spot series in the window)``, defaults applied."""
        data = settings.data
        if self.kind == "synthetic":
            traded = tuple(data.symbols or SYNTHETIC_TRADED)
            universe = data.universe or self.synthetic_universe or SYNTHETIC_UNIVERSE
            return traded, tuple(sorted(set(universe) | set(traded)))
        return resolve_symbols(self._store(), data.symbols, data.universe, data.timeframe)

    def resolved(self, settings: PipelineSettings) -> dict:
        """Traded symbols, universe and window, resolved together (the CLI pins them)."""
        traded, universe = self.symbols(settings)
        pinned = settings.model_copy(
            update={"data": settings.data.model_copy(update={"symbols": traded})}
        )
        start, end = self.window(pinned)
        if universe is None:
            universe = universe_in_window(
                self._store(), traded, None, settings.data.timeframe, start, end
            )
        elif self.kind != "synthetic":
            universe = universe_in_window(
                self._store(), traded, universe, settings.data.timeframe, start, end
            )
        return {"symbols": traded, "universe": universe, "start": start, "end": end}

    def window(self, settings: PipelineSettings) -> tuple[pd.Timestamp, pd.Timestamp]:
        data = settings.data
        start = to_utc(data.start) if data.start else None
        end = to_utc(data.end) if data.end else None
        if self.kind == "synthetic":
            end = end or to_utc(SYNTHETIC_DEFAULT_END)
            start = start or end - pd.Timedelta(days=data.lookback_days or SYNTHETIC_DEFAULT_DAYS)
            if start >= end:
                raise InputError(f"empty window: start {start} is not before end {end}")
            return start, end
        traded = data.symbols or self.symbols(settings)[0]
        return resolve_window(
            self._store(),
            list(traded),
            data.timeframe,
            start,
            end,
            data.lookback_days,
            funding_interval_hours=data.funding_interval_hours,
        )

    def symbols_with_timeframes(
        self,
        symbols: list[str],
        timeframes: list[str],
        settings: PipelineSettings | None = None,
    ) -> tuple[list[str], dict[str, str]]:
        """``(symbols whose every timeframe is stored, {skipped symbol: reason})``. The synthetic
        market derives every divisor / multiple of the run's timeframe (``settings``) from its
        candles (:func:`~cryptoml_pipeline.market.synthetic.synthetic_timeframe_candles`)."""
        if self.kind == "synthetic":
            if settings is None:
                reason = "the synthetic market derives other timeframes from the run's settings"
                return [], dict.fromkeys(symbols, reason)
            bad = unsupported_timeframes(settings.data.timeframe, timeframes)
            if bad:
                return [], dict.fromkeys(symbols, "; ".join(bad.values()))
            return list(symbols), {}
        if not self.data_dir:
            return [], dict.fromkeys(symbols, "no data directory for the finer timeframes")
        store = self._store()
        have, skipped = [], {}
        for s in symbols:
            missing = [tf for tf in timeframes if not store.has_candles(s, tf)]
            if missing:
                skipped[s] = f"no {', '.join(missing)} candles in the store"
            else:
                have.append(s)
        return have, skipped

    def candles_by_timeframe(
        self,
        symbols: list[str],
        timeframes: list[str],
        start: pd.Timestamp,
        end: pd.Timestamp,
        settings: PipelineSettings | None = None,
    ) -> dict[str, pd.DataFrame]:
        """Stored candles per timeframe for ``[start, end)`` (the multi-scale model's inputs);
        a timeframe missing for any symbol is left out. The synthetic market cuts them out of
        (or groups) the run's candles (``settings``: the run's, so that they are the very
        candles :meth:`load` gives), only for the base bars of ``[start, end)``."""
        if self.kind == "synthetic":
            return (
                {}
                if settings is None
                else self._synthetic_timeframes(symbols, timeframes, start, end, settings)
            )
        if not self.data_dir:
            return {}
        store = self._store()
        out = {}
        for tf in timeframes:
            if not all(store.has_candles(s, tf) for s in symbols):
                continue
            parts = [store.read_candles(s, tf, start, end) for s in symbols]
            frame = pd.concat(parts, ignore_index=True)
            if not frame.empty:
                out[tf] = frame
        return out

    def _synthetic_timeframes(
        self,
        symbols: list[str],
        timeframes: list[str],
        start: pd.Timestamp,
        end: pd.Timestamp,
        settings: PipelineSettings,
    ) -> dict[str, pd.DataFrame]:
        base = settings.data.timeframe
        if unsupported_timeframes(base, timeframes):
            return {}
        start, end = to_utc(start), to_utc(end)
        candles = self.load(settings).candles
        stamps = candles["timestamp"]
        keep = (
            candles["symbol"].isin(list(symbols))
            & (stamps >= start.floor(timeframe_to_timedelta(base)))
            & (stamps < end)
        )
        derived = synthetic_timeframe_candles(
            candles.loc[keep], base, timeframes, seed=self.synthetic_seed
        )
        out = {}
        for tf, frame in derived.items():
            frame = frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)]
            if not frame.empty:
                out[tf] = frame.reset_index(drop=True)
        return out

    def open_interest(
        self, symbols: list[str], period: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame | None:
        """Stored open interest of each symbol's perpetual in ``[start, end)`` as ``timestamp,
        symbol, open_interest`` (user symbols), or None when the store holds none (the
        open-interest features are then absent, with the reason in the feature plan)."""
        if self.kind == "synthetic" or not self.data_dir:
            return None
        store = self._store()
        parts = []
        for symbol in symbols:
            perp = perpetual_symbol(symbol)
            if not store.open_interest_path(perp, period).is_file():
                continue
            oi = store.read_open_interest(perp, period, start, end)
            if len(oi) and "open_interest" in oi.columns:
                parts.append(oi[["timestamp", "open_interest"]].assign(symbol=symbol.split(":")[0]))
        if not parts:
            return None
        return pd.concat(parts, ignore_index=True)[["timestamp", "symbol", "open_interest"]]

    def spot_closes(
        self, symbols: list[str], timeframe: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame | None:
        """Spot closes (``timestamp, symbol, close``, user symbols) of ``symbols`` in
        ``[start, end)`` — the pooled family's perpetual-spot basis — or None when the store
        holds none (the basis is then absent, with the reason in the feature plan)."""
        if self.kind == "synthetic" or not self.data_dir:
            return None
        from cryptoml_pipeline.market.source import perpetual_spot_closes

        return perpetual_spot_closes(self._store(), symbols, timeframe, start, end)

    def load(self, settings: PipelineSettings) -> MarketData:
        resolved = self.resolved(settings)
        data = settings.data.model_copy(
            update={"symbols": resolved["symbols"], "universe": resolved["universe"]}
        )
        if self.kind == "synthetic":
            start, end = resolved["start"], resolved["end"]
            log.warning("SYNTHETIC market data: results say nothing about real markets")
            return synthetic_market(
                list(data.symbols),
                data.timeframe,
                start,
                end,
                seed=self.synthetic_seed,
                universe=list(data.universe or ()),
                signal_strength=self.synthetic_signal_strength,
                # warm-up (+ training) history, as for parquet; "all" = the warm-up only
                history=pd.Timedelta(days=data.loaded_history_days or data.history_days),
            )
        if self.kind == "ccxt":
            # the store may not hold the data yet: download the requested window first
            end = to_utc(data.end) if data.end else pd.Timestamp.now(tz="UTC").floor("D")
            days = data.lookback_days or CCXT_DEFAULT_DAYS
            start = to_utc(data.start) if data.start else end - pd.Timedelta(days=days)
            return load_via_ccxt(self._store(), list(data.symbols), data.timeframe, start, end)
        return load_market_data(
            self._store(),
            list(data.symbols),
            data.timeframe,
            resolved["start"],
            resolved["end"],
            # None: every stored bar before start (training history of each member's first bar)
            history=(
                pd.Timedelta(days=data.loaded_history_days)
                if data.loaded_history_days is not None
                else None
            ),
            funding_interval_hours=data.funding_interval_hours,
            universe=list(data.universe or ()),
        )


class DatabaseResource(dg.ConfigurableResource):
    """The registry / performance-tracker database as a client: one engine per run, built (and the
    schema migrated to head) on first use, disposed when the run's resources are torn down.

    ``url``: an SQLAlchemy URL. Production sets it from ``dg.EnvVar("CRYPTOML_DB_URL")`` (the
    password stays in the environment; Dagster shows the variable's name, never its value); the
    default is the SQLite file under the pipeline's output directory. Only the redacted URL is
    ever logged."""

    url: str

    _engine: Engine | None = PrivateAttr(default=None)

    @classmethod
    def for_output_dir(cls, output_dir: str | Path) -> "DatabaseResource":
        """``$CRYPTOML_DB_URL`` (as a ``dg.EnvVar``) when set, else ``OUTPUT/cryptoml.db``."""
        if os.environ.get(DB_URL_ENV):
            return cls(url=dg.EnvVar(DB_URL_ENV))
        return cls(url=sqlite_url(output_dir))

    @property
    def redacted_url(self) -> str:
        return redacted(self.url)

    def engine(self) -> Engine:
        if self._engine is None:
            log.info("database %s (schema -> head)", self.redacted_url)
            engine = make_engine(self.url)
            upgrade(engine)
            self._engine = engine
        return self._engine

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.engine())

    def tracker(self) -> ModelPerformanceTracker:
        return ModelPerformanceTracker(self.engine())

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class ExperimentResource(dg.ConfigurableResource):
    """The sweep the experiment assets compute: a grid file (``cryptoml experiment --grid``; in
    the UI / daemon ``$CRYPTOML_EXPERIMENT_GRID``)."""

    grid_file: str | None = None

    def grid(self, base: PipelineSettings):
        from cryptoml_pipeline.experiments.grid import load_grid

        if not self.grid_file:
            raise dg.Failure(
                "no experiment grid configured: run `cryptoml experiment --grid FILE` or set "
                "CRYPTOML_EXPERIMENT_GRID for the UI"
            )
        return load_grid(Path(self.grid_file), base)

    @classmethod
    def from_env(cls) -> "ExperimentResource":
        return cls(grid_file=os.environ.get("CRYPTOML_EXPERIMENT_GRID") or None)
