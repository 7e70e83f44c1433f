"""Controls beside every result: a random strategy with the same turnover (Monte-Carlo), the
shuffled-label model's verdict and its helpers, and the gross-vs-net cost summary.

Random same-turnover strategy: each Monte-Carlo path takes the strategy's realised round trips
(net run, :class:`~cryptoml_pipeline.execution.backtest.Fills`) and, per symbol, places the same
list of holding times, each with its size (notional, as a fraction of the initial equity by
default, or of the equity at entry), at random
non-overlapping start bars inside that symbol's bars of the span (uniform over arrangements),
with random sides (50/50). The paths are replayed (:mod:`~cryptoml_pipeline.execution.replay`)
through the same fees, slippage and funding with no decision filter, so each path keeps every
symbol's number of trades, holding times and sizes (hence its turnover, up to the equity the
sizes apply to) and loses only the timing and direction of the trades. Holding time is counted in
the symbol's bars: an exit at an open after ``h`` bars holds ``h``; an intrabar or close exit in
bar ``h`` holds ``h + 1``. A random trade exits at the open ``h`` bars after its entry, or at the
close of the symbol's last bar. With ``costs.order_type == "maker"`` the random fills pay the
maker fee without slippage and are assumed filled. Seeded; the strategy's percentile and a
one-sided p-value (``(1 + #paths with Sharpe >= the strategy's) / (1 + #paths)``) are reported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.evaluation.forecast import newey_west_lags, newey_west_t
from cryptoml_pipeline.evaluation.metrics import daily_returns, sharpe_ratio
from cryptoml_pipeline.evaluation.statistics import block_bootstrap_indices
from cryptoml_pipeline.execution import kernel as K
from cryptoml_pipeline.execution.backtest import BacktestResult, Fills, slippage_matrix
from cryptoml_pipeline.execution.market_grid import (
    MarketGrid,
    align_decisions,
    build_grid,
    funding_schedule,
)
from cryptoml_pipeline.execution.replay import replay_fills
from cryptoml_pipeline.settings import CostConfig, SlippageConfig

log = logging.getLogger(__name__)

# a shuffled-label model whose rank IC, directional or class accuracy is this many (bootstrap or
# HAC) standard errors above its chance level has an edge (see :func:`shuffled_label_verdict`)
LEAK_Z = 3.0
MC_METHOD = (
    "strategy's own trades per symbol (holding times; notional as a fraction of the {size} "
    "equity) at random non-overlapping start bars, random sides, replayed with the same fees, "
    "slippage and funding"
)


@dataclass(frozen=True)
class MonteCarloSummary:
    n_paths: int
    sharpe: list[float | None]
    total_return: list[float]
    turnover: list[float]
    strategy_sharpe: float | None
    strategy_percentile: float | None
    p_value: float | None
    strategy_turnover: float | None = None
    method: str = MC_METHOD.format(size="initial")
    # per named period (development / held_back): every path's net Sharpe inside it
    period_sharpes: dict[str, list[float | None]] = field(default_factory=dict)

    def period_summary(self, name: str, strategy_sharpe: float | None) -> dict[str, Any] | None:
        """The random paths inside one period: Sharpe p5/p50/p95 and the strategy's rank."""
        values = [v for v in self.period_sharpes.get(name, []) if v is not None]
        if not values:
            return None
        out: dict[str, Any] = {
            "n_paths": len(values),
            "sharpe_p5_p50_p95": np.percentile(values, [5, 50, 95]).tolist(),
        }
        if strategy_sharpe is not None:
            out["strategy_percentile"] = float(np.mean(np.asarray(values) < strategy_sharpe))
            out["p_value"] = float(
                (1 + np.sum(np.asarray(values) >= strategy_sharpe)) / (1 + len(values))
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        finite = [s for s in self.sharpe if s is not None]
        q = np.percentile(finite, [5, 50, 95]).tolist() if finite else None
        return {
            "n_paths": self.n_paths,
            "sharpe_p5_p50_p95": q,
            "total_return_median": float(np.median(self.total_return))
            if self.total_return
            else None,
            "turnover_median": float(np.median(self.turnover)) if self.turnover else None,
            "strategy_turnover": self.strategy_turnover,
            "strategy_sharpe": self.strategy_sharpe,
            "strategy_percentile": self.strategy_percentile,
            "p_value": self.p_value,
            "method": self.method,
        }


def _sharpe(result: BacktestResult) -> float | None:
    return sharpe_ratio(
        daily_returns(result.equity, initial_equity=result.initial_equity).to_numpy()
    )


def holding_bars(fills: Fills, grid: MarketGrid) -> np.ndarray:
    """Holding time of each round trip in its symbol's bars (see module docstring)."""
    ordinal = np.cumsum(grid.has_bar, axis=1) - 1  # the symbol's bar ordinal at each grid bar
    entry = ordinal[fills.symbol, fills.entry_bar]
    exit_ = ordinal[fills.symbol, fills.exit_bar]
    return (exit_ - entry + (fills.phase != K.AT_OPEN)).astype(np.int64)


def equity_fractions(fills: Fills, initial_equity: float | None = None) -> np.ndarray:
    """Each entry's notional (at the raw entry price) as a fraction of the equity it was sized
    on, or of ``initial_equity`` when given."""
    base = fills.entry_equity if initial_equity is None else initial_equity
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = fills.quantity * fills.entry_raw / base
    return np.where(np.isfinite(frac), frac, 0.0)


def random_placement(
    fills: Fills, grid: MarketGrid, rng: np.random.Generator, sizes: np.ndarray | None = None
) -> tuple[Fills, np.ndarray]:
    """One random path: the same per-symbol holding times and sizes (``sizes`` per trade,
    default :func:`equity_fractions`) at uniformly random non-overlapping start bars, random
    sides. Returns the path's fills and each one's size."""
    hold = holding_bars(fills, grid)
    frac = equity_fractions(fills) if sizes is None else np.asarray(sizes, dtype=np.float64)
    parts: list[tuple[np.ndarray, ...]] = []
    for s in np.unique(fills.symbol):
        idx = np.flatnonzero(fills.symbol == s)
        bars = np.flatnonzero(grid.has_bar[s])
        k, n_ord = len(idx), len(bars)
        perm = rng.permutation(k)
        dur = hold[idx][perm]
        free = n_ord - int(dur.sum())
        if free < 0:
            raise InputError(f"the trades of {grid.symbols[s]} overlap: cannot place them")
        # stars and bars: k interval tokens among `free` idle bars, uniform over arrangements
        tokens = np.sort(rng.choice(free + k, size=k, replace=False))
        starts = tokens - np.arange(k) + np.concatenate([[0], np.cumsum(dur)[:-1]])
        ends = starts + dur
        at_end = ends >= n_ord
        parts.append(
            (
                np.full(k, s),
                rng.choice(np.array([-1, 1]), size=k),
                bars[starts],
                bars[np.minimum(ends, n_ord - 1)],
                np.where(at_end, K.AT_CLOSE, K.AT_OPEN),
                np.where(at_end, K.END, K.TIME),
                frac[idx][perm],
            )
        )
    cols = [np.concatenate(c) if parts else np.zeros(0) for c in zip(*parts, strict=True)]
    if not parts:
        cols = [np.zeros(0, dtype=np.int64)] * 6 + [np.zeros(0)]
    sym, direction, entry_bar, exit_bar, phase, reason, fractions = cols
    nan = np.full(len(sym), np.nan)
    path = Fills(
        symbol=sym.astype(np.int64),
        direction=direction.astype(np.int64),
        entry_bar=entry_bar.astype(np.int64),
        exit_bar=exit_bar.astype(np.int64),
        phase=phase.astype(np.int64),
        quantity=nan,
        entry_raw=nan,
        exit_raw=nan,
        entry_equity=nan,
        exit_reason=reason.astype(np.int64),
    )
    return path, fractions.astype(np.float64)


def random_same_turnover(
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    strategy: BacktestResult,
    *,
    strategy_sharpe: float | None,
    costs: CostConfig,
    timeframe: str,
    funding_interval_hours: int = 8,
    slippage: SlippageConfig | None = None,
    decisions: pd.DataFrame | None = None,
    n_paths: int = 200,
    seed: int = 7,
    size_of: Literal["initial", "equity"] = "initial",
    periods: Sequence[tuple[str, pd.Timestamp, pd.Timestamp]] = (),
) -> MonteCarloSummary:
    """Monte-Carlo distribution of the random same-turnover strategy (see module docstring).

    ``strategy`` is the net run on the same ``candles``; ``decisions`` (the strategy's) feed
    only the volatility term of the slippage (needed when ``slippage`` has one). ``size_of``:
    each random trade's notional is the strategy trade's notional as a fraction of the
    initial equity (``"initial"``, default: the same currency sizes, so the turnover matches
    whatever the path earns) or of the equity at entry (``"equity"``: the same leverage, but a
    strategy that compounds gains then out-trades its random paths — a prescient strategy
    showed 1.7x their median turnover).
    """
    if strategy.fills is None:
        raise InputError("the strategy result carries no fills (not a kernel run)")
    grid = build_grid(candles, timeframe)
    schedule = funding_schedule(grid, funding, interval_hours=funding_interval_hours)
    if costs.order_type == "maker":
        fee, slip = float(costs.maker_fee), np.zeros(grid.open.shape)
    else:
        aligned = (
            align_decisions(decisions, grid)
            if decisions is not None
            else {"volatility": np.full(grid.open.shape, np.nan)}
        )
        fee, slip = (
            float(costs.taker_fee),
            slippage_matrix(aligned, grid, costs, slippage, timeframe),
        )
    rng = np.random.default_rng(seed)
    initial = float(strategy.initial_equity)
    sizes = equity_fractions(strategy.fills, initial if size_of == "initial" else None)
    sharpes: list[float | None] = []
    returns: list[float] = []
    turnovers: list[float] = []
    by_period: dict[str, list[float | None]] = {name: [] for name, _, _ in periods}
    for _ in range(n_paths):
        path, fractions = random_placement(strategy.fills, grid, rng, sizes)
        result = replay_fills(
            grid,
            path,
            initial_equity=initial,
            entry_fee=fee,
            exit_fee=fee,
            slip=slip,
            schedule=schedule,
            equity_fraction=fractions,
            fraction_of=size_of,
        )
        sharpes.append(_sharpe(result))
        for name, lo, hi in periods:
            by_period[name].append(_period_sharpe(result.equity, lo, hi, initial))
        returns.append(float(result.equity.iloc[-1] / initial - 1.0))
        turnovers.append(float((result.traded_notional or 0.0) / initial))
    finite = np.array([s for s in sharpes if s is not None], dtype=np.float64)
    percentile = p_value = None
    if strategy_sharpe is not None and len(finite):
        percentile = float(np.mean(finite < strategy_sharpe))
        p_value = float((1 + np.sum(finite >= strategy_sharpe)) / (1 + len(finite)))
    return MonteCarloSummary(
        n_paths,
        sharpes,
        returns,
        turnovers,
        strategy_sharpe,
        percentile,
        p_value,
        strategy_turnover=float((strategy.traded_notional or 0.0) / initial),
        method=MC_METHOD.format(size="initial" if size_of == "initial" else "entry"),
        period_sharpes=by_period,
    )


def _period_sharpe(
    equity: pd.Series, lo: pd.Timestamp, hi: pd.Timestamp, initial: float
) -> float | None:
    """Net annualised Sharpe of the daily returns inside ``[lo, hi)`` (first day against the
    equity before the period)."""
    inside = equity[(equity.index >= lo) & (equity.index < hi)]
    if inside.empty:
        return None
    before = equity[equity.index < lo]
    base = float(before.iloc[-1]) if len(before) else initial
    return sharpe_ratio(daily_returns(inside, initial_equity=base).to_numpy())


def _daily_hac_z(
    values: np.ndarray, day_code: np.ndarray, n_days: int, *, horizon: int, bars_per_day: int
) -> float | None:
    """Newey–West t of the mean of per-row ``values`` (centred under the null): rows are summed
    per day and scaled by ``n_days / n`` so that the daily series' mean is the row mean; lags
    per :func:`forecast.newey_west_lags` (at least the label's overlap in days, plus one)."""
    n = len(values)
    if n < 3 or n_days < 3:
        return None
    daily = np.bincount(day_code, weights=values, minlength=n_days) * (n_days / n)
    lags = newey_west_lags(n_days, horizon=horizon, bars_per_day=bars_per_day)
    return newey_west_t(daily, lags)


def shuffled_label_verdict(
    predictions: pd.DataFrame | None,
    labels: pd.DataFrame | None = None,
    *,
    horizon: int,
    bars_per_day: int,
    psr: float | None = None,
    n_boot: int = 1000,
    block_days: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Does the shuffled-label model show an edge? ``leak`` True means: investigate a leak.

    Pure: the control's out-of-sample ``predictions`` (``timestamp``, ``signal``, ``label``;
    ``symbol``, ``expected_return``, ``pred_class``, ``forward_return`` when present) and
    ``labels`` (``timestamp, symbol, realised_return``; optional) give the verdict. Every test
    is drift- and overlap-aware, so a control that is mostly on one side of a trending market
    is not taken for an edge:

    * **rank IC** of ``expected_return`` vs ``realised_return`` with its day-block bootstrap
      (:func:`rank_ic_interval`, ``n_boot`` samples of ``block_days``-day blocks; the 95 %
      interval is reported): edge when the IC is more than ``LEAK_Z`` bootstrap standard errors
      above zero (a 95 % interval from a few dozen day blocks is too narrow for a 5 % test);
    * **directional accuracy** (``sign(signal)`` vs the sign of ``forward_return``, else of
      ``label``, on rows where both are non-zero) against the accuracy the control's own sign mix
      earns by chance, ``q p + (1 - q)(1 - p)`` (``q``: share of long calls, ``p``: share of up
      moves). The difference is exactly the mean of ``(s - mean(s)) (y - mean(y)) / 2``; its
      standard error is Newey–West on the daily sums (lags: at least the days the ``horizon``-bar
      labels overlap, :func:`forecast.newey_west_lags`). Edge when ``z > LEAK_Z``;
    * **5-class accuracy** (``pred_class``) against the test window's majority-class rate (the
      best a model that learnt only the class prior can do), with the same HAC standard error.
      Edge when ``z > LEAK_Z``.

    ``psr`` (the control's P[Sharpe > 0]) is reported but does not decide: a control that is
    long in a rising market earns a positive Sharpe without skill. ``verdict`` is
    ``"LEAK SUSPECTED"``, ``"no edge"`` or ``"not run"`` (``available`` False).
    """
    if predictions is None or predictions.empty:
        return {
            "available": False,
            "leak": None,
            "verdict": "not run",
            "reason": "shuffled-label control not run",
        }
    day = pd.to_datetime(predictions["timestamp"], utc=True).dt.floor("1D").to_numpy()
    signal = predictions["signal"].to_numpy(np.float64)
    label = predictions["label"].to_numpy(np.float64)
    target = (
        np.sign(predictions["forward_return"].to_numpy(np.float64))
        if "forward_return" in predictions.columns
        else np.sign(label)
    )
    # direction: the sign of the call vs the sign of the move, against its own sign mix
    rows = (signal != 0) & np.isfinite(label) & (label != 0) & np.isfinite(target) & (target != 0)
    n = int(rows.sum())
    directional = baseline = z = None
    if n > 0:
        s, y = np.sign(signal[rows]), target[rows]
        q, p = float(np.mean(s > 0)), float(np.mean(y > 0))
        directional = float(np.mean(s == y))
        baseline = q * p + (1.0 - q) * (1.0 - p)
        days, code = np.unique(day[rows], return_inverse=True)
        z = _daily_hac_z(
            (s - s.mean()) * (y - y.mean()) / 2.0,
            code,
            len(days),
            horizon=horizon,
            bars_per_day=bars_per_day,
        )
    # 5-class accuracy vs the majority class (a prior-only model's best)
    known = np.isfinite(label)
    accuracy = majority = z_acc = None
    if known.any() and "pred_class" in predictions.columns:
        classes = label[known] + 2
        hit = predictions["pred_class"].to_numpy(np.float64)[known] == classes
        accuracy = float(np.mean(hit))
        majority = float(np.max(np.unique(classes, return_counts=True)[1]) / known.sum())
        days, code = np.unique(day[known], return_inverse=True)
        z_acc = _daily_hac_z(
            hit - majority, code, len(days), horizon=horizon, bars_per_day=bars_per_day
        )
    # rank IC with its day-block bootstrap interval
    ic: dict[str, Any] = {"rank_ic": None, "rank_ic_ci": None, "n_days": None}
    if (
        labels is not None
        and {"symbol", "expected_return"} <= set(predictions.columns)
        and {"timestamp", "symbol", "realised_return"} <= set(labels.columns)
    ):
        keys = ["timestamp", "symbol"]
        pred = predictions.loc[:, [*keys, "expected_return"]].copy()
        lab = labels.loc[:, [*keys, "realised_return"]].copy()
        for frame in (pred, lab):
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
            frame["symbol"] = frame["symbol"].astype(str)
        scored = pred.merge(lab.drop_duplicates(keys), on=keys, how="left")
        ic = rank_ic_interval(scored, n_boot=n_boot, block_days=block_days, seed=seed)
    ci, ic_se = ic.get("rank_ic_ci"), ic.get("rank_ic_se")
    ic_z = ic["rank_ic"] / ic_se if ic.get("rank_ic") is not None and ic_se else None
    reasons = []
    if ic_z is not None and ic_z > LEAK_Z:
        reasons.append(
            f"rank IC {ic['rank_ic']:.3f} is {ic_z:.1f} day-block bootstrap s.e. above zero "
            f"(95 % interval [{ci[0]:.3f}, {ci[1]:.3f}])"
        )
    if z is not None and z > LEAK_Z:
        reasons.append(
            f"directional accuracy {directional:.3f} is {z:.1f} HAC s.e. above the "
            f"{baseline:.3f} its own long/short mix earns by chance"
        )
    if z_acc is not None and z_acc > LEAK_Z:
        reasons.append(
            f"5-class accuracy {accuracy:.3f} is {z_acc:.1f} HAC s.e. above the majority class "
            f"rate {majority:.3f}"
        )
    leak = bool(reasons)
    if leak:
        reason = "; ".join(reasons)
    else:
        tests = [
            name
            for name, ran in (
                ("rank IC vs its day-block bootstrap", ic_z is not None),
                ("direction vs its own sign mix", z is not None),
                ("class accuracy vs the majority class", z_acc is not None),
            )
            if ran
        ]
        basis = ", ".join(tests) if tests else "nothing: too few scored rows"
        reason = f"no edge (as expected; judged on {basis})"
    return {
        "available": True,
        "leak": leak,
        "verdict": "LEAK SUSPECTED" if leak else "no edge",
        "test": (
            "rank IC vs its day-block bootstrap s.e.; directional accuracy vs its own sign mix "
            "and class accuracy vs the majority class, Newey-West (HAC) s.e. on daily sums"
        ),
        "rank_ic": ic.get("rank_ic"),
        "rank_ic_ci": ci,
        "rank_ic_z": None if ic_z is None else float(ic_z),
        "n_days": ic.get("n_days"),
        "psr": psr,
        "directional_accuracy": directional,
        "directional_baseline": baseline,
        "directional_z": None if z is None else float(z),
        "n_directional": n,
        "accuracy": accuracy,
        "majority_class_rate": majority,
        "accuracy_z": None if z_acc is None else float(z_acc),
        "reason": reason,
    }


def cost_summary(net: BacktestResult, gross: BacktestResult) -> dict[str, float | int | None]:
    """Gross vs net of the SAME trades (``gross`` = :func:`replay.replay_gross` of ``net``).

    Every money key is a fraction of the initial equity, signed as a cost: > 0 = paid.
    ``fees_paid`` (exchange fees), ``slippage_paid`` (quantity * |fill - raw price| over every
    fill), ``funding_paid`` (net funding; < 0 = received) and ``cost_drag`` = their sum, which
    equals ``gross_total_return - net_total_return`` (up to rounding). ``turnover`` = traded
    notional / initial equity; ``gross_n_trades`` == ``net_n_trades`` for a replayed gross run.
    """
    initial = net.initial_equity
    net_ret = float(net.equity.iloc[-1] / initial - 1.0)
    gross_ret = float(gross.equity.iloc[-1] / gross.initial_equity - 1.0)
    fees = float(net.fees_paid) / initial
    slippage = None if net.slippage_paid is None else float(net.slippage_paid) / initial
    funding = float(net.funding_paid) / initial
    return {
        "gross_total_return": gross_ret,
        "net_total_return": net_ret,
        "cost_drag": gross_ret - net_ret if slippage is None else fees + slippage + funding,
        "fees_paid": fees,
        "slippage_paid": slippage,
        "funding_paid": funding,
        "turnover": float((net.traded_notional or 0.0) / initial),
        "gross_sharpe": _sharpe(gross),
        "net_sharpe": _sharpe(net),
        "gross_n_trades": len(gross.trades),
        "net_n_trades": len(net.trades),
    }


def quantile_map(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map each finite value to the ``reference`` distribution's quantile at its rank.

    Rank ``r`` (1-based, ties averaged) of ``n`` finite values -> ``quantile(reference,
    (r - 0.5) / n)`` (linear interpolation over the finite reference values). NaN stays NaN;
    the output keeps the input's order (a rank-preserving transform onto the reference).
    """
    v = np.asarray(values, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    ref = ref[np.isfinite(ref)]
    if len(ref) == 0:
        raise InputError("quantile_map needs a reference with finite values")
    out = np.full(v.shape, np.nan)
    finite = np.isfinite(v)
    if finite.any():
        ranks = rankdata(v[finite])
        out[finite] = np.quantile(ref, (ranks - 0.5) / finite.sum())
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt(np.sum(ra**2) * np.sum(rb**2))
    return float(np.sum(ra * rb) / denom) if denom > 0 else float("nan")


def _average_ranks(code: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank) of the multiset in which row ``i`` appears
    ``weight[i]`` times; ``code`` is the row's value as its index among the sorted unique values.
    Equals ``rankdata`` on the repeated rows, without sorting."""
    per_value = np.bincount(code, weights=weight)
    below = np.cumsum(per_value) - per_value
    return (below + (per_value + 1.0) / 2.0)[code]


def _weighted_spearman(pred_code: np.ndarray, target_code: np.ndarray, weight: np.ndarray) -> float:
    """Spearman correlation of the resample in which row ``i`` appears ``weight[i]`` times."""
    total = weight.sum()
    if not total > 0:
        return float("nan")
    ra = _average_ranks(pred_code, weight)
    rb = _average_ranks(target_code, weight)
    ra = ra - (weight @ ra) / total
    rb = rb - (weight @ rb) / total
    denom = np.sqrt((weight @ (ra * ra)) * (weight @ (rb * rb)))
    return float((weight @ (ra * rb)) / denom) if denom > 0 else float("nan")


def rank_ic_interval(
    frame: pd.DataFrame,
    *,
    pred_col: str = "expected_return",
    target_col: str = "realised_return",
    n_boot: int = 1000,
    block_days: int = 5,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Pooled Spearman rank IC of ``pred_col`` vs ``target_col`` over all rows (both finite)
    with a day-block bootstrap percentile interval.

    Days are UTC calendar days of ``frame["timestamp"]``; each bootstrap sample draws circular
    blocks of ``block_days`` consecutive days (seeded) and recomputes the pooled IC on their
    rows, which keeps the dependence inside and between nearby days. Pooling (not a mean of
    daily cross-sectional ICs) because a day holds only a few symbols. Returns ``{"rank_ic",
    "rank_ic_ci": [lo, hi] | None, "rank_ic_se" (std of the bootstrap ICs), "n_days",
    "n_rows"}``; None values with < 3 rows or < 2 days.
    """
    pred = frame[pred_col].to_numpy(np.float64)
    target = frame[target_col].to_numpy(np.float64)
    ok = np.isfinite(pred) & np.isfinite(target)
    pred, target = pred[ok], target[ok]
    day = pd.to_datetime(frame["timestamp"], utc=True)[ok].dt.floor("1D").to_numpy()
    days, day_code = np.unique(day, return_inverse=True)
    n_days = len(days)
    if len(pred) < 3:
        return {"rank_ic": None, "rank_ic_ci": None, "n_days": n_days, "n_rows": len(pred)}
    ic = _spearman(pred, target)
    ci = se = None
    if n_days >= 2 and n_boot > 0:
        draws = block_bootstrap_indices(n_days, n_boot, block_days, seed)
        # a resample is every row of each drawn day, as often as the day is drawn: a row weight
        pred_code = np.unique(pred, return_inverse=True)[1]
        target_code = np.unique(target, return_inverse=True)[1]
        ics = np.empty(n_boot)
        for b in range(n_boot):
            weight = np.bincount(draws[b], minlength=n_days)[day_code].astype(np.float64)
            ics[b] = _weighted_spearman(pred_code, target_code, weight)
        ics = ics[np.isfinite(ics)]
        if len(ics):
            lo, hi = np.percentile(ics, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
            ci = [float(lo), float(hi)]
            se = float(np.std(ics, ddof=1)) if len(ics) > 1 else None
    return {
        "rank_ic": ic,
        "rank_ic_ci": ci,
        "rank_ic_se": se,
        "n_days": n_days,
        "n_rows": len(pred),
    }
