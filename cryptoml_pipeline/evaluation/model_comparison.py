"""Every model on the same walk-forward folds: classification metrics per fold, the strategy each
model's signals make through the same engine and simulator (costs always on), and the ensemble's
lift over its best base model on the rows both predicted.

The deflated Sharpe ratio of every model counts every configuration tried: the models compared
times their tuning trials (``n_trials`` in each model card).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from cryptoml_pipeline.evaluation.break_even import break_even_taker_fee
from cryptoml_pipeline.evaluation.forecast import sharpe_by_year
from cryptoml_pipeline.evaluation.forecast_section import forecast_stats, scored_predictions
from cryptoml_pipeline.evaluation.metrics import compute_kpis, daily_returns
from cryptoml_pipeline.evaluation.statistics import deflated_sharpe_from_trials
from cryptoml_pipeline.execution.backtest import simulate
from cryptoml_pipeline.execution.decisions import DAYS_PER_YEAR
from cryptoml_pipeline.modeling.folds import Fold
from cryptoml_pipeline.modeling.zoo import classification_metrics
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.strategy.from_predictions import decisions_from_predictions
from cryptoml_pipeline.strategy.options import simulation_options

log = logging.getLogger(__name__)

STRATEGY_KEYS = (
    "total_return",
    "sharpe",
    "max_drawdown",
    "win_rate",
    "n_trades",
    "avg_daily_return",
    "psr",
    "dsr",
)


def _in(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    ts = frame["timestamp"]
    return frame[(ts >= start) & (ts < end)]


def configurations_tried(cards: dict[str, list[dict[str, Any]]]) -> int:
    """Models compared x their tuning trials (at least 1 each)."""
    total = 0
    for model_cards in cards.values():
        trials = [int(c.get("n_trials") or 1) for c in model_cards if c.get("status") == "trained"]
        total += max(trials) if trials else 1
    return max(total, 1)


def strategy_kpis(
    predictions: pd.DataFrame,
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    features: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    settings: PipelineSettings,
    timeframe: str,
    n_trials: int,
    labels: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The model's strategy KPIs through the same engine and simulator; with ``labels`` also
    its forecast statistics, net Sharpe by year and break-even taker fee (``_daily`` holds the
    daily returns for the deflation over every model, removed before reporting)."""
    common, columns, returns_by_class, kpi_opts = simulation_options(
        settings, timeframe, n_trials=n_trials
    )
    preds = _in(predictions, start, end)
    decisions = decisions_from_predictions(
        preds, features, timeframe=timeframe, returns_by_class=returns_by_class, **columns
    )
    span_candles, span_funding = _in(candles, start, end), _in(funding, start, end)
    result = simulate(span_candles, span_funding, decisions, **common)
    kpis = compute_kpis(result, preds, **(kpi_opts | {"bootstrap_samples": 0}))
    out = {k: kpis.get(k) for k in STRATEGY_KEYS}
    out["turnover"] = kpis.get("turnover")
    out["sharpe_by_year"] = sharpe_by_year(result.equity)
    out["_daily"] = daily_returns(result.equity, initial_equity=result.initial_equity)
    if labels is not None:
        stats = forecast_stats(
            scored_predictions(preds, labels),
            horizon=settings.target.horizon,
            timeframe=timeframe,
            with_folds=False,
        )
        out["forecast"] = {
            k: stats.get(k) for k in ("rank_ic", "rank_ic_t", "ic", "ic_t", "hit_rate")
        }
        out["break_even_taker_fee"] = break_even_taker_fee(
            span_candles,
            span_funding,
            decisions,
            result,
            costs=settings.costs,
            slippage=settings.slippage,
            timeframe=timeframe,
            funding_interval_hours=settings.data.funding_interval_hours,
        ).get("break_even_taker_fee")
    return out


def trial_set(settings: PipelineSettings, model_sharpes: list[float | None]) -> dict[str, Any]:
    """Every configuration a headline result was chosen from: those tried to choose the default
    configuration (``controls.n_trials`` / ``controls.trial_sharpes``, annualised) plus the
    models compared in this run. The report's deflated Sharpes all use this one set."""
    ctl = settings.controls
    known = [float(x) for x in (ctl.trial_sharpes or ()) if x is not None]
    models = [float(x) for x in model_sharpes if x is not None and np.isfinite(x)]
    return {
        "n_trials": int(ctl.n_trials + len(model_sharpes)),
        "trial_sharpes": known + models,
        "from_selection": int(ctl.n_trials),
        "from_models": len(model_sharpes),
    }


def deflate(daily: pd.Series, trials: dict[str, Any]) -> dict[str, Any]:
    """PSR / DSR of daily returns against the shared trial set (Sharpes annualised there)."""
    per_day = [x / np.sqrt(DAYS_PER_YEAR) for x in trials["trial_sharpes"]]
    return deflated_sharpe_from_trials(daily.to_numpy(np.float64), per_day, trials["n_trials"])


def training_folds(cards: list[dict[str, Any]], folds: list[Fold]) -> dict[str, Any]:
    """Which of the plan's folds a model trained on, and on what window (from its cards):
    ``folds`` (per fold: status, training window, training rows, reason) and ``summary``, e.g.
    "22/22 folds, expanding from 2019-01-16" or "22/22 folds, rolling 180 d"."""
    keys = {f.key for f in folds}
    rows = []
    for card in cards:
        fold = card.get("fold") or {}
        if fold.get("key") not in keys:
            continue  # another run's card (a stale fold) or a model without folds
        rows.append(
            {
                "fold": fold["key"],
                "status": card.get("status"),
                "train_start": fold.get("train_start"),
                "train_end": fold.get("test_start"),
                "n_train_samples": card.get("n_train_samples"),
                "reason": card.get("reason"),
            }
        )
    rows.sort(key=lambda r: r["fold"])
    trained = [r for r in rows if r["status"] == "trained" and r["train_start"]]
    summary = f"{len(trained)}/{len(folds)} folds"
    if trained:
        starts = {r["train_start"] for r in trained}
        spans = [
            (pd.Timestamp(r["train_end"]) - pd.Timestamp(r["train_start"])).days for r in trained
        ]
        if len(starts) == 1 and len(trained) > 1:
            summary += f", expanding from {min(starts)[:10]}"
        elif max(spans) - min(spans) <= 1:
            summary += f", rolling {spans[0]} d"
        else:
            summary += f", windows of {min(spans)}-{max(spans)} d"
    return {"summary": summary, "folds": rows}


def compare_models(
    predictions: dict[str, pd.DataFrame],
    cards: dict[str, list[dict[str, Any]]],
    *,
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    features: pd.DataFrame,
    folds: list[Fold],
    settings: PipelineSettings,
    timeframe: str,
    labels: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Per model: metrics per fold, overall metrics, strategy KPIs and forecast statistics over
    the folds it predicted; the ensemble's lift; the trial set every DSR is deflated by.

    ``candles``/``features`` may hold the whole universe: strategies trade the predicted
    (traded) symbols only."""
    traded = set()
    for frame in predictions.values():
        if len(frame):
            traded |= set(frame["symbol"].astype(str).unique())
    candles = candles[candles["symbol"].astype(str).isin(traded)].reset_index(drop=True)
    funding = funding[funding["symbol"].astype(str).isin(traded)].reset_index(drop=True)
    features = features[features["symbol"].astype(str).isin(traded)].reset_index(drop=True)
    engine, engine_info = engine_predictions(predictions, candles, settings, timeframe)
    predictions = {**predictions, "engine": engine}
    cards = {**cards, "engine": [{"status": "trained", "n_trials": 1}]}
    n_trials = configurations_tried(cards)
    per_fold: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    for name, preds in predictions.items():
        training = training_folds(cards.get(name, []), folds)
        if preds.empty:
            reasons = sorted({c.get("reason") for c in cards.get(name, []) if c.get("reason")})
            models[name] = {"available": False, "reasons": reasons, "training": training}
            continue
        covered = []
        for fold in folds:
            part = _in(preds, fold.test_start, fold.test_end)
            if part.empty:
                continue
            covered.append(fold)
            per_fold.append({"model": name, "fold": fold.key, **classification_metrics(part)})
        start = min(f.test_start for f in covered)
        end = max(f.test_end for f in covered)
        log.info("model comparison: backtesting %s over [%s, %s)", name, start, end)
        models[name] = {
            "available": True,
            "folds": [f.key for f in covered],
            "training": training,  # the folds it trained on, and their training windows
            "span": [start.isoformat(), end.isoformat()],
            "metrics": classification_metrics(preds),
            "strategy": strategy_kpis(
                preds, candles, funding, features, start, end, settings, timeframe, n_trials, labels
            ),
        }
    available = [m for m in models.values() if m.get("available")]
    trials = trial_set(settings, [m["strategy"].get("sharpe") for m in available])
    for m in available:
        daily = m["strategy"].pop("_daily")
        deflated = deflate(daily, trials)
        m["strategy"]["psr"], m["strategy"]["dsr"] = deflated["psr"], deflated["dsr"]
        m["strategy"]["dsr_trials"] = deflated["dsr_trials"]
    lift = ensemble_lift(
        predictions,
        settings.ensemble.base_models,
        candles=candles,
        funding=funding,
        features=features,
        settings=settings,
        timeframe=timeframe,
        n_trials=n_trials,
    )
    if not engine_info["available"]:
        models["engine"] = {"available": False, "reasons": [engine_info["reason"]]}
    return {
        "configurations_tried": trials["n_trials"],
        "trials": trials,
        "prediction_engine": engine_info,
        "models": models,
        "per_fold": per_fold,
        "ensemble_lift": lift,
    }


def ensemble_lift(
    predictions: dict[str, pd.DataFrame],
    base_models: tuple[str, ...],
    *,
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    features: pd.DataFrame,
    settings: PipelineSettings,
    timeframe: str,
    n_trials: int,
) -> dict[str, Any]:
    """Ensemble minus its best base model, on exactly the rows (and span) the ensemble predicted."""
    ens = predictions.get("ensemble")
    if ens is None or ens.empty:
        return {"available": False, "reason": "the ensemble made no predictions"}
    keys = ens[["timestamp", "symbol"]]
    start, end = ens["timestamp"].min(), ens["timestamp"].max() + pd.Timedelta(timeframe)
    rows: dict[str, Any] = {}
    for name in ("ensemble", *base_models):
        preds = predictions.get(name)
        if preds is None or preds.empty:
            continue
        same = preds.merge(keys, on=["timestamp", "symbol"]) if name != "ensemble" else ens
        kpis = strategy_kpis(
            same, candles, funding, features, start, end, settings, timeframe, n_trials
        )
        kpis.pop("_daily")
        rows[name] = {**classification_metrics(same), "strategy": kpis}
    bases = [b for b in base_models if b in rows and rows[b]["accuracy"] is not None]
    if not bases:
        return {"available": False, "reason": "no base model predicted the ensemble's rows"}
    best = max(bases, key=lambda b: rows[b]["accuracy"])
    e = rows["ensemble"]

    def diff(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else float(a - b)

    best_sharpe = max(
        (rows[b]["strategy"]["sharpe"] for b in bases if rows[b]["strategy"]["sharpe"] is not None),
        default=None,
    )
    return {
        "available": True,
        "span": [start.isoformat(), end.isoformat()],
        "best_base_by_accuracy": best,
        "accuracy_lift": diff(e["accuracy"], rows[best]["accuracy"]),
        "macro_f1_lift": diff(e["macro_f1"], rows[best]["macro_f1"]),
        "log_loss_change": diff(e["log_loss"], rows[best]["log_loss"]),
        "sharpe_lift_vs_best_base_sharpe": diff(e["strategy"]["sharpe"], best_sharpe),
        "rows": rows,
        "n": len(ens),
    }


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """A compact forecast-first table (asset metadata, README)."""
    lines = [
        "| model | folds | trained on | rank IC | rank-IC t | IC | hit rate | net Sharpe "
        "| Sharpe by year | break-even fee | trades | DSR | accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: Any, pct: bool = False, digits: int = 3) -> str:
        if v is None or (isinstance(v, float) and not np.isfinite(v)):
            return "n/a"
        return f"{v:.{max(digits - 1, 0)}%}" if pct else f"{v:.{digits}f}"

    for name, m in comparison["models"].items():
        if not m["available"]:
            why = "; ".join(m["reasons"])[:120]
            lines.append(f"| {name} | - | unavailable: {why} ||||||||||| ")
            continue
        met, st = m["metrics"], m["strategy"]
        fc = st.get("forecast") or {}
        years = ", ".join(
            f"{y}: {f(v, digits=2)}" for y, v in (st.get("sharpe_by_year") or {}).items()
        )
        cells = [
            name,
            str(len(m["folds"])),
            (m.get("training") or {}).get("summary", "n/a"),
            f(fc.get("rank_ic")),
            f(fc.get("rank_ic_t"), digits=2),
            f(fc.get("ic")),
            f(fc.get("hit_rate"), True),
            f(st["sharpe"], digits=2),
            years or "n/a",
            f(st.get("break_even_taker_fee"), True, 4),
            str(st.get("n_trades")),
            f(st["dsr"]),
            f(met["accuracy"], True),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


ENGINE_MEMBERS = {"transformer": "net", "gbm": "proba", "lstm_cnn": "net"}


def _windowed_accuracy(
    preds: pd.DataFrame, *, horizon: int, recent: int, prior: int, timeframe: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per row (``preds`` sorted by symbol, then time): the hit rate of the last ``recent`` and of
    the ``prior`` before them among the predictions whose labels had matured by the row (label
    horizon passed). NaN until ``recent + prior`` such outcomes exist (unknown: model stays on)."""
    n = len(preds)
    acc_recent, acc_prior = np.full(n, np.nan), np.full(n, np.nan)
    bar = pd.Timedelta(timeframe).value
    ts = pd.DatetimeIndex(preds["timestamp"].astype("datetime64[ns, UTC]")).asi8
    label = preds["label"].to_numpy(dtype=np.float64)
    known = np.isfinite(label)
    hit = np.where(known, preds["signal"].to_numpy(dtype=np.float64) == label, 0.0)
    sym = preds["symbol"].astype(str).to_numpy()
    for symbol in np.unique(sym):
        idx = np.flatnonzero(sym == symbol)
        t = ts[idx]
        k = np.concatenate([[0], np.cumsum(known[idx])])
        h = np.concatenate([[0.0], np.cumsum(hit[idx])])
        matured = np.searchsorted(t + horizon * bar, t, side="right")
        cnt = k[matured]
        full = cnt >= recent + prior
        lo_r = np.searchsorted(k, np.maximum(cnt - recent, 0), side="left")
        lo_p = np.searchsorted(k, np.maximum(cnt - recent - prior, 0), side="left")
        acc_recent[idx] = np.where(full, (h[matured] - h[lo_r]) / recent, np.nan)
        acc_prior[idx] = np.where(full, (h[lo_r] - h[lo_p]) / prior, np.nan)
    return acc_recent, acc_prior


def engine_predictions(
    predictions: dict[str, pd.DataFrame],
    candles: pd.DataFrame,
    settings: PipelineSettings,
    timeframe: str,
    *,
    regime_window: int = 168,
    regime_accuracy_window: int = 100,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The spec's MLPredictionEngine over the zoo's probability models, row by row, with the risk
    layer's rules: a member whose tracked accuracy degraded (recent 50 < 0.9 x prior 150, matured
    outcomes only) is switched off; each member is weighted by its recent accuracy in the row's
    market regime (``detect_regime``, causal; its overall recent accuracy where it has no history
    in that regime yet); confidence-weighted probabilities are combined and
    the confidence is scaled by the ensemble's agreement (disagreement reduces size)."""
    from cryptoml_pipeline.modeling.ensemble import recent_accuracy
    from cryptoml_pipeline.modeling.predictions import conform, empty_predictions
    from cryptoml_pipeline.strategy.members import combine_expected
    from cryptoml_pipeline.strategy.risk import detect_regime, disagreement_multiplier

    members = {
        m: kind
        for m, kind in ENGINE_MEMBERS.items()
        if m in predictions
        and len(predictions[m])
        and np.isfinite(predictions[m]["expected_return"].to_numpy(dtype=np.float64)).any()
    }
    if len(members) < 2:
        return empty_predictions(), {
            "available": False,
            "reason": f"fewer than two models with expected returns: {sorted(members)}",
        }
    keys = None
    for m in members:
        k = predictions[m][["timestamp", "symbol"]]
        keys = k if keys is None else keys.merge(k, on=["timestamp", "symbol"])
    assert keys is not None
    keys = keys.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)
    frames = {
        m: keys.merge(predictions[m], on=["timestamp", "symbol"], how="left") for m in members
    }
    # causal regime of each row from its symbol's closes
    regimes = []
    for symbol, grp in candles.sort_values(["symbol", "timestamp"]).groupby("symbol"):
        close = grp.set_index("timestamp")["close"]
        reg = detect_regime(close, window=regime_window)
        regimes.append(
            pd.DataFrame(
                {
                    "timestamp": close.index.astype("datetime64[ns, UTC]"),
                    "symbol": str(symbol),
                    "regime": np.asarray(reg, dtype=object),
                }
            )
        )
    regime = keys.merge(pd.concat(regimes), on=["timestamp", "symbol"], how="left")["regime"]
    regime = regime.fillna("range").astype(str).to_numpy()
    horizon = settings.target.reach
    rt = settings.retrain
    weights, switched_off = {}, {}
    for m, frame in list(frames.items()):
        # skill = the sign of the expected return against the sign of the realised class
        frame = frame.assign(
            signal=np.sign(frame["expected_return"].to_numpy(np.float64)),
            label=np.sign(frame["label"].to_numpy(np.float64)),
        )
        recent, prior = _windowed_accuracy(
            frame,
            horizon=horizon,
            recent=rt.recent_window,
            prior=rt.prior_window,
            timeframe=timeframe,
        )
        with np.errstate(invalid="ignore"):
            off = recent < settings.risk.degraded_accuracy_ratio * prior
        keyed = frame.assign(symbol=frame["symbol"].astype(str) + "|" + regime)
        order = np.lexsort((keyed["timestamp"].to_numpy(), keyed["symbol"].to_numpy()))
        acc = np.full(len(frame), np.nan)
        acc[order] = recent_accuracy(
            keyed.iloc[order].reset_index(drop=True),
            horizon=horizon,
            window=regime_accuracy_window,
            timeframe=timeframe,
        )
        # a regime the member has too little history in falls back to its overall recent accuracy
        overall = recent_accuracy(
            frame, horizon=horizon, window=regime_accuracy_window, timeframe=timeframe
        )
        acc = np.where(np.isnan(acc), overall, acc)
        weights[m] = np.where(off, 0.0, np.nan_to_num(acc, nan=1.0))
        switched_off[m] = float(np.mean(off))
    expected, confidence, agreement = combine_expected(
        {m: f["expected_return"].to_numpy(dtype=np.float64) for m, f in frames.items()},
        {m: f["confidence"].to_numpy(dtype=np.float64) for m, f in frames.items()},
        weights,
    )
    base = frames[next(iter(frames))]
    # every member switched off on a row: hold (no trade)
    all_off = np.all(np.stack([weights[m] for m in frames]) == 0, axis=0)
    expected = np.where(all_off, 0.0, expected)
    confidence = np.where(
        all_off,
        0.0,
        confidence * disagreement_multiplier(agreement, settings.risk.disagreement_floor),
    )
    raw = keys.assign(
        fold=base["fold"].to_numpy(),
        expected_return=expected,
        confidence=confidence,
        label=base["label"].to_numpy(),
    )
    preds = conform(raw, labels=settings.labels)
    preds = preds.sort_values(["timestamp", "symbol"], kind="stable").reset_index(drop=True)
    info = {
        "available": True,
        "members": members,
        "combination": "expected returns weighted by recent sign skill x confidence, per regime",
        "share_of_rows_switched_off": switched_off,
        "mean_agreement": float(np.mean(agreement)),
        "share_of_rows_all_off": float(np.mean(all_off)),
        "regime_share": {r: float(np.mean(regime == r)) for r in np.unique(regime)},
    }
    return preds, info


def headline_deflation(
    equity: pd.DataFrame, initial_equity: float, trials: dict[str, Any]
) -> dict[str, Any]:
    """The strategy's ``psr``, ``dsr``, ``dsr_trials``, ``dsr_trial_sharpe_var`` against the
    run's one trial set (the models section uses the same): ``equity`` is the evaluation's
    equity frame (``timestamp`` + a ``strategy`` column)."""
    curve = equity.set_index("timestamp")["strategy"].dropna()
    out = deflate(daily_returns(curve, initial_equity=initial_equity), trials)
    out["dsr_trials"] = int(out["dsr_trials"])
    return out
