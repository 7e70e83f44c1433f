"""Bar-by-bar backtest of a decisions frame on USDT-M perpetuals: the simulated market's rules.

Instrument and book
    USDT-M perpetual futures, long and short, ONE shared equity (cash) across all symbols. Gross
    notional is capped at ``max_leverage * equity`` at entry. Cross-margin liquidation: after the
    intrabar exits of a bar, if equity marked at every open position's WORST price of the bar
    (low for longs, high for shorts) is <= ``risk.maintenance_margin * gross notional`` there,
    every position is closed at that worst price (taker fee + slippage, reason ``liquidation``).

Timing (see :mod:`cryptoml_pipeline.timing`)
    A decision row stamped ``t`` (candle open time) is known at ``t + one bar`` and FILLS AT THE
    OPEN OF BAR ``t + one bar``, never on the bar whose close produced it. A decision whose next
    bar does not exist for its symbol (end of data, gap) is dropped.

Events inside one bar ``i`` (grid time ``T``), in this order
    1. Funding settled at the instant ``T`` (when ``T`` is a settlement time) on the positions
       carried INTO the bar (opened before ``T``).
    2. At the open: stops gapped through by the open exit at the open (reason ``stop``); positions
       at the end of their hold period are reviewed (below); then flat symbols enter on an active
       decision, in alphabetical symbol order (sizing sees the equity marked at this open, after
       the exits, with the latest known price of every symbol).
    3. Funding of settlements strictly INSIDE the bar (only for bars longer than, or not dividing,
       the funding interval, e.g. 1d): charged on the positions open after step 2, priced at the
       bar's open (an approximation: the ordering against an intrabar stop is unknown).
    4. Intrabar stops: ``low <= stop`` (long) / ``high >= stop`` (short) fill at the stop price
       (at the open if the open is already beyond it). Checked on every bar from the entry bar on.
       Take-profit (``risk.take_profit_atr_multiple``, off by default): ``high >= tp`` (long) /
       ``low <= tp`` (short) fills at the tp price, a resting limit order (maker fee, no
       slippage). A bar that touches both the stop and the take-profit counts the STOP.
       Then the liquidation check (above).
    5. At the close: a symbol's last bar closes its open position at the close (reason ``end``);
       equity is marked to market (cash + unrealised P&L at each symbol's latest close).

Entry (symbol flat, decision active)
    Active decision: ``|signal| >= 1`` and ``confidence >= risk.confidence_threshold`` and
    ``confidence > 0`` (finite) and, where the decision carries a finite ``expected_return``
    and ``risk.edge_cost_multiple`` is set, ``expected_return * direction >= edge_cost_multiple
    * 2 * (entry fee rate + slippage)`` (no trade when the expected move is below the round-trip
    cost). Risk = spec MLPositionSizer
    ``equity * base_risk * |signal|/2 * confidence * min(1, volatility_reference / volatility)``
    (annualised volatility) capped at ``max_risk_per_trade * equity``; stop distance =
    ``atr_stop_multiple * atr_pct`` of the decision row; notional = risk / stop distance; then
    risk and notional are scaled down together so that open risk <= ``portfolio_heat * equity``
    and gross notional <= ``max_leverage * equity``. Skipped on NaN input, a stop distance outside
    (0, 1), or a notional that scales to <= 1e-6 of equity. Open risk = sum of the open
    positions' risk at entry; gross notional = sum of quantity * latest price.
    The stop sits at ``entry_fill * (1 -/+ stop_distance)`` and never moves.

Guards at the point of execution (``risk.daily_loss_limit``, ``risk.max_notional_per_symbol``,
``risk.max_notional_total``; None = off, the default: results are then bit for bit those without
them). They are part of the entry step above, so the backtest, the paper trader (which runs this
simulator) and the live decision (:func:`cryptoml_pipeline.live.decision.decide`, the same sizer)
apply the same rules. A replay (:mod:`.replay`) repeats given fills and applies none.
    Notional caps, fractions of the equity the entry is sized on: the scaling factor above is
    also capped so that the entry's notional <= ``max_notional_per_symbol * equity`` (entries are
    made on flat symbols only, so this is the symbol's notional) and the gross notional after
    the entry <= ``max_notional_total * equity``; risk scales with it; an entry scaled to <= 1e-6
    of equity is skipped. Fixed-quantity runs (oracles, benchmarks) take no sizing limits.
    Daily loss limit, a fraction: a UTC day (of the bars' open times) starts with the equity
    marked at the close of the last bar before it (the initial equity on a run's first day).
    Once the equity marked at a bar's close is <= ``(1 - daily_loss_limit) * that start``
    (or the day started with equity <= 0), the limit trips: no new entry from the next bar's
    open to the end of the day, the fixed-quantity mode included. Nothing is flattened: open
    positions keep their stops, take-profits, liquidation and hold reviews (a review may hold a
    position on; a flip exits but does not enter the other side). The next day starts afresh.
    Counted in ``BacktestResult.guard_counts``: days the limit tripped, bars that opened with it
    tripped, entry decisions it refused (active decisions on flat symbols with a bar), and the
    entries each notional cap scaled down or skipped (counted to the cap whose factor is the
    smallest, strictly below heat's, leverage's and, for the total cap, the per-symbol cap's).
    A run that starts inside a day (the paper
    trader's window after a flat close) is given the day's state (``loss_limit_start``,
    :func:`loss_limit_day` from the earlier marks) and continues it.

Holding
    The hold period ends at the open of the symbol's bar ``entry_bar + min_hold_bars``. There the
    decision filling at that open (the row just before) is read: same direction with
    ``confidence >= hold threshold`` (``risk.hold_confidence_threshold``, default the entry
    threshold; lower = hysteresis) -> hold ``min_hold_bars`` more bars (no fill, no fee, size
    and stop unchanged); active and opposite -> exit (reason ``flip``) and enter the other
    side at the same open if it passes the entry rules; otherwise exit (reason
    ``time``). Signals between those reviews are ignored while in a position.
    Positions still open on a symbol's last bar exit at its close (reason ``end``).

Costs (always on)
    Every market fill pays ``costs.taker_fee * quantity * fill_price`` and slippage against the
    trader (buy at ``raw * (1 + slip)``, sell at ``raw * (1 - slip)``), stops included. ``slip`` =
    ``costs.slippage_bps / 1e4`` (the half-spread estimate) plus, when a ``SlippageConfig`` is
    given, ``volatility_coefficient * sigma_bar`` where ``sigma_bar`` is the per-bar volatility
    of the symbol's latest decision at or before the fill (known then; 0 before the first).
    ``costs.order_type = "maker"``: entries and planned exits are limit orders at the bar's open,
    filled at the open with ``costs.maker_fee`` and no slippage only if the bar trades through
    the price (a buy needs ``low < open``, a sell ``high > open``); an unfilled entry is skipped,
    an unfilled exit falls back to a taker fill at the open. Stops are always taker.
    Funding: at every settlement the symbol's funding rows hold (its own interval, 8h or 4h or
    other, however it changes: :func:`market_grid.funding_schedule`; ``funding_interval_hours``
    is only the interval assumed where a symbol's data holds fewer than two settlements).
    A position held at settlement ``s`` pays ``quantity * open_price_of_the_bar_at_s * rate``
    if long and receives it if short. "Held at s" = opened BEFORE ``s`` and not closed before
    ``s``: a position filled at the open of bar ``s`` pays nothing for ``s``; a position exited
    at the open of bar ``s`` (planned exit, flip, gapped stop) pays for ``s``. An open fill is
    the first trade at or after ``s``, which is how the exchange counts it. A held position
    meeting a MISSING settlement (a gap in the symbol's funding rows longer than both
    neighbouring intervals, or past either end of its rows) raises :class:`MissingFundingError`
    naming the symbol and the expected timestamp.

Outputs
    Equity is indexed by the union of all symbols' bar timestamps (mark at each bar's close).
    Trade ``pnl`` is net of fees and funding; ``entry_time``/``exit_time`` are the open times of
    the bars in which the fills happened (``exit_reason``: stop/time/flip/end/take_profit/
    liquidation). ``gross_pnl`` is the price P&L after slippage, before fees and funding.
    ``exposure`` = gross notional / equity at each bar close (an addition to the contract).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError, MissingFundingError
from cryptoml_pipeline.execution import kernel as K
from cryptoml_pipeline.execution.book import TRADE_COLUMNS, Ledger
from cryptoml_pipeline.execution.decisions import bars_per_year, ns_index
from cryptoml_pipeline.execution.market_grid import (
    FundingSchedule,
    MarketGrid,
    align_decisions,
    funding_schedule,
    grid_and_rows,
)
from cryptoml_pipeline.settings import CostConfig, RiskConfig, SlippageConfig

logger = logging.getLogger(__name__)

EXIT_REASONS = K.EXIT_REASONS  # names of the kernel's exit reason codes


@dataclass(frozen=True)
class Fills:
    """The round trips of a kernel run as a replay repeats them, one entry per trade.

    Bars are grid indices (of the grid the run was made on); ``entry_raw``/``exit_raw`` are the
    prices before slippage (the entry is always at its bar's open); ``phase`` is where in its
    bar the exit happened (``kernel.AT_OPEN``/``INTRABAR``/``AT_CLOSE``); ``entry_equity`` is
    the equity the entry was sized on (marked at that open).
    """

    symbol: np.ndarray  # int, index into grid.symbols
    direction: np.ndarray  # int, +1 long / -1 short
    entry_bar: np.ndarray  # int
    exit_bar: np.ndarray  # int
    phase: np.ndarray  # int
    quantity: np.ndarray  # base units
    entry_raw: np.ndarray
    exit_raw: np.ndarray
    entry_equity: np.ndarray
    exit_reason: np.ndarray  # int codes into EXIT_REASONS

    def __len__(self) -> int:
        return len(self.symbol)


def fills_from_records(records: np.ndarray) -> Fills:
    """Kernel trade records -> :class:`Fills` (in entry order: by entry bar, then symbol). Where
    the records are in that order already, the float fields are views of ``records``."""
    rec = records.T
    sym, entry_bar = rec[K.T_SYM].astype(np.int64), rec[K.T_ENTRY_BAR].astype(np.int64)
    # one entry per (bar, symbol): a unique key; records of one symbol are already in order
    key = entry_bar * (int(sym.max()) + 1 if len(sym) else 1) + sym
    order = None if bool(np.all(key[1:] > key[:-1])) else np.argsort(key, kind="stable")

    def field(c: int, dtype: type = np.float64) -> np.ndarray:
        return (rec[c] if order is None else rec[c][order]).astype(dtype, copy=False)

    return Fills(
        symbol=sym if order is None else sym[order],
        direction=field(K.T_DIR, np.int64),
        entry_bar=entry_bar if order is None else entry_bar[order],
        exit_bar=field(K.T_EXIT_BAR, np.int64),
        phase=field(K.T_PHASE, np.int64),
        quantity=field(K.T_QTY),
        entry_raw=field(K.T_ENTRY_RAW),
        exit_raw=field(K.T_EXIT_RAW),
        entry_equity=field(K.T_ENTRY_EQUITY),
        exit_reason=field(K.T_REASON, np.int64),
    )


def slippage_of_records(records: np.ndarray) -> float:
    """Slippage paid (currency, >= 0): sum of quantity * |fill price - raw price| per fill."""
    rec = records.T
    d, q = rec[K.T_DIR], rec[K.T_QTY]
    entry = d * q * (rec[K.T_ENTRY_PRICE] - rec[K.T_ENTRY_RAW])
    exit_ = d * q * (rec[K.T_EXIT_RAW] - rec[K.T_EXIT_PRICE])
    return float(np.sum(entry) + np.sum(exit_))


@dataclass
class BacktestResult:
    equity: pd.Series  # indexed by bar timestamp, mark-to-market at bar close
    trades: pd.DataFrame  # one row per round trip, columns book.TRADE_COLUMNS (+ gross_pnl)
    fees_paid: float  # currency
    funding_paid: float  # currency, net (negative = received)
    initial_equity: float
    exposure: pd.Series | None = None  # gross notional / equity at each bar close
    traded_notional: float | None = None  # sum of |fill notional| of every fill (currency)
    bars_in_market: int | None = None  # bars closed with at least one open position
    fills: Fills | None = None  # the round trips as a replay repeats them (kernel runs only)
    slippage_paid: float | None = None  # currency, >= 0 (kernel runs only)
    # what the guards did (simulations only; keys GUARD_COUNTS, all 0 with the guards off)
    guard_counts: dict[str, int] | None = None


# BacktestResult.guard_counts: the kernel's account slot of each count (see the module docstring)
GUARD_COUNTS: dict[str, int] = {
    "daily_loss_limit_days": K.A_LOSS_DAYS,  # UTC days on which the loss limit tripped
    "daily_loss_limit_bars": K.A_LOSS_BARS,  # bars that opened with entries blocked
    "daily_loss_limit_entries": K.A_LOSS_ENTRIES,  # entry decisions refused
    "max_notional_per_symbol_entries": K.A_SYM_CAPPED,  # entries the cap scaled down / skipped
    "max_notional_total_entries": K.A_TOTAL_CAPPED,  # entries the cap scaled down / skipped
}


@dataclass(frozen=True)
class LossLimitDay:
    """The daily loss limit's state at the close of a bar (:func:`loss_limit_day`): that bar's
    UTC day, the equity the day started with, whether the limit has tripped in it. Given to
    :func:`simulate`, a run that starts later in the same day (a paper trader's window after a
    flat close) carries on the day as a run from the account's first bar would."""

    day: pd.Timestamp  # UTC midnight
    start_equity: float
    tripped: bool


def loss_limit_day(
    equity: pd.Series, initial_equity: float, limit: float, bar: pd.Timestamp
) -> LossLimitDay:
    """:class:`LossLimitDay` at the close of ``bar`` from a run's marks (``equity``, by bar open
    time): the day started with the mark at the last close before it (``initial_equity`` where
    the run has none); tripped where a close of the day up to ``bar`` hit the limit."""
    ts = pd.DatetimeIndex(equity.index).tz_convert("UTC")
    bar = pd.Timestamp(bar).tz_convert("UTC")
    day = bar.floor("D")
    marks = equity.to_numpy(np.float64)
    before = marks[ts < day]
    start = float(before[-1]) if len(before) else float(initial_equity)
    today = marks[(ts >= day) & (ts <= bar)]
    tripped = bool(start <= 0.0 or np.any(today <= (1.0 - limit) * start))
    return LossLimitDay(day=day, start_equity=start, tripped=tripped)


def settlements_by_bar(
    schedule: FundingSchedule, n_bars: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Per grid bar: indices of settlements at its open instant, and strictly inside it."""
    at_open: list[list[int]] = [[] for _ in range(n_bars)]
    inside: list[list[int]] = [[] for _ in range(n_bars)]
    for k, (i, exact) in enumerate(
        zip(schedule.bar_index.tolist(), schedule.at_open.tolist(), strict=True)
    ):
        (at_open if exact else inside)[i].append(k)
    return at_open, inside


def make_result(
    book: Ledger, grid: MarketGrid, equity: np.ndarray, exposure: np.ndarray
) -> BacktestResult:
    index = pd.DatetimeIndex(grid.timestamps, name="timestamp")
    trades = book.trades_frame()
    return BacktestResult(
        equity=pd.Series(equity, index=index, name="equity"),
        trades=trades,
        fees_paid=book.fees_paid,
        funding_paid=book.funding_paid,
        initial_equity=book.initial_equity,
        exposure=pd.Series(exposure, index=index, name="exposure"),
        traded_notional=float(
            (trades["quantity"] * (trades["entry_price"] + trades["exit_price"])).sum()
        ),
    )


def settlements(schedule: FundingSchedule) -> tuple[np.ndarray, int, np.ndarray, pd.Index]:
    """The settlements as the kernel loops take them: the bar of each (those at a bar's open
    instant first, then those inside a bar, each part sorted by bar), how many are at an open,
    their rates [n_settlements, n_symbols] and their times (for error messages)."""
    order = np.argsort(schedule.bar_index, kind="stable")
    at_open = schedule.at_open[order]
    rows = order[np.concatenate([np.flatnonzero(at_open), np.flatnonzero(~at_open)])]
    rates = np.ascontiguousarray(schedule.rates.T[rows])
    bars = schedule.bar_index[rows].astype(np.int64)
    # the times in that order (usually theirs already: not taken again)
    in_order = bool(np.all(rows[1:] > rows[:-1]))  # rows is a permutation: then the identity
    times = schedule.times if in_order else schedule.times[rows]
    return bars, int(np.count_nonzero(at_open)), rates, times


def slippage_matrix(
    aligned: dict[str, np.ndarray],
    grid: MarketGrid,
    costs: CostConfig,
    slippage: SlippageConfig | None,
    timeframe: str,
) -> np.ndarray:
    """Per-fill slippage fraction ``[n_symbols, n_bars]``: half-spread + vol term (see module);
    ``[n_symbols, 1]`` without a volatility term (the same for every bar: see ``kernel.cell``)."""
    half_spread = float(costs.slippage_bps) / 10_000.0
    if slippage is None or slippage.volatility_coefficient == 0:
        return np.full((len(grid.symbols), 1), half_spread)
    per_bar = aligned["volatility"] / np.sqrt(bars_per_year(timeframe))
    # forward fill along bars (forward only: the latest decision at or before the fill)
    idx = np.where(np.isnan(per_bar), 0, np.arange(per_bar.shape[1]))
    np.maximum.accumulate(idx, axis=1, out=idx)
    known = np.take_along_axis(per_bar, idx, axis=1)
    known = np.where(np.isfinite(known), known, 0.0)
    return half_spread + slippage.volatility_coefficient * known


def simulate(
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    decisions: pd.DataFrame,
    *,
    costs: CostConfig,
    risk: RiskConfig,
    min_hold_bars: int,
    timeframe: str,
    funding_interval_hours: int = 8,
    slippage: SlippageConfig | None = None,
    fixed_quantity: float | None = None,
    loss_limit_start: LossLimitDay | None = None,
) -> BacktestResult:
    """Simulate ``decisions`` on ``candles``: fees, slippage, funding, sizing, risk limits.

    ``fixed_quantity`` (base units per entry) replaces the risk sizer; it exists for oracle
    comparisons and benchmarks against libraries that trade fixed sizes.
    ``loss_limit_start``: the daily loss limit's state where the run starts inside a UTC day
    (:class:`LossLimitDay`; it applies where the first bar is in that day).
    """
    if min_hold_bars < 1:
        raise InputError(f"min_hold_bars must be >= 1, got {min_hold_bars}")
    grid, rows = grid_and_rows(candles, timeframe)
    aligned = align_decisions(decisions, grid, rows)  # validates like validate_decisions
    schedule = funding_schedule(grid, funding, interval_hours=funding_interval_hours)
    result = run_aligned(
        grid,
        aligned,
        schedule,
        costs=costs,
        risk=risk,
        min_hold_bars=min_hold_bars,
        slip=slippage_matrix(aligned, grid, costs, slippage, timeframe),
        fixed_quantity=fixed_quantity,
        loss_limit_start=loss_limit_start,
    )
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "simulated %d bars x %d symbols: %d trades, final equity %.2f",
            len(grid.timestamps),
            len(grid.symbols),
            len(result.trades),
            float(result.equity.iloc[-1]),
        )
    return result


def _check_funding(error: np.ndarray, grid: MarketGrid, times: pd.Index, held: str) -> None:
    """Raise :class:`MissingFundingError` where a kernel loop stopped at a settlement without a
    rate (``error`` = code, symbol, settlement)."""
    if error[0] == K.MISSING_FUNDING:
        when = times[int(error[2])]
        raise MissingFundingError(
            f"no funding rate for {grid.symbols[int(error[1])]} at {when.isoformat()} "
            f"while {held} was held"
        )


def kernel_params(
    costs: CostConfig, risk: RiskConfig, min_hold_bars: int, fixed_quantity: float | None
) -> tuple[np.ndarray, np.ndarray]:
    nan = float("nan")
    hold_conf = risk.hold_confidence_threshold
    f = np.zeros(K.N_FLOAT_PARAMS)
    f[K.F_TAKER], f[K.F_MAKER] = costs.taker_fee, costs.maker_fee
    f[K.F_BASE_RISK], f[K.F_MAX_RISK] = risk.base_risk, risk.max_risk_per_trade
    f[K.F_HEAT], f[K.F_VOL_REF] = risk.portfolio_heat, risk.volatility_reference
    f[K.F_ATR_MULT] = risk.atr_stop_multiple
    tp = risk.take_profit_atr_multiple
    f[K.F_TP_MULT] = nan if tp is None else tp
    f[K.F_MAX_LEV], f[K.F_MAINT] = risk.max_leverage, risk.maintenance_margin
    f[K.F_ENTRY_CONF] = risk.confidence_threshold
    f[K.F_HOLD_CONF] = risk.confidence_threshold if hold_conf is None else hold_conf
    edge = risk.edge_cost_multiple
    f[K.F_EDGE_MULT] = nan if edge is None else edge
    f[K.F_FIXED_QTY] = nan if fixed_quantity is None else fixed_quantity
    f[K.F_EQUITY] = costs.initial_equity
    for slot, value in (
        (K.F_LOSS_LIMIT, risk.daily_loss_limit),
        (K.F_MAX_SYM_NOTIONAL, risk.max_notional_per_symbol),
        (K.F_MAX_TOTAL_NOTIONAL, risk.max_notional_total),
    ):
        f[slot] = nan if value is None else value
    i = np.array([min_hold_bars, 1 if costs.order_type == "maker" else 0], dtype=np.int64)
    return i, f


@K._jit
def _nonzero_cells(values):
    """The number of cells of a 2-D array that are not 0 (NaN counts)."""
    n = 0
    for s in range(values.shape[0]):
        for i in range(values.shape[1]):
            n += values[s, i] != 0
    return n


def _count_nonzero(values: np.ndarray) -> int:
    """``np.count_nonzero`` of a 2-D array (NaN counts), in one vectorised pass: NumPy's is
    several times slower on floats."""
    return int(_nonzero_cells(values)) if values.ndim == 2 else int(np.count_nonzero(values))


def run_aligned(
    grid: MarketGrid,
    aligned: dict[str, np.ndarray],
    schedule: FundingSchedule,
    *,
    costs: CostConfig,
    risk: RiskConfig,
    min_hold_bars: int,
    slip: np.ndarray,
    fixed_quantity: float | None = None,
    loss_limit_start: LossLimitDay | None = None,
) -> BacktestResult:
    """Run the kernel on already aligned arrays (the Monte-Carlo controls reuse the grid)."""
    settle_bar, n_open, rates, times = settlements(schedule)
    iparams, fparams = kernel_params(costs, risk, min_hold_bars, fixed_quantity)
    exp_ret = aligned.get("expected_return")
    if exp_ret is None:
        exp_ret = np.full((len(grid.symbols), 1), np.nan)
    max_trades = _count_nonzero(aligned["signal"]) + len(grid.symbols) + 1
    # the UTC day of each bar, for the daily loss limit only
    day = None if risk.daily_loss_limit is None else grid.timestamps.asi8 // K.NS_PER_DAY
    day_state = None
    if loss_limit_start is not None:
        start_day = pd.Timestamp(loss_limit_start.day).tz_convert("UTC").value // K.NS_PER_DAY
        day_state = (
            float(start_day),
            float(loss_limit_start.start_equity),
            bool(loss_limit_start.tripped),
        )
    equity, exposure, trades, n_tr, totals, error = K.run_kernel(
        grid.open,
        grid.high,
        grid.low,
        grid.close,
        grid.has_bar,
        grid.last_bar.astype(np.int64),
        aligned["signal"],
        aligned["confidence"],
        aligned["volatility"],
        aligned["atr_pct"],
        exp_ret,
        np.ascontiguousarray(slip, dtype=np.float64),
        settle_bar,
        n_open,
        rates,
        iparams,
        fparams,
        max_trades,
        day,
        day_state,
    )
    _check_funding(error, grid, times, "a position")
    records = trades[:, :n_tr].T  # [n, N_TRADE_COLS], each field contiguous (no copy)
    index = grid.timestamps.rename("timestamp")  # the grid's times, not copied
    # the kernel's fresh output arrays become the series as they are (no copy)
    return BacktestResult(
        equity=pd.Series(equity, index=index, name="equity", copy=False),
        trades=trades_frame(records, grid),
        fees_paid=float(totals[K.A_FEES]),
        funding_paid=float(totals[K.A_FUNDING]),
        initial_equity=float(costs.initial_equity),
        exposure=pd.Series(exposure, index=index, name="exposure", copy=False),
        traded_notional=float(totals[K.A_NOTIONAL]),
        bars_in_market=int(totals[K.A_IN_MARKET]),
        fills=fills_from_records(records),
        slippage_paid=slippage_of_records(records),
        guard_counts={name: int(totals[slot]) for name, slot in GUARD_COUNTS.items()},
    )


@K._jit
def _gather_strings(codes, lengths, padded):
    """The Arrow ``large_string`` buffers (offsets, bytes) of the strings ``codes`` pick: string
    ``c`` is the first ``lengths[c]`` bytes of ``padded[c]`` (each row copies a whole padded
    row, which the next overwrites: no branch on a string's length). Unsigned indices: no
    negative-index wraparound test per byte."""
    n, width = codes.shape[0], np.uint64(padded.shape[1])
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    total = 0
    for k in range(n):
        total += lengths[codes[k]]
        offsets[k + 1] = total
    out = np.empty(total + padded.shape[1], dtype=np.uint8)
    for k in range(n):
        c, o = np.uint64(codes[k]), np.uint64(offsets[k])
        for j in range(width):
            out[o + j] = padded[c, j]
    return offsets, out[:total]


def _labels(
    names: tuple[str, ...] | list[str], codes: np.ndarray
) -> pd.api.extensions.ExtensionArray:
    """``names[codes]`` as a ``str`` column, taken from the few names (no per-row Python)."""
    dtype = pd.api.types.pandas_dtype(str)
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return pd.array(list(names), dtype=str).take(codes)
    import pyarrow as pa

    encoded = [name.encode() for name in names]
    lengths = np.array([len(b) for b in encoded], dtype=np.int64)
    width = -(-max(1, int(lengths.max(initial=0))) // 8) * 8
    padded = np.zeros((len(encoded), width), dtype=np.uint8)
    for row, b in zip(padded, encoded, strict=True):
        row[: len(b)] = np.frombuffer(b, dtype=np.uint8)
    offsets, data = _gather_strings(np.asarray(codes, dtype=np.int64), lengths, padded)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    column = pa.Array.from_buffers(pa.large_string(), len(codes), buffers)
    return pd.arrays.ArrowStringArray(pa.chunked_array([column]), dtype=dtype)


FLOAT_COLUMNS = (  # the trades frame's float columns: the first record fields, in this order
    "entry_price",
    "exit_price",
    "quantity",
    "notional",
    "risk_amount",
    "pnl",
    "fees",
    "funding",
    "gross_pnl",
)


def trades_frame(records: np.ndarray, grid: MarketGrid) -> pd.DataFrame:
    """Kernel trade records -> the trades frame (``book.TRADE_COLUMNS`` + ``gross_pnl``).

    The float columns are the records' first fields taken as one block, without a copy (the
    frame shares their memory: nothing writes into a trades frame in place); the other columns
    are placed around them: the frame is made from its blocks at once where pandas offers that
    (``pandas.api.internals``), else inserted one by one."""
    rec = records.T  # one field per row
    grid_ns = grid.timestamps.asi8
    direction = rec[K.T_DIR]
    others = {
        "symbol": _labels(grid.symbols, rec[K.T_SYM].astype(np.int64)),
        "side": _labels(["short", "long"], (direction > 0).astype(np.int64)),
        "entry_time": ns_index(grid_ns[rec[K.T_ENTRY_BAR].astype(np.int64)], copy=False),
        "exit_time": ns_index(grid_ns[rec[K.T_EXIT_BAR].astype(np.int64)], copy=False),
        "exit_reason": _labels(EXIT_REASONS, rec[K.T_REASON].astype(np.int64)),
    }
    columns = (*TRADE_COLUMNS, "gross_pnl")
    internals = getattr(pd.api, "internals", None)
    if hasattr(internals, "create_dataframe_from_blocks"):
        position = {name: k for k, name in enumerate(columns)}
        floats = np.array([position[name] for name in FLOAT_COLUMNS], dtype=np.intp)
        blocks = [(rec[: K.T_SYM], floats)] + [
            (getattr(values, "array", values), np.array([position[name]], dtype=np.intp))
            for name, values in others.items()
        ]
        index = pd.RangeIndex(records.shape[0])
        return internals.create_dataframe_from_blocks(blocks, index, pd.Index(list(columns)))
    frame = pd.DataFrame(rec[: K.T_SYM].T, columns=list(FLOAT_COLUMNS), copy=False)
    for k, name in enumerate(columns):
        if name in others:
            frame.insert(k, name, others[name])
    return frame
