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

from cryptoml_pipeline.defs.resources import MarketDataResource
from cryptoml_pipeline.experiments.study import study_configuration
from cryptoml_pipeline.features import build_features
from cryptoml_pipeline.locations import resolve_data_location
from cryptoml_pipeline.settings import apply_overrides, profile_settings

GRID = {
    "target.kind": ["vol_scaled_return", "triple_barrier"],
    "target.horizon": [8, 24],
    # rolling 180-day training windows, or expanding windows over two extra years of history
    "training": ["rolling", "expanding_history"],
}
TRAINING = {
    "rolling": {"walk_forward": {"expanding": False}, "data": {"training_history_days": 0}},
    "expanding_history": {
        "walk_forward": {"expanding": True},
        "data": {"training_history_days": 730},
    },
}
FIXED = {"tuning": {"n_trials": 0}}


def overrides_of(combo: dict[str, object]) -> dict:
    out: dict = {}
    for path, value in combo.items():
        if path == "training":
            for section, values in TRAINING[str(value)].items():
                out.setdefault(section, {}).update(values)
            continue
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--end", help="end of the development data (default: all of it)")
    parser.add_argument("--output", default="benchmarks/results/config_selection.json")
    args = parser.parse_args(argv)
    location = resolve_data_location(args.data_dir)
    if location.kind != "parquet" or location.path is None:
        print("config selection needs real data (../shared/data or --data-dir)", file=sys.stderr)
        return 2
    base = profile_settings("demo")
    if args.end:
        base = base.model_copy(update={"data": base.data.model_copy(update={"end": args.end})})
    # load the longest history any configuration trains on; each one uses its own part
    longest = max(v["data"]["training_history_days"] for v in TRAINING.values())
    loaded = base.model_copy(
        update={"data": base.data.model_copy(update={"training_history_days": longest})}
    )
    market = MarketDataResource(kind="parquet", data_dir=str(location.path))
    data = market.load(loaded)
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
            stats = study_configuration(
                settings,
                candles=data.candles,
                funding=data.funding,
                features=feats,
                traded=traded,
                start=data.start,
                end=data.end,
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
        "training": TRAINING,
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
