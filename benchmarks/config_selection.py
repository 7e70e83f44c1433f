"""How the default configuration was chosen: walk-forward over the development data, every
configuration of a small declared grid, the same folds, costs always on.

The selection rule is declared here, before the sweep: the configuration with the best
walk-forward NET Sharpe of the strategy (LightGBM pooled over the universe, traded on the
perpetuals, the pipeline's own decision rule), among those whose rank-IC t is positive. Every
configuration's Sharpe is recorded, so the deflated Sharpe of the pick can count them all
(``controls.n_trials`` / ``controls.trial_sharpes`` in ``cryptoml_pipeline/defaults``).

    python benchmarks/config_selection.py [--data-dir DIR] [--output FILE] [--end DATE]

Writes ``benchmarks/results/config_selection.json`` (every configuration's rank IC, t, net
Sharpe, trades, break-even fee) and prints the table. Uses the pipeline's domain functions only
(the same loader, features, targets, folds, model, decisions and simulator as ``cryptoml run``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import pandas as pd

from cryptoml_pipeline.defs.resources import MarketDataResource
from cryptoml_pipeline.evaluation import simulation_options
from cryptoml_pipeline.features import build_features
from cryptoml_pipeline.locations import resolve_data_location
from cryptoml_pipeline.modeling.folds import walk_forward_folds
from cryptoml_pipeline.modeling.gbm import predict_gbm_fold, train_gbm_fold
from cryptoml_pipeline.modeling.labels import make_labels
from cryptoml_pipeline.settings import PipelineSettings, apply_overrides, profile_settings
from cryptoml_pipeline.trading.backtest import simulate
from cryptoml_pipeline.trading.break_even import break_even_taker_fee
from cryptoml_pipeline.trading.engine import decisions_from_predictions
from cryptoml_pipeline.trading.forecast_section import forecast_stats, scored_predictions
from cryptoml_pipeline.trading.metrics import compute_kpis

GRID = {
    "target.kind": ["vol_scaled_return", "triple_barrier"],
    "target.horizon": [8, 24],
    "walk_forward.expanding": [False, True],
}
FIXED = {"tuning": {"n_trials": 0}}


def overrides_of(combo: dict[str, object]) -> dict:
    out: dict = {}
    for path, value in combo.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def evaluate(
    settings: PipelineSettings,
    candles: pd.DataFrame,
    funding: pd.DataFrame,
    feats: pd.DataFrame,
    traded: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> dict:
    tf = settings.data.timeframe
    labels = make_labels(candles, settings.target, settings.labels, timeframe=tf)
    history = pd.Timedelta(days=settings.data.training_history_days)
    folds = [
        f
        for f in walk_forward_folds(start - history, end, settings.walk_forward, timeframe=tf)
        if f.test_start >= start
    ]
    parts = []
    for fold in folds:
        model = train_gbm_fold(feats, labels, fold, settings, tf)
        parts.append(predict_gbm_fold(model, feats, labels, fold, settings, tf, traded=traded))
    preds = pd.concat(parts, ignore_index=True)
    span0, span1 = folds[0].test_start, folds[-1].test_end
    inside = lambda f: f[(f["timestamp"] >= span0) & (f["timestamp"] < span1)]  # noqa: E731
    tc = inside(candles[candles["symbol"].isin(traded)])
    tfund = inside(funding)
    common, columns, returns_by_class, kpi_opts = simulation_options(settings, tf)
    tfeat = feats[feats["symbol"].isin(traded)]
    decisions = decisions_from_predictions(
        preds, tfeat, timeframe=tf, returns_by_class=returns_by_class, **columns
    )
    result = simulate(tc, tfund, decisions, **common)
    kpis = compute_kpis(result, preds, **(kpi_opts | {"bootstrap_samples": 0}))
    fc = forecast_stats(
        scored_predictions(preds, labels),
        horizon=settings.target.horizon,
        timeframe=tf,
        with_folds=False,
    )
    be = break_even_taker_fee(
        tc, tfund, decisions, result, costs=settings.costs, slippage=settings.slippage, timeframe=tf
    )
    return {
        "folds": len(folds),
        "span": [span0.isoformat(), span1.isoformat()],
        "rank_ic": fc["rank_ic"],
        "rank_ic_t": fc["rank_ic_t"],
        "ic": fc["ic"],
        "hit_rate": fc["hit_rate"],
        "net_sharpe": kpis["sharpe"],
        "total_return": kpis["total_return"],
        "n_trades": kpis["n_trades"],
        "turnover": kpis["turnover"],
        "break_even_taker_fee": be.get("break_even_taker_fee"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--end", help="end of the development data (default: all of it)")
    parser.add_argument("--output", default="benchmarks/results/config_selection.json")
    parser.add_argument("--training-history-days", type=int, default=None)
    args = parser.parse_args(argv)
    location = resolve_data_location(args.data_dir)
    if location.kind != "parquet" or location.path is None:
        print("config selection needs real data (../shared/data or --data-dir)", file=sys.stderr)
        return 2
    base = profile_settings("demo")
    if args.end:
        base = base.model_copy(update={"data": base.data.model_copy(update={"end": args.end})})
    if args.training_history_days is not None:
        data_cfg = base.data.model_copy(
            update={"training_history_days": args.training_history_days}
        )
        base = base.model_copy(update={"data": data_cfg})
    market = MarketDataResource(kind="parquet", data_dir=str(location.path))
    data = market.load(base)
    tf = base.data.timeframe
    traded = list(data.traded_symbols)
    feats = build_features(data.candles, data.funding, base.features, timeframe=tf).table
    print(
        f"data: {len(traded)} traded, {len(data.universe_symbols)} universe, "
        f"[{data.start}, {data.end}), {len(feats)} feature rows",
        file=sys.stderr,
    )
    rows = []
    keys = list(GRID)
    for values in itertools.product(*(GRID[k] for k in keys)):
        combo = dict(zip(keys, values, strict=True))
        settings = apply_overrides(base, FIXED | overrides_of(combo))
        started = time.perf_counter()
        try:
            stats = evaluate(
                settings, data.candles, data.funding, feats, traded, data.start, data.end
            )
            status = "ok"
        except Exception as exc:  # a failed configuration stays in the table with its error
            stats, status = {}, f"failed: {exc}"
        row = {"config": combo, "status": status, "seconds": time.perf_counter() - started}
        rows.append(row | stats)
        print(json.dumps(row | stats, default=str), file=sys.stderr)
    ok = [r for r in rows if r["status"] == "ok" and r["net_sharpe"] is not None]
    eligible = [r for r in ok if (r["rank_ic_t"] or 0) > 0] or ok
    pick = max(eligible, key=lambda r: r["net_sharpe"]) if eligible else None
    sharpes = [r["net_sharpe"] for r in ok]
    out = {
        "selection_rule": "best walk-forward net Sharpe among configurations with rank-IC t > 0",
        "grid": GRID,
        "fixed": FIXED,
        "data": {
            "traded": traded,
            "universe": list(data.universe_symbols),
            "start": str(data.start),
            "end": str(data.end),
        },
        "n_configurations": len(rows),
        "sharpe_spread": [min(sharpes), max(sharpes)] if sharpes else None,
        "trial_sharpes": sharpes,
        "selected": pick["config"] if pick else None,
        "configurations": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps({k: out[k] for k in ("n_configurations", "sharpe_spread", "selected")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
