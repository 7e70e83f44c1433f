"""``cryptoml live``: the long-running service (see ``docs/live.md``).

In memory: the served model (:mod:`.loader`, everything from its manifest), the causal feature
tail of every universe member (:class:`MarketTail`, trimmed to :func:`.market_tail.tail_span`),
the paper account (:class:`.paper.PaperTrader`, re-simulating only the bars since its last flat
close) and the latest signal of every traded symbol. At each bar close (:meth:`LiveService.step`):

1. the bar's candles of every universe member (and the funding settled in it) join the tail;
2. the account processes the bar: the decisions made at the previous close fill at its open, by
   the backtest's own simulator; ONE database transaction per bar (:mod:`.paper`);
3. the signal of every traded symbol at the bar is computed from the tail (:mod:`.fast_features`
   rows the model reads, :func:`.signal.forecast_rows`) and turned into the backtest's decision
   rows (:func:`.paper_adapter.decisions`) that fill at the next bar's open.

A killed service restarts at the first unprocessed bar: the tail is warmed up again from the
stored bars, the decisions at the cursor bar are recomputed (deterministic) and the account's
window is re-read from the database. The work per bar is bounded: the tail is trimmed, the
features and the prediction are computed for the rows the model reads, and the simulator runs
over the account's window only.

Guards (on the bar clock; the replay clock in replay mode, where stale / expired / degraded only
warn): ``stale`` (the last closed bar lags the clock by more than ``STALE_BARS`` bars),
``expired`` (the served model is older than ``retrain.max_model_age_days``), ``degraded`` (the
tracker's recent accuracy < (1 - degradation) x prior), ``kill`` (``POST /kill`` or the kill
file ``OUTPUT/live/<run>.kill``: the account is flattened by the backtest's end-of-data rule and
the service stops). A blocking guard (live mode) withholds new decisions: positions are still
managed (stops, reviews) by the simulator. Recorded for the dashboard's live panel: each bar's
record (``paper_bars.inputs``) holds these guards' state at its close (``guards``) and what the
simulator's guards counted at it (``guard_counts``), the account record
(``paper_accounts.config["guards"]``) every guard's threshold, ``killed_at`` the kill.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.live import paper_adapter as core
from cryptoml_pipeline.live.bar_intake import BarIntake
from cryptoml_pipeline.live.exchange import ExchangeFeed, Executor, call, exchange_client
from cryptoml_pipeline.live.loader import ServedModel, load_served, narrow_symbols
from cryptoml_pipeline.live.market_tail import attach_spot, member_label, needs_spot, tail_span
from cryptoml_pipeline.live.paper import (
    BarInput,
    PaperTrader,
    account_config,
    record_fill,
    run_state,
)
from cryptoml_pipeline.live.signal import forecast_rows, signal_arrays, signal_records
from cryptoml_pipeline.market.layout import perpetual_symbol
from cryptoml_pipeline.market.source import load_market_data, with_spot_close
from cryptoml_pipeline.market.store import ParquetStore
from cryptoml_pipeline.registry.db import open_database
from cryptoml_pipeline.registry.deployment_store import deployed_dir
from cryptoml_pipeline.registry.schema import (
    paper_accounts,
    paper_positions,
    paper_runs,
)
from cryptoml_pipeline.timing import timeframe_to_timedelta

logger = logging.getLogger(__name__)

STALE_BARS = 2  # the last closed bar may lag the clock by this many bars
BAR_DEADLINE = pd.Timedelta(seconds=60)  # live: how long after its close a late bar is awaited
EMPTY_DECISIONS = pd.DataFrame(columns=list(core.DECISION_FIELDS), dtype=np.float64)
EMPTY_FUNDING = pd.DataFrame(columns=["timestamp", "symbol", "funding_rate"])
# settings that must not change under an open account (the simulator's rules)
TRADING_SETTINGS = ("costs", "risk", "slippage", "min_hold_bars")


def say(message: str) -> None:
    sys.stderr.write(f"[live] {message}\n")
    sys.stderr.flush()


# --- the market tail ----------------------------------------------------------------------------
class MarketTail:
    """The universe's candles and the traded symbols' funding, from ``span`` before the last
    bar on (older rows are dropped at every bar: bounded memory and work)."""

    def __init__(self, span: pd.Timedelta, funding_span: pd.Timedelta) -> None:
        self.span, self.funding_span = span, funding_span
        self.candles: pd.DataFrame | None = None
        self.funding: pd.DataFrame | None = None

    def extend(self, candles: pd.DataFrame, funding: pd.DataFrame | None) -> None:
        self.candles = candles if self.candles is None else pd.concat([self.candles, candles])
        if funding is not None and len(funding):
            self.funding = funding if self.funding is None else pd.concat([self.funding, funding])
        last = self.candles["timestamp"].max()
        self.candles = self.candles[self.candles["timestamp"] > last - self.span]
        if self.funding is not None:
            edge = last - self.span - self.funding_span
            self.funding = self.funding[self.funding["timestamp"] > edge]


# --- bar sources --------------------------------------------------------------------------------
@dataclass
class BarData:
    bar: pd.Timestamp
    candles: pd.DataFrame  # every universe member's candle at ``bar``
    funding: pd.DataFrame  # settlements in [bar, bar + step) (or the gap before ``bar``)


class ReplaySource:
    """Stored bars whose open time is in ``[start, end)``, and the warm-up before ``start``."""

    def __init__(
        self,
        store: ParquetStore,
        served: ServedModel,
        start: pd.Timestamp,
        end: pd.Timestamp,
    ) -> None:
        self.step = timeframe_to_timedelta(served.timeframe)
        self.start, self.end = start, end
        data = load_market_data(
            store,
            list(served.symbols),
            served.timeframe,
            start,
            end,
            history=tail_span(served) + 2 * self.step,
            funding_interval_hours=served.settings.data.funding_interval_hours,
            universe=list(served.universe),
        )
        candles = attach_spot(store, served, data.candles)
        candles = candles.assign(timestamp=pd.to_datetime(candles["timestamp"], utc=True))
        self.candles = candles.sort_values(["timestamp", "symbol"], kind="stable")
        funding = data.funding if data.funding is not None else EMPTY_FUNDING
        funding = funding.assign(timestamp=pd.to_datetime(funding["timestamp"], utc=True))
        self.funding = funding.sort_values(["timestamp", "symbol"], kind="stable")
        labels = [member_label(served, m) for m in served.universe]
        per_bar = self.candles[self.candles["symbol"].isin(labels)].groupby("timestamp")["symbol"]
        complete = per_bar.nunique()
        complete = complete[complete == len(set(labels))].index
        self.bars = [b for b in complete if start <= b < end]
        self._by_bar = dict(tuple(self.candles.groupby("timestamp")))
        self._funding_ns = self.funding["timestamp"].astype("datetime64[ns, UTC]").array.asi8

    def warmup(self, through: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Candles up to ``through`` (open time) and funding settled before its close."""
        c = self.candles[self.candles["timestamp"] <= through]
        f = self.funding[self.funding["timestamp"] < through + self.step]
        return c, f

    def at(self, bar: pd.Timestamp, previous: pd.Timestamp | None) -> BarData:
        lo = (previous + self.step) if previous is not None else bar
        a = int(np.searchsorted(self._funding_ns, lo.value, "left"))
        b = int(np.searchsorted(self._funding_ns, (bar + self.step).value, "left"))
        return BarData(bar, self._by_bar[bar], self.funding.iloc[a:b])


# --- metrics ------------------------------------------------------------------------------------
class Metrics:
    """Prometheus metrics of one service (its own registry)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.bars = Counter("cryptoml_live_bars_processed", "bars processed", registry=r)
        self.latency = Histogram(
            "cryptoml_live_bar_seconds",
            "per-bar processing time (features, prediction, simulation, commit)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self.equity = Gauge("cryptoml_live_equity", "account equity at the last close", registry=r)
        self.exposure = Gauge(
            "cryptoml_live_exposure", "gross notional / equity at the last close", registry=r
        )
        self.guard_trips = Counter(
            "cryptoml_live_guard_trips", "guard trips", ["guard"], registry=r
        )
        self.exchange_errors = Counter(
            "cryptoml_live_exchange_errors", "errors fetching bars from the exchange", registry=r
        )
        self.lag = Gauge("cryptoml_live_lag_bars", "bars the last closed bar lags", registry=r)
        self.model_swaps = Counter(
            "cryptoml_live_model_swaps", "newly deployed models picked up", registry=r
        )
        self.bar_events = Counter(
            "cryptoml_live_bar_events",
            "bar integrity events (late, missing, duplicate, revised, not_closed, invalid, "
            "ignored)",
            ["kind"],
            registry=r,
        )
        self.orders = Counter(
            "cryptoml_live_orders",
            "--execute orders (sent, found = already on the exchange, rejected, partial)",
            ["kind"],
            registry=r,
        )

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


# --- guards -------------------------------------------------------------------------------------
@dataclass
class Guards:
    replay: bool
    kill_file: Path
    state: dict[str, bool] = field(
        default_factory=lambda: dict.fromkeys(("stale", "expired", "degraded", "kill"), False)
    )
    trips: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("stale", "expired", "degraded", "kill"), 0)
    )

    def set(self, name: str, on: bool, why: str, metrics: Metrics) -> None:
        if on and not self.state[name]:
            self.trips[name] += 1
            metrics.guard_trips.labels(guard=name).inc()
            mode = "warning only (replay)" if self.replay and name != "kill" else "blocking"
            say(f"guard {name} tripped ({mode}): {why}")
        elif not on and self.state[name]:
            say(f"guard {name} cleared")
        self.state[name] = on

    @property
    def blocking(self) -> bool:
        if self.state["kill"]:
            return True
        return not self.replay and any(self.state[g] for g in ("stale", "expired", "degraded"))

    def as_dict(self) -> dict[str, Any]:
        return {
            name: {"tripped": self.state[name], "trips": self.trips[name]} for name in self.state
        }


def model_trained_at(served: ServedModel) -> pd.Timestamp | None:
    """The end of the model's training data (its age counts from there)."""
    return served.data_end


# --- the service --------------------------------------------------------------------------------
@dataclass
class LiveOptions:
    output_dir: Path
    data_dir: Path
    run_name: str
    candidate: bool = False
    symbols: Sequence[str] | None = None
    replay: tuple[pd.Timestamp, pd.Timestamp] | None = None
    bar_delay: float = 0.0
    poll_seconds: float | None = None
    execute: bool = False  # live mode: send the decisions as orders (keys from the environment)
    exchange_url: str | None = None  # another server for ccxt (testnet, the test simulator)
    bar_deadline: pd.Timedelta = BAR_DEADLINE  # wait this long for a late bar
    clock: Callable[[], pd.Timestamp] | None = None  # live mode's clock (tests: simulated)
    exchange_clock: bool = False  # live mode: the clock is the exchange's server time


class LiveService:
    def __init__(self, options: LiveOptions) -> None:
        self.options = options
        self.output_dir = Path(options.output_dir)
        self.served = load_served(self.output_dir, candidate=options.candidate)
        if not self.served.deployed:
            say(
                f"model {self.served.version} is a candidate, NOT deployed for trading "
                f"({self.served.reason or 'no reason recorded'})"
            )
        self.trading = narrow_symbols(self.served, options.symbols)
        self.step = timeframe_to_timedelta(self.served.timeframe)
        self.store = ParquetStore(Path(options.data_dir))
        self.engine = open_database(self.output_dir)
        self.metrics = Metrics()
        kill_dir = self.output_dir / "live"
        kill_dir.mkdir(parents=True, exist_ok=True)
        self.guards = Guards(
            replay=options.replay is not None, kill_file=kill_dir / f"{options.run_name}.kill"
        )
        self.signals: dict[str, dict[str, Any]] = {}
        self.pending: pd.DataFrame = EMPTY_DECISIONS
        self.pending_stamp: pd.Timestamp | None = None
        self.pending_model: str = self.served.version
        self.last_bar: pd.Timestamp | None = None
        self.clock: pd.Timestamp | None = None
        self.stopped = threading.Event()
        self.killed = threading.Event()
        self.finished = False
        self.lock = threading.Lock()
        self._deployed_mtime = self._manifest_mtime()
        settings = self.served.settings
        self._check_account()
        self.trader = PaperTrader(
            self.engine,
            run_name=options.run_name,
            model_version=self.served.version,
            settings=settings,
            timeframe=self.served.timeframe,
            initial_equity=settings.paper.initial_equity,
            account=self._account(),
        )
        funding_span = pd.Timedelta(hours=settings.data.funding_interval_hours) * 2
        self.tail = MarketTail(tail_span(self.served) + 2 * self.step, funding_span)
        self.source: ReplaySource | ExchangeFeed
        self.spot_cache = pd.DataFrame(columns=["timestamp", "symbol", "close"])
        self.executor: Executor | None = None
        self.halted: str | None = None
        labels = [member_label(self.served, m) for m in self.served.universe]
        self.intake = BarIntake(
            labels,
            self.step,
            options.bar_deadline,
            say,
            lambda kind: self.metrics.bar_events.labels(kind=kind).inc(),
        )
        if options.replay is not None:
            self.source = ReplaySource(self.store, self.served, *options.replay)
            if not self.source.bars:
                raise InputError(
                    f"no bar of every universe member in [{options.replay[0]}, "
                    f"{options.replay[1]}) in {self.store.root}"
                )
        else:
            client = exchange_client(options.exchange_url, keys=options.execute)
            self.source = ExchangeFeed(
                client,
                self.served.universe,
                {m: member_label(self.served, m) for m in self.served.universe},
                self.trading,
                self.served.timeframe,
                self._exchange_error,
            )
            if options.execute:
                self.executor = Executor(
                    client,
                    run=options.run_name,
                    symbols=self.trading,
                    state_path=kill_dir / f"{options.run_name}.execution.json",
                    say=say,
                    on_error=self._exchange_error,
                    count=lambda kind: self.metrics.orders.labels(kind=kind).inc(),
                )
        self.metrics.equity.set(self.trader.equity())

    def _exchange_error(self, exc: Exception) -> None:
        self.metrics.exchange_errors.inc()
        say(f"exchange error (retrying): {type(exc).__name__}: {str(exc)[:160]}")

    def now(self) -> pd.Timestamp:
        """Live mode's clock: ``options.clock``, else with ``exchange_clock`` the exchange's
        server time (``GET /fapi/v1/time``, retried like every exchange call), else this
        machine's."""
        clock = self.options.clock
        if clock is not None:
            return clock()
        if self.options.exchange_clock and isinstance(self.source, ExchangeFeed):
            ms = call(self.source.client.fetch_time, self._exchange_error)
            return pd.Timestamp(int(ms), unit="ms", tz="UTC")
        return pd.Timestamp.now(tz="UTC")

    # --- account record -----------------------------------------------------------------------
    def _account(self) -> dict[str, Any]:
        replay = self.options.replay
        return {
            "mode": "replay" if replay else "live",
            "data_dir": str(Path(self.options.data_dir).resolve()),
            "start": replay[0].isoformat() if replay else None,
            "end": replay[1].isoformat() if replay else None,
            "symbols": list(self.trading),
            "universe": list(self.served.universe),
            "timeframe": self.served.timeframe,
            "model_version": self.served.version,
            "candidate": not self.served.deployed,
            "initial_equity": self.served.settings.paper.initial_equity,
            "execute": bool(self.options.execute),
            "guards": self._guard_limits(),
        }

    def _guard_limits(self) -> dict[str, float | int | None]:
        """Each guard's threshold as the account starts (None = off; shown by the dashboard)."""
        s = self.served.settings
        return {
            "stale": STALE_BARS,
            "expired": s.retrain.max_model_age_days,
            "degraded": s.retrain.degradation,
            "daily_loss_limit": s.risk.daily_loss_limit,
            "max_notional_per_symbol": s.risk.max_notional_per_symbol,
            "max_notional_total": s.risk.max_notional_total,
        }

    def _check_account(self) -> None:
        """Restarting with the same run name resumes that account: its symbols and mode must
        match; a killed account stays stopped."""
        config = account_config(self.engine, self.options.run_name) or {}
        if config.get("killed_at"):
            raise InputError(
                f"account {self.options.run_name!r} was killed (flattened) at "
                f"{config['killed_at']}: start a new --run-name"
            )
        if config.get("symbols") and list(config["symbols"]) != list(self.trading):
            raise InputError(
                f"account {self.options.run_name!r} trades {config['symbols']}, not "
                f"{list(self.trading)}: use the same --symbols or a new --run-name"
            )
        want = "replay" if self.options.replay else "live"
        if config.get("mode") and config["mode"] != want:
            raise InputError(
                f"account {self.options.run_name!r} is a {config['mode']} account, not {want}"
            )

    # --- hot swap -------------------------------------------------------------------------------
    def _manifest_mtime(self) -> float | None:
        path = deployed_dir(self.output_dir) / "manifest.json"
        try:
            return path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def maybe_swap(self, bar: pd.Timestamp) -> None:
        """A newly deployed model is served from the next decision on (same symbols, universe,
        timeframe and trading rules; otherwise it is refused with a warning)."""
        if self.options.candidate:
            return
        mtime = self._manifest_mtime()
        if mtime == self._deployed_mtime:
            return
        self._deployed_mtime = mtime
        try:
            new = load_served(self.output_dir)
        except InputError as exc:
            say(
                f"deployed model changed but cannot be loaded ({exc}); "
                f"keeping {self.served.version}"
            )
            return
        if new.version == self.served.version:
            return
        old = self.served
        same = (
            new.symbols == old.symbols
            and new.universe == old.universe
            and new.timeframe == old.timeframe
            and all(getattr(new.settings, k) == getattr(old.settings, k) for k in TRADING_SETTINGS)
        )
        if not same:
            say(
                f"model {new.version} was deployed but trades other symbols/rules than "
                f"{old.version}: NOT picked up (restart with a new --run-name to trade it)"
            )
            return
        with self.lock:
            self.served = new
            self.tail.span = max(self.tail.span, tail_span(new) + 2 * self.step)
        self.metrics.model_swaps.inc()
        say(f"model {new.version} deployed: serving it from the decision at bar {bar.isoformat()}")

    # --- one bar --------------------------------------------------------------------------------
    def _decide(self, bar: pd.Timestamp) -> None:
        """Signals at ``bar`` (for /signal) and the decision rows that fill at the next open."""
        served = self.served
        candles, funding = self.tail.candles, self.tail.funding
        bars = dict.fromkeys(self.trading, bar)
        rows = signal_arrays(served, candles, funding, bars, self.trading)
        preds = forecast_rows(served, rows, bars, self.trading)
        settings, tf = served.settings, served.timeframe
        vol_col = f"rv_{settings.risk.volatility_window}"
        atr_col = f"atr_pct_{settings.risk.atr_period}"
        ok = [s for s in self.trading if s in preds]
        pred_frame = pd.DataFrame(
            {
                "timestamp": pd.DatetimeIndex([bar] * len(ok)),
                "symbol": ok,
                "signal": [preds[s]["signal"] for s in ok],
                "confidence": [preds[s]["confidence"] for s in ok],
                "expected_return": [preds[s]["expected_return"] for s in ok],
            }
        )
        feats = pd.DataFrame(
            {
                "timestamp": pd.DatetimeIndex([bar] * len(ok)),
                "symbol": ok,
                vol_col: [rows.columns[vol_col][preds[s]["row"]] for s in ok],
                atr_col: [rows.columns[atr_col][preds[s]["row"]] for s in ok],
            }
        )
        decisions = core.decisions(pred_frame, feats, timeframe=tf, settings=settings)
        if self.guards.blocking:
            decisions = decisions.iloc[:0]
        self.pending = decisions.set_index("symbol")[list(core.DECISION_FIELDS)]
        self.pending_stamp, self.pending_model = bar, served.version
        positions = {s: p.direction for s, p in self.trader.positions.items()}
        day_open, day_low = self.trader.loss_limit_inputs(bar + self.step)  # the loss limit's day
        records = signal_records(
            served,
            rows,
            {s: preds[s] for s in ok},
            bars,
            ok,
            position=positions,
            equity=self.trader.equity(),
            day_open_equity=day_open,
            day_low_equity=day_low,
        )
        self.signals = {r["symbol"]: r for r in records}

    def _check_guards(self, bar: pd.Timestamp, now: pd.Timestamp) -> None:
        settings = self.served.settings
        lag = max(0, int((now - (bar + self.step)) / self.step))
        self.metrics.lag.set(lag)
        self.guards.set("stale", lag > STALE_BARS, f"last bar {bar} lags {lag} bars", self.metrics)
        trained = model_trained_at(self.served)
        age = (now - trained) / pd.Timedelta(days=1) if trained is not None else None
        limit = settings.retrain.max_model_age_days
        self.guards.set(
            "expired",
            age is not None and age > limit,
            f"model {self.served.version} is {age:.1f} days old (> {limit})" if age else "",
            self.metrics,
        )
        self.guards.set("degraded", *self._degraded(), self.metrics)
        if self.guards.kill_file.exists():
            self.killed.set()
        if self.killed.is_set():
            self.guards.set("kill", True, "kill switch", self.metrics)

    def _degraded(self) -> tuple[bool, str]:
        from cryptoml_pipeline.monitoring.tracker import ModelPerformanceTracker

        r = self.served.settings.retrain
        try:
            recent, prior = ModelPerformanceTracker(self.engine).accuracy_windows(
                self.served.version, r.recent_window, r.prior_window
            )
        except Exception as exc:
            return False, f"tracker unavailable: {exc}"
        if recent is None or prior is None:
            return False, ""
        bad = recent < (1.0 - r.degradation) * prior
        return bad, f"recent accuracy {recent:.3f} < {1 - r.degradation:.2f} x prior {prior:.3f}"

    def step_bar(self, data: BarData, now: pd.Timestamp) -> None:
        """Process one closed bar (module docstring)."""
        t0 = time.perf_counter()
        bar = data.bar
        self.tail.extend(data.candles, data.funding)
        self._check_guards(bar, now)
        if self.trader.last_bar is None or bar > self.trader.last_bar:
            traded = data.candles[data.candles["symbol"].isin(self.trading)]
            decisions = (
                self.pending
                if self.pending_stamp is not None and self.pending_stamp + self.step == bar
                else EMPTY_DECISIONS
            )
            funding = data.funding[data.funding["symbol"].isin(self.trading)]
            self.trader.process(
                BarInput(
                    bar=bar,
                    candles=traded.set_index("symbol")[list(core.OHLC)],
                    decisions=decisions,
                    funding=funding[["timestamp", "symbol", "funding_rate"]].reset_index(drop=True),
                ),
                model_version=self.pending_model,
                guards=self.guards.state,
            )
            self.metrics.bars.inc()
        self.maybe_swap(bar)
        self._decide(bar)
        self._execute(bar, data.candles)
        self.last_bar, self.clock = bar, now
        self.metrics.equity.set(self.trader.equity())
        self.metrics.exposure.set(self.trader.exposure())
        self.metrics.latency.observe(time.perf_counter() - t0)

    def _execute(self, bar: pd.Timestamp, candles: pd.DataFrame) -> None:
        """``--execute``: bring the exchange to the account's positions after the next open
        (the decisions just made); a reconciliation mismatch stops trading."""
        if self.executor is None or self.halted:
            return
        traded = candles[candles["symbol"].isin(self.trading)]
        closes = dict(zip(traded["symbol"].astype(str), traded["close"].astype(float), strict=True))
        targets = self.trader.next_open_positions(self.pending, closes)
        self.executor.sync(bar, targets)
        if self.executor.halted:
            self.halted = self.executor.halted
            self.stopped.set()

    # --- the loop -------------------------------------------------------------------------------
    def warm_up(self) -> Iterator[BarData]:
        """Load the tail up to the cursor (or the bar before the replay's start) and recompute
        the decisions made there; yields the bars still to process."""
        src = self.source
        assert isinstance(src, ReplaySource)
        cursor = self.trader.last_bar
        first = src.bars[0]
        through = cursor if cursor is not None and cursor >= first else first - self.step
        candles, funding = src.warmup(through)
        self.tail.extend(candles, funding)
        have = candles[candles["timestamp"] == through]
        if len(have) and have["symbol"].nunique() >= len(self.served.universe):
            self._decide(through)
            self.last_bar = through
        self.clock = through + self.step
        todo = [b for b in src.bars if b > through]
        previous = through
        for bar in todo:
            yield src.at(bar, previous)
            previous = bar

    def run(self, *, exit_at_end: bool = False) -> int:
        """The bar loop (replay or live) until the end (replay), ``stop()`` or the kill switch."""
        if self.options.replay is None:
            return self._run_live()
        if self.trader.last_bar is not None:
            say(f"resuming account {self.options.run_name!r} after bar {self.trader.last_bar}")
        for data in self.warm_up():
            if self.stopped.is_set() or self.killed.is_set():
                break
            self.step_bar(data, data.bar + self.step)
            if self.killed.is_set():
                break
            if self.options.bar_delay:
                self.stopped.wait(self.options.bar_delay)
        if self.killed.is_set() or self.guards.kill_file.exists():
            self.kill()
            return 0
        self.finished = True
        say(
            f"replay done: last bar {self.last_bar}, equity {self.trader.equity():.2f}"
            + ("" if exit_at_end else "; serving the API until stopped")
        )
        if not exit_at_end:
            while not self.stopped.is_set() and not self.killed.is_set():
                self.stopped.wait(0.2)
                if self.guards.kill_file.exists():
                    self.killed.set()
            if self.killed.is_set():
                self.kill()
        return 0

    def _run_live(self) -> int:
        """Poll the exchange (ccxt): closed bars through the bar intake (:mod:`.bar_intake`),
        orders with ``--execute``; until stopped, killed or halted by a reconciliation mismatch
        (exit 3)."""
        feed = self.source
        assert isinstance(feed, ExchangeFeed)
        poll = self.options.poll_seconds or self.served.settings.paper.poll_seconds
        if self.executor is not None:
            self.executor.start()
            if self.executor.halted:
                self.halted = self.executor.halted
                return 3
        now = self.now()
        cursor = self.trader.last_bar
        through = cursor if cursor is not None else now.floor(self.step) - self.step
        if cursor is not None:
            say(f"resuming account {self.options.run_name!r} after bar {cursor}")
        candles = self._fetch_candles(feed, through - self.tail.span, through)
        self._poll_spot(feed, through - self.tail.span, now)
        candles = self._with_spot(candles)
        funding = feed.funding(through - self.tail.span - self.tail.funding_span)
        funding = funding[funding["timestamp"] < through + self.step]
        self.tail.extend(candles, funding)
        at = candles[candles["timestamp"] == through]
        self.intake.start_after(through, at)
        if at["symbol"].nunique() >= len(self.served.universe):
            self._decide(through)
            self.last_bar = through
            self._execute(through, at)
        previous = through
        while not self.stopped.is_set() and not self.killed.is_set():
            try:
                now = self.now()
                polled = self._fetch_candles(feed, self.intake.cursor + self.step, now)
                self._poll_spot(feed, self.intake.cursor + self.step, now)
                funding = feed.funding(previous + self.step)
            except Exception as exc:  # retries exhausted: the next poll tries again
                say(f"exchange unavailable: {type(exc).__name__}: {str(exc)[:160]}")
                self.stopped.wait(poll)
                continue
            for item in self.intake.offer(polled, now):
                if item.candles is None:  # missing at its deadline: skipped
                    continue
                bar = item.bar
                f = funding[
                    (funding["timestamp"] >= previous + self.step)
                    & (funding["timestamp"] < bar + self.step)
                ]
                bar_candles = self._with_spot(item.candles)
                self.step_bar(BarData(bar, bar_candles, f.reset_index(drop=True)), now)
                previous = bar
                if self.halted or self.killed.is_set() or self.guards.kill_file.exists():
                    break
            if self.guards.kill_file.exists():
                self.killed.set()
            if self.halted:
                return 3
            self.stopped.wait(poll)
        if self.killed.is_set():
            self.kill()
        return 3 if self.halted else 0

    def _poll_spot(self, feed: ExchangeFeed, since: pd.Timestamp, now: pd.Timestamp) -> None:
        """When the served model reads the basis: the traded symbols' spot bars closed at
        ``now`` (a forming spot bar is never taken), polled from ``since`` and kept for the
        tail's span."""
        if not needs_spot(self.served):
            return
        spot = feed.spot_closes(self.trading, since)
        spot = spot[spot["timestamp"] + self.step <= now]
        cache = pd.concat([self.spot_cache, spot], ignore_index=True)
        cache = cache.drop_duplicates(["timestamp", "symbol"], keep="last")
        edge = now - self.tail.span - 2 * self.step
        self.spot_cache = cache[cache["timestamp"] >= edge].reset_index(drop=True)

    def _with_spot(self, candles: pd.DataFrame) -> pd.DataFrame:
        """``candles`` with the traded rows' spot closes (``spot_close``) from the polled spot
        bars when the model reads the basis; a spot bar the exchange has not served when its
        perpetual bar is processed leaves that bar's basis NaN (never filled)."""
        if not needs_spot(self.served):
            return candles
        return with_spot_close(candles, self.spot_cache)

    def _fetch_candles(
        self, feed: ExchangeFeed, since: pd.Timestamp, until: pd.Timestamp
    ) -> pd.DataFrame:
        """Every member's candles from ``since`` to ``until`` (pages of 1000 bars)."""
        frames, start = [], since
        while True:
            page = feed.candles(start)
            frames.append(page)
            if page.empty or len(page) < 1000 * len(feed.members) * 0.5:
                break
            last = page["timestamp"].max()
            if last >= until:
                break
            start = last + self.step
        out = pd.concat(frames, ignore_index=True)
        return out[out["timestamp"] <= until].drop_duplicates(["timestamp", "symbol"])

    def stop(self) -> None:
        self.stopped.set()

    def request_kill(self) -> None:
        self.killed.set()

    def kill(self) -> None:
        """Flatten and stop: the open positions exit at the last close by the backtest's own
        end-of-data rule (reason ``end``), committed in one transaction; the account is marked
        killed (a restart with its run name is refused)."""
        self.guards.set("kill", True, "kill switch", self.metrics)
        trader = self.trader
        flattened = 0
        if trader.window and not trader.flat:
            from cryptoml_pipeline.live.paper import _frames

            candles, funding, decisions = _frames(trader.window)
            out = core.close_out(candles, funding, decisions, options=trader._options())
            fills = core.trade_fills(out.trades, trader._options()["costs"], open_after=None)
            ends = fills[fills["reason"] == "end"]
            at = trader.last_bar.to_pydatetime()
            now = datetime.now(UTC)
            with self.engine.begin() as conn:
                for k, o in enumerate(ends.itertuples(index=False)):
                    record_fill(
                        conn,
                        trader.run,
                        o,
                        client_order_id=f"{trader.run}:{o.symbol}:{trader.last_bar.isoformat()}"
                        f":kill{k}:end",
                        reason="end",
                        at=at,
                        now=now,
                    )
                conn.execute(paper_positions.delete().where(paper_positions.c.run == trader.run))
                conn.execute(
                    paper_runs.update()
                    .where(paper_runs.c.name == trader.run)
                    .values(cash=float(out.equity.iloc[-1]))
                )
                self._mark_killed(conn)
            flattened = len(ends)
            trader.last_equity = float(out.equity.iloc[-1])
        else:
            with self.engine.begin() as conn:
                self._mark_killed(conn)
        if self.executor is not None and not self.halted and trader.last_bar is not None:
            self.executor.sync(trader.last_bar, {}, leg="k")  # reduce-only exits of everything
        say(
            f"killed: {flattened} position(s) flattened at the close of {trader.last_bar}; "
            f"equity {trader.equity():.2f}; stopped"
        )
        self.stopped.set()

    def _mark_killed(self, conn: sa.Connection) -> None:
        config = account_config(self.engine, self.options.run_name) or {}
        config = dict(config) | {
            "killed_at": None if self.trader.last_bar is None else self.trader.last_bar.isoformat()
        }
        conn.execute(
            paper_accounts.update()
            .where(paper_accounts.c.run == self.options.run_name)
            .values(config=config)
        )

    # --- API views ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        last = self.trader.last_bar
        lag = None
        if last is not None:
            now = (
                self.clock
                if self.options.replay is not None and self.clock is not None
                else pd.Timestamp.now(tz="UTC")
            )
            lag = max(0, int((now - (last + self.step)) / self.step))
        state = run_state(self.engine, self.options.run_name) or {}
        return {
            "status": "killed"
            if self.killed.is_set()
            else ("halted" if self.halted else ("warming_up" if not self.signals else "ok")),
            "mode": "replay" if self.options.replay is not None else "live",
            "run_name": self.options.run_name,
            "last_bar": None if last is None else last.isoformat(),
            "lag_bars": lag,
            "model_version": self.served.version,
            "model_deployed": self.served.deployed,
            "symbols": list(self.trading),
            "equity": self.trader.equity(),
            "open_positions": len(self.trader.positions),
            "cash": state.get("cash"),
            "replay_finished": self.finished,
            "guards": self.guards.as_dict(),
            "bar_events": dict(self.intake.counts),
            "execution": None
            if self.executor is None
            else {
                "orders": dict(self.executor.counts),
                "book": self.executor.book,
                "halted": self.halted,
            },
        }

    def signal(self, symbol: str | None) -> Any:
        if symbol is None:
            return [self.signals[s] for s in self.trading if s in self.signals]
        return self.signals.get(symbol)


def parse_utc(value: str, what: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except ValueError as exc:
        raise InputError(f"{what} {value!r} is not a date/time") from exc
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def check_traded_data(store: ParquetStore, served: ServedModel, symbols: Sequence[str]) -> None:
    for symbol in symbols:
        if store.funding_coverage(perpetual_symbol(symbol)) is None:
            raise InputError(f"no funding of {perpetual_symbol(symbol)} in {store.root}")


__all__ = ["LiveOptions", "LiveService", "MarketTail", "Metrics", "parse_utc"]
