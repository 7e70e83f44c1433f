"""The simulator's bar loop as one array kernel, compiled with numba when it is installed.

Plain Python on NumPy arrays otherwise (same code, same results, ~100x slower). The market rules
are documented in :mod:`cryptoml_pipeline.execution.backtest`; this module only executes them.
Every input is a float/int/bool array; symbols are rows, grid bars are columns.

It is also the ONE ledger of the package: the accounting rules (a fill's fee, the cash and P&L of
closing a position, a funding settlement, the mark to market) and the entry rules (the decision's
direction, the hold review, the risk sizer and its notional caps, the daily loss limit) are the
compiled helpers below, which :mod:`~cryptoml_pipeline.execution.replay`,
:mod:`~cryptoml_pipeline.execution.book` and :mod:`cryptoml_pipeline.live.decision` call as they
are. The book of one run is two arrays: the
open positions (``pos``, one column per symbol, rows :data:`P_DIR` ...) and the account
(``acct``: :data:`A_FEES` ... :data:`A_CASH`); closed round trips are trade records (rows
:data:`T_SYM` ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:  # numba is a runtime dependency, but the kernel must also run without it
    from numba import njit as _njit

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    HAVE_NUMBA = False


def _jit(func: Callable[..., Any]) -> Callable[..., Any]:
    if HAVE_NUMBA:
        return _njit(cache=True, nogil=True)(func)
    return func  # pragma: no cover


def _jit_inline(func: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`_jit`, and inlined into the compiled bar loops (numba ``inline="always"``)."""
    if HAVE_NUMBA:
        return _njit(cache=True, nogil=True, inline="always")(func)
    return func  # pragma: no cover


def _jit_loop(func: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`_jit` for a bar loop: compiled without numba's reference counting (``_nrt=False``),
    so it allocates nothing (its Python wrapper passes every array in). The helpers it calls are
    inlined into it, and each would otherwise increment and decrement the count of every array
    it is given, on every bar: several times the cost of the loop itself."""
    if HAVE_NUMBA:
        return _njit(cache=True, nogil=True, _nrt=False)(func)
    return func  # pragma: no cover


# exit reason codes (trade records), named by EXIT_REASONS
STOP, TIME, FLIP, END, TAKE_PROFIT, LIQUIDATION = 0, 1, 2, 3, 4, 5
EXIT_REASONS: tuple[str, ...] = ("stop", "time", "flip", "end", "take_profit", "liquidation")
# integer parameter slots
I_MIN_HOLD, I_MAKER = 0, 1
# float parameter slots
(
    F_TAKER,
    F_MAKER,
    F_BASE_RISK,
    F_MAX_RISK,
    F_HEAT,
    F_VOL_REF,
    F_ATR_MULT,
    F_TP_MULT,
    F_MAX_LEV,
    F_MAINT,
    F_ENTRY_CONF,
    F_HOLD_CONF,
    F_EDGE_MULT,
    F_FIXED_QTY,
    F_EQUITY,
    F_LOSS_LIMIT,
    F_MAX_SYM_NOTIONAL,
    F_MAX_TOTAL_NOTIONAL,
) = range(18)
N_FLOAT_PARAMS = 18
# the guards (NaN = off): the daily loss limit and the notional caps, fractions of equity
# trade record fields; the first nine are the float columns of the trades frame in its order
# (``records[:T_SYM]`` is that frame's float block as it is, see ``backtest.trades_frame``)
(
    T_ENTRY_PRICE,
    T_EXIT_PRICE,
    T_QTY,
    T_NOTIONAL,
    T_RISK,
    T_PNL,
    T_FEES,
    T_FUNDING,
    T_GROSS,
    T_SYM,
    T_DIR,
    T_ENTRY_BAR,
    T_EXIT_BAR,
    T_REASON,
    T_ENTRY_RAW,
    T_EXIT_RAW,
    T_PHASE,
    T_ENTRY_EQUITY,
) = range(18)
N_TRADE_COLS = 18
# open-position rows of ``pos`` (float64 [N_POS_FIELDS, n_symbols]): direction (0 = flat),
# quantity, entry fill, raw entry price, equity the entry was sized on, entry bar, risk amount,
# fees and funding paid so far; the kernel's own orders: the symbol's bar ordinal at which the
# hold period ends, the stop and the take-profit price
(
    P_DIR,
    P_QTY,
    P_ENTRY_PX,
    P_ENTRY_RAW,
    P_ENTRY_EQ,
    P_ENTRY_BAR,
    P_RISK,
    P_FEES,
    P_FUNDING,
    P_PLANNED,
    P_STOP,
    P_TP,
) = range(12)
N_POS_FIELDS = 12
# account slots of ``acct``: the run's totals (fees paid, funding paid, traded notional, bars
# closed with a position), the cash, and the slippage paid (counted by the replay; a simulation
# derives it from its records); then the daily loss limit's state (the current UTC day, NaN
# before the first bar; the equity the day started with: marked at the close before its first
# bar; 1.0 once the limit tripped that day) and the guards' counts: days the loss limit tripped,
# bars whose open it blocked, entry decisions it refused, entries the per-symbol / the total
# notional cap scaled down (or skipped)
A_FEES, A_FUNDING, A_NOTIONAL, A_IN_MARKET, A_CASH, A_SLIPPAGE = range(6)
A_DAY, A_DAY_EQUITY, A_HALTED = 6, 7, 8
A_LOSS_DAYS, A_LOSS_BARS, A_LOSS_ENTRIES, A_SYM_CAPPED, A_TOTAL_CAPPED = range(9, 14)
N_TOTALS, N_ACCT = 4, 14
# which notional cap bound an entry's size (:func:`sized_entry`)
CAP_NONE, CAP_SYMBOL, CAP_TOTAL = 0, 1, 2
# nanoseconds in a UTC day: a bar's day is ``timestamp_ns // NS_PER_DAY``
NS_PER_DAY = 86_400_000_000_000
# exit phase of a fill inside its bar (trade records, replay): at the open, intrabar, at the close
AT_OPEN, INTRABAR, AT_CLOSE = 0, 1, 2
# error codes: a held position met a settlement without a rate; a replayed trade entered on a
# symbol that already holds a position
OK, MISSING_FUNDING, OVERLAP = 0, 1, 2
# an entry whose notional scales below this fraction of equity is skipped ("scales to ~0")
MIN_NOTIONAL_FRACTION = 1e-6


# --- decision rules -------------------------------------------------------------------------


@_jit_inline
def entry_direction(sig, conf, exp_ret, slip, fee, entry_conf, edge_mult):
    """+1/-1 for an active entry decision, 0 otherwise (NaN confidence is inactive)."""
    if sig == 0.0 or not conf >= entry_conf or not conf > 0.0:
        return 0
    direction = 1 if sig > 0.0 else -1
    # cost filter only where both are finite (NaN != NaN)
    finite = edge_mult == edge_mult and exp_ret == exp_ret
    if finite and exp_ret * direction < edge_mult * 2.0 * (fee + slip):
        return 0
    return direction


@_jit_inline
def holds(sig, conf, direction, hold_conf):
    """The review of a held position at the end of its hold period keeps it: the decision has
    the position's direction with ``confidence >= hold_conf`` (and > 0; NaN does not hold)."""
    return sig * direction > 0.0 and conf >= hold_conf and conf > 0.0


@_jit_inline
def risk_amount(equity, sig, conf, vol, base_risk, vol_ref, max_risk):
    """Spec MLPositionSizer, read as the RISK amount of a trade: ``equity * base_risk * |sig|/2 *
    confidence * min(1, vol_ref / vol)`` (a volatility <= 0 gives 1), capped at
    ``equity * max_risk``."""
    vol_mult = 1.0 if vol <= 0.0 else min(1.0, vol_ref / vol)
    amount = equity * base_risk * (abs(sig) / 2.0)
    amount *= max(conf, 0.0) * vol_mult
    return min(amount, equity * max_risk)


@_jit_inline
def sized_entry(equity, sig, conf, vol, stop_dist, open_risk, gross, fparams):
    """``(risk amount, notional, cap)`` of a new entry; ``(0.0, 0.0, cap)`` when it is skipped.

    Risk = :func:`risk_amount`; notional = risk / ``stop_dist`` (a fraction of the entry
    price); both are scaled down together (one factor) so that open risk stays <=
    ``portfolio_heat * equity``, gross notional <= ``max_leverage * equity`` and, where the
    guards are set, the entry's notional <= ``max_notional_per_symbol * equity`` (an entry is
    made on a flat symbol only: its notional is the symbol's) and gross notional <=
    ``max_notional_total * equity`` (``open_risk``/``gross``: what is already open). Skipped on
    NaN volatility or confidence, equity <= 0, a stop distance outside (0, 1), or a notional
    that scales to <= :data:`MIN_NOTIONAL_FRACTION` of equity. ``cap``: :data:`CAP_SYMBOL` /
    :data:`CAP_TOTAL` where that notional cap lowered the factor below every other limit's
    (the later one where both did), else :data:`CAP_NONE`.
    """
    if not (equity > 0.0 and stop_dist > 0.0 and stop_dist < 1.0) or vol != vol or conf != conf:
        return 0.0, 0.0, CAP_NONE
    amount = risk_amount(
        equity, sig, conf, vol, fparams[F_BASE_RISK], fparams[F_VOL_REF], fparams[F_MAX_RISK]
    )
    if not amount > 0.0:
        return 0.0, 0.0, CAP_NONE
    notional = amount / stop_dist
    heat_ok = max(0.0, min(amount, fparams[F_HEAT] * equity - open_risk))
    lev_ok = max(0.0, min(notional, fparams[F_MAX_LEV] * equity - gross))
    scale = min(1.0, heat_ok / amount, lev_ok / notional)
    cap = CAP_NONE
    cap_sym, cap_total = fparams[F_MAX_SYM_NOTIONAL], fparams[F_MAX_TOTAL_NOTIONAL]
    if cap_sym == cap_sym:  # NaN = off
        sym_ok = max(0.0, min(notional, cap_sym * equity))
        if sym_ok / notional < scale:
            scale, cap = sym_ok / notional, CAP_SYMBOL
    if cap_total == cap_total:
        total_ok = max(0.0, min(notional, cap_total * equity - gross))
        if total_ok / notional < scale:
            scale, cap = total_ok / notional, CAP_TOTAL
    if notional * scale <= MIN_NOTIONAL_FRACTION * equity:
        return 0.0, 0.0, cap
    return amount * scale, notional * scale, cap


@_jit_inline
def size_entry(equity, sig, conf, vol, stop_dist, open_risk, gross, fparams):
    """``(risk amount, notional)`` of a new entry; ``(0.0, 0.0)`` when it is skipped: the
    sizer :func:`sized_entry` (every limit, the notional caps included)."""
    amount, notional, _ = sized_entry(equity, sig, conf, vol, stop_dist, open_risk, gross, fparams)
    return amount, notional


@_jit_inline
def loss_limit_hit(day_equity, equity, limit):
    """The daily loss limit trips: ``equity`` (marked at a close) <= ``(1 - limit) *
    day_equity`` (the equity the UTC day started with), or the day began with an equity
    <= 0 (nothing left to lose a fraction of); never where ``limit`` is NaN."""
    return limit == limit and (day_equity <= 0.0 or equity <= (1.0 - limit) * day_equity)


# --- the ledger -----------------------------------------------------------------------------


@_jit_inline
def fill_price(raw, side, slip):
    """Price paid (``side`` +1, a buy: higher) or received (-1, a sell: lower) at ``raw``."""
    return raw * (1.0 + side * slip)


@_jit_inline
def cell(a, s, i):
    """``a[s, i]`` of a per-bar array ``[n_symbols, n_bars]``, or ``a[s, 0]`` of a per-symbol
    constant ``[n_symbols, 1]`` (the slippage without a volatility term, an absent expected
    return: no array of a constant the size of the grid to fill and stream)."""
    return a[s, i] if a.shape[1] > 1 else a[s, 0]


def new_book(n_sym: int, cash: float) -> tuple[np.ndarray, np.ndarray]:
    """A flat book: ``pos`` [N_POS_FIELDS, n_sym] and ``acct`` [N_ACCT] holding ``cash``."""
    pos = np.zeros((N_POS_FIELDS, n_sym))
    pos[P_STOP] = np.nan
    pos[P_TP] = np.nan
    acct = np.zeros(N_ACCT)
    acct[A_CASH] = cash
    acct[A_DAY] = np.nan
    return pos, acct


def new_records(n: int) -> np.ndarray:
    """Room for ``n`` trade records, field by field: ``[N_TRADE_COLS, n]``, record ``k`` is
    column ``k``. The first ``m`` records, ``records[:, :m]``, are each field as one contiguous
    run (what the trades frame is built from, without a copy); a run touches only the memory of
    the records it writes (the room is an upper bound, often ten times the trades)."""
    return np.empty((N_TRADE_COLS, n))


@_jit_inline
def open_position(pos, acct, s, d, q, px, raw, fee_rate, bar, equity, risk):
    """Fill an entry of ``q`` units on symbol ``s`` at ``px`` (``raw`` before slippage): the fee
    ``fee_rate * q * px`` leaves the cash. ``equity``/``risk``: what it was sized on / risks."""
    fee = fee_rate * q * px
    acct[A_CASH] -= fee
    acct[A_FEES] += fee
    acct[A_NOTIONAL] += q * px
    pos[P_DIR, s], pos[P_QTY, s], pos[P_ENTRY_PX, s] = d, q, px
    pos[P_ENTRY_RAW, s], pos[P_ENTRY_EQ, s], pos[P_ENTRY_BAR, s] = raw, equity, bar
    pos[P_RISK, s], pos[P_FEES, s], pos[P_FUNDING, s] = risk, fee, 0.0


@_jit_inline
def close_position(pos, acct, records, row, s, bar, px, raw, fee_rate, reason, phase):
    """Close symbol ``s``'s position at ``px`` (``raw`` before slippage) in ``bar``: the cash
    gets ``direction * qty * (px - entry) - fee``; the round trip is written to ``records[:, row]``
    (its pnl net of all its fees and funding)."""
    d, q, entry = pos[P_DIR, s], pos[P_QTY, s], pos[P_ENTRY_PX, s]
    fee = fee_rate * q * px
    gross = d * q * (px - entry)
    acct[A_CASH] += gross - fee
    acct[A_FEES] += fee
    acct[A_NOTIONAL] += q * px
    fees, funding = pos[P_FEES, s] + fee, pos[P_FUNDING, s]
    r = records
    r[T_SYM, row], r[T_DIR, row], r[T_QTY, row], r[T_RISK, row] = s, d, q, pos[P_RISK, s]
    r[T_ENTRY_BAR, row], r[T_ENTRY_PRICE, row] = pos[P_ENTRY_BAR, s], entry
    r[T_ENTRY_RAW, row], r[T_ENTRY_EQUITY, row] = pos[P_ENTRY_RAW, s], pos[P_ENTRY_EQ, s]
    r[T_EXIT_BAR, row], r[T_EXIT_PRICE, row], r[T_EXIT_RAW, row] = bar, px, raw
    r[T_PHASE, row], r[T_FEES, row], r[T_FUNDING, row] = phase, fees, funding
    r[T_GROSS, row], r[T_PNL, row], r[T_REASON, row] = gross, gross - fees - funding, reason
    r[T_NOTIONAL, row] = q * entry
    pos[P_DIR, s] = 0.0


@_jit_inline
def settle(lo, hi, rates, pos, prices, acct, error):
    """Funding settlements ``lo..hi-1`` (rows of ``rates``) on the open positions: each pays
    ``direction * qty * price * rate`` (a long pays a positive rate, a short receives it).
    False (and ``error`` set: code, symbol, settlement) where a held position has no rate."""
    for k in range(lo, hi):
        for s in range(pos.shape[1]):
            d = pos[P_DIR, s]
            if d != 0.0:
                rate = rates[k, s]
                if rate != rate:
                    error[0], error[1], error[2] = MISSING_FUNDING, s, k
                    return False
                pay = d * pos[P_QTY, s] * prices[s] * rate
                acct[A_CASH] -= pay
                acct[A_FUNDING] += pay
                pos[P_FUNDING, s] += pay
    return True


@_jit_inline
def mark(start, pos, prices):
    """``start`` plus the open positions' unrealised P&L at ``prices``, added in symbol order
    (``start`` = the cash: the equity)."""
    eq = start
    for s in range(pos.shape[1]):
        if pos[P_DIR, s] != 0.0:
            eq += pos[P_DIR, s] * pos[P_QTY, s] * (prices[s] - pos[P_ENTRY_PX, s])
    return eq


@_jit_inline
def gross_notional(pos, prices):
    g = 0.0
    for s in range(pos.shape[1]):
        if pos[P_DIR, s] != 0.0:
            g += pos[P_QTY, s] * prices[s]
    return g


@_jit_inline
def _any_open(pos):
    for s in range(pos.shape[1]):  # noqa: SIM110 - a loop, no generator: compiled without NRT
        if pos[P_DIR, s] != 0.0:
            return True
    return False


@_jit_inline
def open_risk(pos):
    r = 0.0
    for s in range(pos.shape[1]):
        if pos[P_DIR, s] != 0.0:
            r += pos[P_RISK, s]
    return r


# --- the phases of one bar ------------------------------------------------------------------
# The bar loops take their arrays in tuples: ``grid`` = (open, high, low, close, has_bar,
# last_bar), ``dec`` = (signal, confidence, volatility, atr_pct, expected_return, slippage) of
# the decisions filling at each bar (expected_return and slippage may be per-symbol constants
# ``[n_symbols, 1]``, read through :func:`cell`), ``fund`` = (the bar of each settlement, its
# rates): first
# the settlements at a bar's open instant, then those strictly inside a bar (``n_open``: how
# many are at an open), each part sorted by bar; ``book`` = (pos, acct, records, latest prices,
# each symbol's bar count or, in a replay, the trade open on each symbol), ``out`` = (equity,
# exposure, error).


@_jit_inline
def _at_open(i, grid, book):
    """A bar's open: the symbols trading in it count one more bar; their latest price is it."""
    open_, _, _, _, has_bar, _ = grid
    prices, ordinal = book[3], book[4]
    for s in range(prices.shape[0]):
        if has_bar[s, i]:
            ordinal[s] += 1
            prices[s] = open_[s, i]


@_jit_inline
def _settle_bar(i, k, end, fund, book, error):
    """The settlements ``k``, ``k + 1``, ... (< ``end``) falling on bar ``i``; returns the next
    one to come, or -1 (``error`` set) where a held position has no rate."""
    bars, rates = fund
    pos, acct, _, prices, _ = book
    hi = k
    while hi < end and bars[hi] == i:
        hi += 1
    if hi > k and not settle(k, hi, rates, pos, prices, acct, error):
        return -1
    return hi


@_jit_inline
def _exit_fill(raw, d, slip, limit, fparams):
    """Fill price and fee rate of an exit at ``raw`` of a position of direction ``d``: a limit
    order (maker fee, no slippage) or a market order (taker fee, slippage against it)."""
    if limit:
        return raw, fparams[F_MAKER]
    return fill_price(raw, -d, slip), fparams[F_TAKER]


@_jit_inline
def _direction(i, s, dec, iparams, fparams):
    """:func:`entry_direction` of the decision filling at bar ``i`` on symbol ``s``."""
    sig, conf, _, _, exp_ret, slip = dec
    fee = fparams[F_MAKER] if iparams[I_MAKER] != 0 else fparams[F_TAKER]
    return entry_direction(
        sig[s, i],
        conf[s, i],
        cell(exp_ret, s, i),
        cell(slip, s, i),
        fee,
        fparams[F_ENTRY_CONF],
        fparams[F_EDGE_MULT],
    )


@_jit_inline
def _review(i, s, d, grid, dec, book, iparams, fparams):
    """The exit reason of a held position at this open (-1: none): a gapped stop, or at the end
    of its hold period the review (hold on: a new hold period; else flip or time)."""
    open_, sig, conf = grid[0], dec[0], dec[1]
    pos, ordinal = book[0], book[4]
    o = open_[s, i]
    if (d > 0 and o <= pos[P_STOP, s]) or (d < 0 and o >= pos[P_STOP, s]):
        return STOP
    if ordinal[s] < pos[P_PLANNED, s]:
        return -1
    if holds(sig[s, i], conf[s, i], d, fparams[F_HOLD_CONF]):
        pos[P_PLANNED, s] = ordinal[s] + iparams[I_MIN_HOLD]
        return -1
    return FLIP if _direction(i, s, dec, iparams, fparams) == -d else TIME


@_jit_inline
def _exits_at_open(i, grid, dec, book, n_tr, iparams, fparams):
    """Step 2, exits: gapped stops, then the hold reviews. Returns the record count."""
    open_, high, low, _, has_bar, _ = grid
    pos, acct, records, _, _ = book
    slip = dec[5]
    for s in range(pos.shape[1]):
        d = pos[P_DIR, s]
        if d == 0.0 or not has_bar[s, i]:
            continue
        reason = _review(i, s, d, grid, dec, book, iparams, fparams)
        if reason < 0:
            continue
        o = open_[s, i]
        # a maker exit fills at the open only if the bar trades through it
        through = (d > 0 and high[s, i] > o) or (d < 0 and low[s, i] < o)
        limit = iparams[I_MAKER] != 0 and reason != STOP and through
        px, fee_rate = _exit_fill(o, d, cell(slip, s, i), limit, fparams)
        close_position(pos, acct, records, n_tr, s, i, px, o, fee_rate, reason, AT_OPEN)
        n_tr += 1
    return n_tr


@_jit_inline
def _entry_size(i, s, px, eq_now, risk_now, gross_now, dec, fparams):
    """``(taken, quantity, risk amount, stop distance, cap)`` of an entry filling at ``px``
    (``cap``: :func:`sized_entry`'s). Fixed-quantity mode (``F_FIXED_QTY`` set: oracles,
    benchmarks) takes no sizing limits (heat, leverage, notional caps)."""
    sig, conf, vol, atr, _, _ = dec
    stop_dist = fparams[F_ATR_MULT] * atr[s, i]
    fixed_qty = fparams[F_FIXED_QTY]
    if fixed_qty == fixed_qty:
        amount = fixed_qty * px * stop_dist if stop_dist == stop_dist else 0.0
        if not (stop_dist > 0.0 and stop_dist < 1.0):
            stop_dist = np.nan
        return True, fixed_qty, amount, stop_dist, CAP_NONE
    amount, notional, cap = sized_entry(
        eq_now, sig[s, i], conf[s, i], vol[s, i], stop_dist, risk_now, gross_now, fparams
    )
    return notional != 0.0, notional / px, amount, stop_dist, cap


@_jit_inline
def _refuse_entries(i, grid, dec, book, iparams, fparams):
    """The entries of a bar opening with the daily loss limit tripped: none; each active
    decision on a flat symbol is counted as refused."""
    has_bar = grid[4]
    pos, acct = book[0], book[1]
    for s in range(pos.shape[1]):
        if has_bar[s, i] and pos[P_DIR, s] == 0.0 and _direction(i, s, dec, iparams, fparams):
            acct[A_LOSS_ENTRIES] += 1.0


@_jit_inline
def _entries(i, grid, dec, book, iparams, fparams):
    """Step 2, entries: flat symbols with an active decision, in symbol order, sized on the
    equity marked at this open (after its exits) and on the risk and notional open by then
    (:func:`_refuse_entries` instead while the daily loss limit has tripped today)."""
    open_, high, low, _, has_bar, _ = grid
    atr, slip = dec[3], dec[5]
    pos, acct, _, prices, ordinal = book
    maker = iparams[I_MAKER] != 0
    entry_fee = fparams[F_MAKER] if maker else fparams[F_TAKER]
    tp_mult = fparams[F_TP_MULT]
    sized = False
    eq_now = risk_now = gross_now = 0.0
    # the caps' counts, kept in registers: a store to ``acct`` inside the loop costs every bar
    n_sym_cap = n_total_cap = 0
    for s in range(pos.shape[1]):
        if not has_bar[s, i] or pos[P_DIR, s] != 0.0:
            continue
        d = _direction(i, s, dec, iparams, fparams)
        if d == 0:
            continue
        if not sized:  # what every entry of this open is sized on, before the first one
            eq_now = mark(acct[A_CASH], pos, prices)
            risk_now = open_risk(pos)
            gross_now = gross_notional(pos, prices)
            sized = True
        o = open_[s, i]
        if maker:
            # a buy limit at the open fills only if the bar trades below it (sell: above)
            if (d > 0 and not low[s, i] < o) or (d < 0 and not high[s, i] > o):
                continue
            px = o
        else:
            px = fill_price(o, d, cell(slip, s, i))
        taken, q, amount, stop_dist, cap = _entry_size(
            i, s, px, eq_now, risk_now, gross_now, dec, fparams
        )
        n_sym_cap += cap == CAP_SYMBOL
        n_total_cap += cap == CAP_TOTAL
        if not taken:
            continue
        open_position(pos, acct, s, d, q, px, o, entry_fee, i, eq_now, amount)
        pos[P_PLANNED, s] = ordinal[s] + iparams[I_MIN_HOLD]
        pos[P_STOP, s] = fill_price(px, -d, stop_dist)
        pos[P_TP, s] = px * (1.0 + d * tp_mult * atr[s, i]) if tp_mult == tp_mult else np.nan
        risk_now += amount
        gross_now += q * px
    if n_sym_cap + n_total_cap > 0:
        acct[A_SYM_CAPPED] += n_sym_cap
        acct[A_TOTAL_CAPPED] += n_total_cap


@_jit_inline
def _exits_intrabar(i, grid, dec, book, n_tr, fparams):
    """Step 4: intrabar stops (at the stop, or at the open when the open is beyond it) and
    take-profits (a resting limit: maker fee, no slippage); a bar touching both counts the stop."""
    open_, high, low, _, has_bar, _ = grid
    pos, acct, records, _, _ = book
    slip = dec[5]
    for s in range(pos.shape[1]):
        d = pos[P_DIR, s]
        if not has_bar[s, i] or d == 0.0:
            continue
        o, stop, tp = open_[s, i], pos[P_STOP, s], pos[P_TP, s]
        if d > 0 and low[s, i] <= stop:
            reason, raw = STOP, min(o, stop)
        elif d < 0 and high[s, i] >= stop:
            reason, raw = STOP, max(o, stop)
        elif (d > 0 and high[s, i] >= tp) or (d < 0 and low[s, i] <= tp):
            reason, raw = TAKE_PROFIT, tp
        else:
            continue
        px, fee_rate = _exit_fill(raw, d, cell(slip, s, i), reason == TAKE_PROFIT, fparams)
        close_position(pos, acct, records, n_tr, s, i, px, raw, fee_rate, reason, INTRABAR)
        n_tr += 1
    return n_tr


@_jit_inline
def _worst_price(i, s, d, grid, prices):
    """The bar's worst price for a position of direction ``d`` (its latest price without a bar)."""
    _, high, low, _, has_bar, _ = grid
    if not has_bar[s, i]:
        return prices[s]
    return low[s, i] if d > 0 else high[s, i]


@_jit_inline
def _liquidate(i, grid, dec, book, n_tr, fparams):
    """Step 4, then: cross-margin liquidation when the equity at every position's worst price
    of the bar is <= maintenance margin x gross notional there; all close at that price."""
    pos, acct, records, prices, _ = book
    maint = fparams[F_MAINT]
    if not maint > 0.0:
        return n_tr
    worst_eq = acct[A_CASH]
    worst_gross = 0.0
    any_open = False
    for s in range(pos.shape[1]):
        d = pos[P_DIR, s]
        if d != 0.0:
            any_open = True
            w = _worst_price(i, s, d, grid, prices)
            worst_eq += d * pos[P_QTY, s] * (w - pos[P_ENTRY_PX, s])
            worst_gross += pos[P_QTY, s] * w
    if not (any_open and worst_eq <= maint * worst_gross):
        return n_tr
    for s in range(pos.shape[1]):
        d = pos[P_DIR, s]
        if d != 0.0:
            w = _worst_price(i, s, d, grid, prices)
            px = fill_price(w, -d, cell(dec[5], s, i))
            close_position(
                pos, acct, records, n_tr, s, i, px, w, fparams[F_TAKER], LIQUIDATION, INTRABAR
            )
            n_tr += 1
    return n_tr


@_jit_inline
def _at_close(i, grid, dec, book, n_tr, fparams):
    """Step 5: a symbol's last bar closes its position at the close (reason end), then the
    latest prices are the closes. Returns the record count."""
    _, _, _, close, has_bar, last_bar = grid
    pos, acct, records, prices, _ = book
    slip = dec[5]
    for s in range(pos.shape[1]):
        if not has_bar[s, i]:
            continue
        c = close[s, i]
        prices[s] = c
        d = pos[P_DIR, s]
        if i == last_bar[s] and d != 0.0:
            px = fill_price(c, -d, cell(slip, s, i))
            close_position(pos, acct, records, n_tr, s, i, px, c, fparams[F_TAKER], END, AT_CLOSE)
            n_tr += 1
    return n_tr


@_jit_inline
def _mark_bar(i, book, out):
    """The mark at the close of bar ``i``: equity and gross notional / equity; returns the gross."""
    pos, acct, _, prices, _ = book
    equity_out, exposure_out, _ = out
    eq = mark(acct[A_CASH], pos, prices)
    g = gross_notional(pos, prices)
    equity_out[i] = eq
    exposure_out[i] = g / eq if eq > 0.0 else np.nan
    return g


@_jit_inline
def _day_open(i, day, book, out):
    """The daily loss limit at a bar's open: the first bar of a UTC day (``day[i]``) starts the
    day (its equity: the mark at the previous bar's close, the cash on the run's first bar; the
    limit untripped); a bar opening with the limit tripped counts as blocked."""
    acct = book[1]
    today = float(day[i])
    if today != acct[A_DAY]:
        acct[A_DAY] = today
        acct[A_DAY_EQUITY] = out[0][i - 1] if i > 0 else acct[A_CASH]
        acct[A_HALTED] = 0.0
    elif acct[A_HALTED] != 0.0:
        acct[A_LOSS_BARS] += 1.0


@_jit_inline
def _day_close(i, book, out, limit):
    """The daily loss limit at a bar's close (after :func:`_mark_bar`): trips (for the rest of
    the day) where the equity marked at this close is :func:`loss_limit_hit`."""
    acct = book[1]
    if acct[A_HALTED] == 0.0 and loss_limit_hit(acct[A_DAY_EQUITY], out[0][i], limit):
        acct[A_HALTED] = 1.0
        acct[A_LOSS_DAYS] += 1.0


@_jit_inline
def _bar_loop(grid, dec, fund, book, out, iparams, fparams, state, day, guarded):
    """The bar loop of :func:`run_kernel`. ``state`` = (first bar, next settlement at an open,
    next settlement inside a bar, trade records written, settlements at an open): where it
    starts and, on return, where it stopped. It stops before a bar when the records might not
    hold that bar's closes (at most two per symbol: one at the open, one after a new entry);
    ``state[0]`` is then that bar (the caller gives more room and calls again), else the bar
    count. ``guarded`` (a constant of each compiled loop, :func:`_simulate` /
    :func:`_simulate_guarded`): the daily loss limit, on ``day``, the UTC day of each bar. A
    loop without it has no trace of it: a branch in the bar loop costs ~5 % even never taken."""
    acct, records, error = book[1], book[2], out[2]
    loss_limit = fparams[F_LOSS_LIMIT]
    k_open, k_inside, n_tr, n_open = state[1], state[2], state[3], state[4]
    n_settle, n_sym, n_bars = fund[0].shape[0], grid[0].shape[0], grid[0].shape[1]
    i = state[0]
    while i < n_bars:
        if n_tr + 2 * n_sym > records.shape[1]:
            break
        _at_open(i, grid, book)
        if guarded:
            _day_open(i, day, book, out)
        # 1. settlements at this open instant, on positions carried into the bar
        k_open = _settle_bar(i, k_open, n_open, fund, book, error)
        if k_open < 0:
            break
        # 2. the open: gapped stops, hold reviews, then entries
        n_tr = _exits_at_open(i, grid, dec, book, n_tr, iparams, fparams)
        if guarded and acct[A_HALTED] != 0.0:
            _refuse_entries(i, grid, dec, book, iparams, fparams)
        else:
            _entries(i, grid, dec, book, iparams, fparams)
        # 3. settlements strictly inside the bar
        k_inside = _settle_bar(i, k_inside, n_settle, fund, book, error)
        if k_inside < 0:
            break
        # 4. intrabar stop / take-profit, liquidation; 5. end of data and the mark at the close
        n_tr = _exits_intrabar(i, grid, dec, book, n_tr, fparams)
        n_tr = _liquidate(i, grid, dec, book, n_tr, fparams)
        n_tr = _at_close(i, grid, dec, book, n_tr, fparams)
        _mark_bar(i, book, out)
        if guarded:
            _day_close(i, book, out, loss_limit)
        if _any_open(book[0]):
            acct[A_IN_MARKET] += 1.0
        i += 1
    state[0], state[1], state[2], state[3] = i, k_open, k_inside, n_tr


@_jit_loop
def _simulate(grid, dec, fund, book, out, iparams, fparams, state):
    """:func:`_bar_loop` without the daily loss limit."""
    _bar_loop(grid, dec, fund, book, out, iparams, fparams, state, state, False)


@_jit_loop
def _simulate_guarded(grid, dec, fund, book, out, iparams, fparams, state, day):
    """:func:`_bar_loop` with the daily loss limit (``fparams[F_LOSS_LIMIT]``) on ``day``."""
    _bar_loop(grid, dec, fund, book, out, iparams, fparams, state, day, True)


INITIAL_ROOM = 4096  # least trade records first allocated by :func:`run_kernel` (it grows them)


def run_kernel(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    has_bar: np.ndarray,
    last_bar: np.ndarray,
    sig: np.ndarray,
    conf: np.ndarray,
    vol: np.ndarray,
    atr: np.ndarray,
    exp_ret: np.ndarray,
    slip: np.ndarray,
    settle_bar: np.ndarray,
    n_open: int,
    rates: np.ndarray,
    iparams: np.ndarray,
    fparams: np.ndarray,
    max_trades: int,
    day: np.ndarray | None = None,
    day_state: tuple[float, float, bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """Run the bar loop. Returns (equity, exposure, trades[18, room], n_trades, totals,
    error); ``max_trades`` is an upper bound of the trades (it caps the first room).

    Trade records also carry the raw (pre-slippage) entry and exit prices, the exit's phase in
    its bar (:data:`AT_OPEN`/:data:`INTRABAR`/:data:`AT_CLOSE`) and the equity the entry was
    sized on, so that a replay can repeat the same fills without costs.

    ``settle_bar``: the bar of each funding settlement, the ``n_open`` at a bar's open first, then
    those inside a bar (each part sorted by bar); ``rates`` [n_settlements, n_symbols].

    ``day``: the UTC day of each bar (int64, e.g. ``timestamp_ns // NS_PER_DAY``), needed where
    the daily loss limit (``fparams[F_LOSS_LIMIT]``) is set; ``day_state`` = (day, the equity it
    started with, whether the limit tripped in it): the limit's state where the run starts
    inside that day (it applies where the first bar is in that day).

    totals = the final account ``acct`` [N_ACCT]: fees paid, funding paid, traded notional, bars
    with a position (slots ``A_FEES``...``A_IN_MARKET``) and the guards' counts (``A_LOSS_DAYS``
    ...); error = (code, symbol, settlement index) where code 1 = a held position met a
    settlement without a rate.
    """
    n_sym, n_bars = open_.shape
    guarded = fparams[F_LOSS_LIMIT] == fparams[F_LOSS_LIMIT]
    if guarded and day is None:
        raise ValueError("the daily loss limit needs the day of each bar")
    pos, acct = new_book(n_sym, fparams[F_EQUITY])
    if day_state is not None:
        acct[A_DAY], acct[A_DAY_EQUITY] = day_state[0], day_state[1]
        acct[A_HALTED] = 1.0 if day_state[2] else 0.0
    # room for the records grows as they are written: a fresh buffer sized for every possible
    # trade costs more (memory the system zeroes) than the loop itself on long runs
    room = min(max_trades, max(INITIAL_ROOM, n_sym * n_bars // 8))  # a trade per 8 bars
    trades = new_records(room + 2 * n_sym)
    prices, ordinal = np.full(n_sym, np.nan), np.zeros(n_sym, dtype=np.int64)
    out = (np.empty(n_bars), np.empty(n_bars), np.zeros(3, dtype=np.int64))
    state = np.array([0, 0, n_open, 0, n_open], dtype=np.int64)
    while True:
        args = (
            (open_, high, low, close, has_bar, last_bar),
            (sig, conf, vol, atr, exp_ret, slip),
            (settle_bar, rates),
            (pos, acct, trades, prices, ordinal),
            out,
            iparams,
            fparams,
            state,
        )
        if guarded:
            _simulate_guarded(*args, day)
        else:
            _simulate(*args)
        if state[0] >= n_bars or out[2][0] != OK:
            break
        n_tr = int(state[3])
        grown = new_records(max(2 * trades.shape[1], n_tr + 2 * n_sym))
        grown[:, :n_tr] = trades[:, :n_tr]
        trades = grown
    return out[0], out[1], trades, int(state[3]), acct.copy(), out[2]


# --- the replay: given round trips through the same ledger ----------------------------------
# ``exits`` = (exit bar, exit phase, exit reason, raw exit price) per trade, ``entries`` =
# (symbol, direction, entry bar, quantity, fraction of equity, raw entry price); ``costs`` =
# (slippage per fill [n_symbols, n_bars] or [n_symbols, 1], entry fee, exit fee, the cash an
# equity fraction is of: NaN = the equity marked at the entry's open).


@_jit_inline
def _replay_exits(i, phase, raw_of, exits, costs, book):
    """Close the replayed trades that exit in ``phase`` of bar ``i`` (``raw_of``: the prices an
    exit without its own raw price fills at)."""
    t_exit_bar, t_phase, t_reason, t_exit_raw = exits
    slip, _, exit_fee, _ = costs
    pos, acct, records, _, open_trade = book
    for s in range(pos.shape[1]):
        j = open_trade[s]
        if j < 0 or t_exit_bar[j] != i or t_phase[j] != phase:
            continue
        raw = t_exit_raw[j] if t_exit_raw[j] == t_exit_raw[j] else raw_of[s, i]
        px = fill_price(raw, -pos[P_DIR, s], cell(slip, s, i))
        close_position(pos, acct, records, j, s, i, px, raw, exit_fee, t_reason[j], phase)
        acct[A_SLIPPAGE] += pos[P_QTY, s] * raw * cell(slip, s, i)
        open_trade[s] = -1


@_jit_inline
def _replay_entries(i, nxt, open_, entries, costs, book, error):
    """Open the replayed trades entering at the open of bar ``i`` (trades ``nxt``...); returns
    the next trade, or -1 on an overlap (``error`` set)."""
    t_sym, t_dir, t_entry_bar, t_qty, t_frac, t_entry_raw = entries
    slip, entry_fee, _, base_cash = costs
    pos, acct, _, prices, open_trade = book
    n = t_sym.shape[0]
    if nxt >= n or t_entry_bar[nxt] != i:
        return nxt
    eq_now = mark(acct[A_CASH], pos, prices)
    base = base_cash if base_cash == base_cash else eq_now
    while nxt < n and t_entry_bar[nxt] == i:
        j, s = nxt, t_sym[nxt]
        if open_trade[s] >= 0:
            error[0], error[1], error[2] = OVERLAP, s, j
            return -1
        raw = t_entry_raw[j] if t_entry_raw[j] == t_entry_raw[j] else open_[s, i]
        q = t_qty[j] if t_qty[j] == t_qty[j] else t_frac[j] * base / raw
        px = fill_price(raw, t_dir[j], cell(slip, s, i))
        open_position(pos, acct, s, t_dir[j], q, px, raw, entry_fee, i, eq_now, np.nan)
        acct[A_SLIPPAGE] += q * raw * cell(slip, s, i)
        open_trade[s] = j
        nxt += 1
    return nxt


@_jit_inline
def _latest_prices(i, prices, quotes, has_bar):
    for s in range(prices.shape[0]):
        if has_bar[s, i]:
            prices[s] = quotes[s, i]


@_jit_loop
def replay_loop(grid, fund, n_open, entries, exits, costs, book, out):
    """Replay trades sorted by entry bar through the ledger (:mod:`..replay`): funding at the
    open, exits at the open, entries (sized on the equity marked there), funding inside the
    bar, intrabar exits, close exits, the mark. ``book``'s last array is the trade open on each
    symbol (-1: none); trade ``j``'s record is ``records[:, j]``; ``acct[A_IN_MARKET]`` counts the
    bars closed with a gross notional > 0. Stops at an error (``out[2]`` set)."""
    open_, _, _, close, has_bar, _ = grid
    acct, prices, error = book[1], book[3], out[2]
    k_open, k_inside, n_settle = 0, n_open, fund[0].shape[0]
    nxt = 0
    for i in range(open_.shape[1]):
        _latest_prices(i, prices, open_, has_bar)
        k_open = _settle_bar(i, k_open, n_open, fund, book, error)
        if k_open < 0:
            break
        _replay_exits(i, AT_OPEN, open_, exits, costs, book)
        nxt = _replay_entries(i, nxt, open_, entries, costs, book, error)
        if nxt < 0:
            break
        k_inside = _settle_bar(i, k_inside, n_settle, fund, book, error)
        if k_inside < 0:
            break
        _replay_exits(i, INTRABAR, close, exits, costs, book)
        _latest_prices(i, prices, close, has_bar)
        _replay_exits(i, AT_CLOSE, close, exits, costs, book)
        if _mark_bar(i, book, out) > 0.0:
            acct[A_IN_MARKET] += 1.0
