"""The simulator's bar loop as one array kernel, compiled with numba when it is installed.

Plain Python on NumPy arrays otherwise (same code, same results, ~100x slower). The market rules
are documented in :mod:`cryptoml_pipeline.execution.backtest`; this module only executes them.
Every input is a float/int/bool array; symbols are rows, grid bars are columns.
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


# exit reason codes (trade records); see backtest.EXIT_REASONS
STOP, TIME, FLIP, END, TAKE_PROFIT, LIQUIDATION = 0, 1, 2, 3, 4, 5
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
) = range(15)
N_FLOAT_PARAMS = 15
# trade record columns
(
    T_SYM,
    T_DIR,
    T_ENTRY_BAR,
    T_ENTRY_PRICE,
    T_EXIT_BAR,
    T_EXIT_PRICE,
    T_QTY,
    T_RISK,
    T_PNL,
    T_FEES,
    T_FUNDING,
    T_REASON,
    T_GROSS,
    T_ENTRY_RAW,
    T_EXIT_RAW,
    T_PHASE,
    T_ENTRY_EQUITY,
) = range(17)
N_TRADE_COLS = 17
# exit phase of a fill inside its bar (trade records, replay): at the open, intrabar, at the close
AT_OPEN, INTRABAR, AT_CLOSE = 0, 1, 2
# error codes
OK, MISSING_FUNDING = 0, 1


@_jit
def _entry_direction(sig, conf, exp_ret, slip, fee, entry_conf, edge_mult):
    """+1/-1 for an active entry decision, 0 otherwise (NaN confidence is inactive)."""
    if sig == 0.0 or not conf >= entry_conf or not conf > 0.0:
        return 0
    direction = 1 if sig > 0.0 else -1
    # cost filter only where both are finite (NaN != NaN)
    finite = edge_mult == edge_mult and exp_ret == exp_ret
    if finite and exp_ret * direction < edge_mult * 2.0 * (fee + slip):
        return 0
    return direction


@_jit
def _equity(cash, pos_dir, qty, entry_px, prices):
    eq = cash
    for s in range(pos_dir.shape[0]):
        if pos_dir[s] != 0:
            eq += pos_dir[s] * qty[s] * (prices[s] - entry_px[s])
    return eq


@_jit
def _gross(pos_dir, qty, prices):
    g = 0.0
    for s in range(pos_dir.shape[0]):
        if pos_dir[s] != 0:
            g += qty[s] * prices[s]
    return g


@_jit
def run_kernel(
    open_,
    high,
    low,
    close,
    has_bar,
    last_bar,
    sig,
    conf,
    vol,
    atr,
    exp_ret,
    slip,
    settle_open_ptr,
    settle_inside_ptr,
    rates,
    iparams,
    fparams,
    max_trades,
):
    """Run the bar loop. Returns (equity, exposure, trades[n, 17], n_trades, totals[4], error).

    Trade records also carry the raw (pre-slippage) entry and exit prices, the exit's phase in
    its bar (:data:`AT_OPEN`/:data:`INTRABAR`/:data:`AT_CLOSE`) and the equity the entry was
    sized on, so that a replay can repeat the same fills without costs.

    totals = (fees paid, funding paid, traded notional, bars with a position); error = (code,
    symbol, settlement index) where code 1 = a held position met a settlement without a rate.
    """
    n_sym, n_bars = open_.shape
    min_hold = iparams[I_MIN_HOLD]
    maker = iparams[I_MAKER] != 0
    taker_fee = fparams[F_TAKER]
    maker_fee = fparams[F_MAKER]
    entry_fee = maker_fee if maker else taker_fee
    tp_mult = fparams[F_TP_MULT]
    fixed_qty = fparams[F_FIXED_QTY]
    cash = fparams[F_EQUITY]
    pos_dir = np.zeros(n_sym, dtype=np.int64)
    qty = np.zeros(n_sym)
    entry_px = np.zeros(n_sym)
    entry_raw = np.zeros(n_sym)
    entry_eq = np.zeros(n_sym)
    entry_bar = np.zeros(n_sym, dtype=np.int64)
    planned = np.zeros(n_sym, dtype=np.int64)
    stop = np.full(n_sym, np.nan)
    tp = np.full(n_sym, np.nan)
    risk_amt = np.zeros(n_sym)
    pos_fees = np.zeros(n_sym)
    pos_funding = np.zeros(n_sym)
    prices = np.full(n_sym, np.nan)
    ordinal = np.zeros(n_sym, dtype=np.int64)
    equity_out = np.empty(n_bars)
    exposure_out = np.empty(n_bars)
    # field-major storage (trades[n] is a strided row): each field of the records is one
    # contiguous run for the caller
    trades = np.empty((N_TRADE_COLS, max_trades)).T
    totals = np.zeros(4)  # fees, funding, traded notional, bars in market
    error = np.zeros(3, dtype=np.int64)
    n_tr = 0

    for i in range(n_bars):
        for s in range(n_sym):
            if has_bar[s, i]:
                ordinal[s] += 1
                prices[s] = open_[s, i]
        # 1. settlements at this open instant, on positions carried into the bar
        for k in range(settle_open_ptr[i], settle_open_ptr[i + 1]):
            for s in range(n_sym):
                if pos_dir[s] != 0:
                    rate = rates[k, s]
                    if rate != rate:
                        error[0], error[1], error[2] = MISSING_FUNDING, s, k
                        return equity_out, exposure_out, trades, n_tr, totals, error
                    pay = pos_dir[s] * qty[s] * prices[s] * rate
                    cash -= pay
                    totals[1] += pay
                    pos_funding[s] += pay
        # 2. the open: gapped stops, hold reviews, then entries
        for s in range(n_sym):
            if pos_dir[s] == 0 or not has_bar[s, i]:
                continue
            o = open_[s, i]
            d = pos_dir[s]
            reason = -1
            if (d > 0 and o <= stop[s]) or (d < 0 and o >= stop[s]):
                reason = STOP
            elif ordinal[s] >= planned[s]:
                c = conf[s, i]
                same = sig[s, i] * d > 0.0 and c >= fparams[F_HOLD_CONF] and c > 0.0
                if same:
                    planned[s] = ordinal[s] + min_hold
                else:
                    nd = _entry_direction(
                        sig[s, i],
                        c,
                        exp_ret[s, i],
                        slip[s, i],
                        entry_fee,
                        fparams[F_ENTRY_CONF],
                        fparams[F_EDGE_MULT],
                    )
                    reason = FLIP if nd == -d else TIME
            if reason >= 0:
                # a maker exit fills at the open only if the bar trades through it
                through = (d > 0 and high[s, i] > o) or (d < 0 and low[s, i] < o)
                if maker and reason != STOP and through:
                    px, fee_rate = o, maker_fee
                else:
                    px, fee_rate = o * (1.0 - d * slip[s, i]), taker_fee
                raw_px, phase = o, AT_OPEN
                fee = fee_rate * qty[s] * px
                gross = d * qty[s] * (px - entry_px[s])
                cash += gross - fee
                totals[0] += fee
                totals[2] += qty[s] * px
                tr = trades[n_tr]
                tr[T_SYM], tr[T_DIR], tr[T_ENTRY_BAR] = s, d, entry_bar[s]
                tr[T_ENTRY_PRICE], tr[T_EXIT_BAR], tr[T_EXIT_PRICE] = entry_px[s], i, px
                tr[T_QTY], tr[T_RISK] = qty[s], risk_amt[s]
                tr[T_FEES], tr[T_FUNDING] = pos_fees[s] + fee, pos_funding[s]
                tr[T_PNL] = gross - tr[T_FEES] - pos_funding[s]
                tr[T_REASON], tr[T_GROSS] = reason, gross
                tr[T_ENTRY_RAW], tr[T_EXIT_RAW], tr[T_PHASE] = entry_raw[s], raw_px, phase
                tr[T_ENTRY_EQUITY] = entry_eq[s]
                n_tr += 1
                pos_dir[s] = 0
        # entries
        n_enter = 0
        for s in range(n_sym):
            if has_bar[s, i] and pos_dir[s] == 0:
                d = _entry_direction(
                    sig[s, i],
                    conf[s, i],
                    exp_ret[s, i],
                    slip[s, i],
                    entry_fee,
                    fparams[F_ENTRY_CONF],
                    fparams[F_EDGE_MULT],
                )
                if d != 0:
                    n_enter += 1
        if n_enter > 0:
            eq_now = _equity(cash, pos_dir, qty, entry_px, prices)
            open_risk = 0.0
            for s in range(n_sym):
                if pos_dir[s] != 0:
                    open_risk += risk_amt[s]
            gross_now = _gross(pos_dir, qty, prices)
            for s in range(n_sym):
                if not has_bar[s, i] or pos_dir[s] != 0:
                    continue
                d = _entry_direction(
                    sig[s, i],
                    conf[s, i],
                    exp_ret[s, i],
                    slip[s, i],
                    entry_fee,
                    fparams[F_ENTRY_CONF],
                    fparams[F_EDGE_MULT],
                )
                if d == 0:
                    continue
                o = open_[s, i]
                if maker:
                    # a buy limit at the open fills only if the bar trades below it (sell: above)
                    if (d > 0 and not low[s, i] < o) or (d < 0 and not high[s, i] > o):
                        continue
                    px = o
                else:
                    px = o * (1.0 + d * slip[s, i])
                stop_dist = fparams[F_ATR_MULT] * atr[s, i]
                if fixed_qty == fixed_qty:  # fixed quantity (oracles, benchmarks)
                    q = fixed_qty
                    notional = q * px
                    amount = notional * stop_dist if stop_dist == stop_dist else 0.0
                    if not (stop_dist > 0.0 and stop_dist < 1.0):
                        stop_dist = np.nan
                else:
                    if not (eq_now > 0.0 and stop_dist > 0.0 and stop_dist < 1.0):
                        continue
                    v = vol[s, i]
                    c = conf[s, i]
                    if v != v or c != c:
                        continue
                    vol_mult = 1.0 if v <= 0.0 else min(1.0, fparams[F_VOL_REF] / v)
                    amount = eq_now * fparams[F_BASE_RISK] * (abs(sig[s, i]) / 2.0)
                    amount *= max(c, 0.0) * vol_mult
                    amount = min(amount, eq_now * fparams[F_MAX_RISK])
                    if not amount > 0.0:
                        continue
                    notional = amount / stop_dist
                    heat_ok = max(0.0, min(amount, fparams[F_HEAT] * eq_now - open_risk))
                    lev_ok = max(0.0, min(notional, fparams[F_MAX_LEV] * eq_now - gross_now))
                    scale = min(1.0, heat_ok / amount, lev_ok / notional)
                    if notional * scale <= 1e-6 * eq_now:
                        continue
                    amount *= scale
                    notional *= scale
                    q = notional / px
                fee = entry_fee * q * px
                cash -= fee
                totals[0] += fee
                totals[2] += q * px
                pos_dir[s], qty[s], entry_px[s] = d, q, px
                entry_raw[s], entry_eq[s] = o, eq_now
                entry_bar[s], planned[s] = i, ordinal[s] + min_hold
                stop[s] = px * (1.0 - d * stop_dist)
                tp[s] = px * (1.0 + d * tp_mult * atr[s, i]) if tp_mult == tp_mult else np.nan
                risk_amt[s], pos_fees[s], pos_funding[s] = amount, fee, 0.0
                open_risk += amount
                gross_now += q * px
        # 3. settlements strictly inside the bar
        for k in range(settle_inside_ptr[i], settle_inside_ptr[i + 1]):
            for s in range(n_sym):
                if pos_dir[s] != 0:
                    rate = rates[k, s]
                    if rate != rate:
                        error[0], error[1], error[2] = MISSING_FUNDING, s, k
                        return equity_out, exposure_out, trades, n_tr, totals, error
                    pay = pos_dir[s] * qty[s] * prices[s] * rate
                    cash -= pay
                    totals[1] += pay
                    pos_funding[s] += pay
        # 4. intrabar stop / take-profit (a bar touching both counts the stop), liquidation,
        # 5. end of data and the mark at the close
        for s in range(n_sym):
            if not has_bar[s, i] or pos_dir[s] == 0:
                continue
            d = pos_dir[s]
            o = open_[s, i]
            reason = -1
            raw = np.nan
            if d > 0 and low[s, i] <= stop[s]:
                reason, raw = STOP, min(o, stop[s])
            elif d < 0 and high[s, i] >= stop[s]:
                reason, raw = STOP, max(o, stop[s])
            elif (d > 0 and high[s, i] >= tp[s]) or (d < 0 and low[s, i] <= tp[s]):
                reason, raw = TAKE_PROFIT, tp[s]
            if reason >= 0:
                if reason == TAKE_PROFIT:  # a resting limit order: maker fee, no slippage
                    px, fee_rate = raw, maker_fee
                else:
                    px, fee_rate = raw * (1.0 - d * slip[s, i]), taker_fee
                raw_px, phase = raw, INTRABAR
                fee = fee_rate * qty[s] * px
                gross = d * qty[s] * (px - entry_px[s])
                cash += gross - fee
                totals[0] += fee
                totals[2] += qty[s] * px
                tr = trades[n_tr]
                tr[T_SYM], tr[T_DIR], tr[T_ENTRY_BAR] = s, d, entry_bar[s]
                tr[T_ENTRY_PRICE], tr[T_EXIT_BAR], tr[T_EXIT_PRICE] = entry_px[s], i, px
                tr[T_QTY], tr[T_RISK] = qty[s], risk_amt[s]
                tr[T_FEES], tr[T_FUNDING] = pos_fees[s] + fee, pos_funding[s]
                tr[T_PNL] = gross - tr[T_FEES] - pos_funding[s]
                tr[T_REASON], tr[T_GROSS] = reason, gross
                tr[T_ENTRY_RAW], tr[T_EXIT_RAW], tr[T_PHASE] = entry_raw[s], raw_px, phase
                tr[T_ENTRY_EQUITY] = entry_eq[s]
                n_tr += 1
                pos_dir[s] = 0
        # cross-margin liquidation at the worst prices of the bar
        maint = fparams[F_MAINT]
        if maint > 0.0:
            worst_eq = cash
            worst_gross = 0.0
            any_open = False
            for s in range(n_sym):
                if pos_dir[s] != 0:
                    any_open = True
                    w = prices[s]
                    if has_bar[s, i]:
                        w = low[s, i] if pos_dir[s] > 0 else high[s, i]
                    worst_eq += pos_dir[s] * qty[s] * (w - entry_px[s])
                    worst_gross += qty[s] * w
            if any_open and worst_eq <= maint * worst_gross:
                for s in range(n_sym):
                    if pos_dir[s] == 0:
                        continue
                    d = pos_dir[s]
                    w = prices[s]
                    if has_bar[s, i]:
                        w = low[s, i] if d > 0 else high[s, i]
                    px = w * (1.0 - d * slip[s, i])
                    raw_px, phase = w, INTRABAR
                    fee = taker_fee * qty[s] * px
                    gross = d * qty[s] * (px - entry_px[s])
                    cash += gross - fee
                    totals[0] += fee
                    totals[2] += qty[s] * px
                    tr = trades[n_tr]
                    tr[T_SYM], tr[T_DIR], tr[T_ENTRY_BAR] = s, d, entry_bar[s]
                    tr[T_ENTRY_PRICE], tr[T_EXIT_BAR], tr[T_EXIT_PRICE] = entry_px[s], i, px
                    tr[T_QTY], tr[T_RISK] = qty[s], risk_amt[s]
                    tr[T_FEES], tr[T_FUNDING] = pos_fees[s] + fee, pos_funding[s]
                    tr[T_PNL] = gross - tr[T_FEES] - pos_funding[s]
                    tr[T_REASON], tr[T_GROSS] = LIQUIDATION, gross
                    tr[T_ENTRY_RAW], tr[T_EXIT_RAW], tr[T_PHASE] = entry_raw[s], raw_px, phase
                    tr[T_ENTRY_EQUITY] = entry_eq[s]
                    n_tr += 1
                    pos_dir[s] = 0
        in_market = False
        for s in range(n_sym):
            if not has_bar[s, i]:
                continue
            prices[s] = close[s, i]
            if i == last_bar[s] and pos_dir[s] != 0:
                d = pos_dir[s]
                px = close[s, i] * (1.0 - d * slip[s, i])
                raw_px, phase = close[s, i], AT_CLOSE
                fee = taker_fee * qty[s] * px
                gross = d * qty[s] * (px - entry_px[s])
                cash += gross - fee
                totals[0] += fee
                totals[2] += qty[s] * px
                tr = trades[n_tr]
                tr[T_SYM], tr[T_DIR], tr[T_ENTRY_BAR] = s, d, entry_bar[s]
                tr[T_ENTRY_PRICE], tr[T_EXIT_BAR], tr[T_EXIT_PRICE] = entry_px[s], i, px
                tr[T_QTY], tr[T_RISK] = qty[s], risk_amt[s]
                tr[T_FEES], tr[T_FUNDING] = pos_fees[s] + fee, pos_funding[s]
                tr[T_PNL] = gross - tr[T_FEES] - pos_funding[s]
                tr[T_REASON], tr[T_GROSS] = END, gross
                tr[T_ENTRY_RAW], tr[T_EXIT_RAW], tr[T_PHASE] = entry_raw[s], raw_px, phase
                tr[T_ENTRY_EQUITY] = entry_eq[s]
                n_tr += 1
                pos_dir[s] = 0
        eq = _equity(cash, pos_dir, qty, entry_px, prices)
        g = _gross(pos_dir, qty, prices)
        for s in range(n_sym):
            if pos_dir[s] != 0:
                in_market = True
        if in_market:
            totals[3] += 1.0
        equity_out[i] = eq
        exposure_out[i] = g / eq if eq > 0.0 else np.nan
    return equity_out, exposure_out, trades, n_tr, totals, error
