"""``kill -9`` trials of ``cryptoml live --execute`` against the exchange simulator ->
``benchmarks/results/live.json`` key ``kill_trials`` (the other keys are kept).

A never-killed reference run, then ``--trials`` runs (default 20), each SIGKILLed once at a
seeded random moment (alternately a random moment of the bar loop -- a delay after the first
poll, uniform within the reference's loop -- and right after the simulator accepted a random
order, before its answer reached the service), restarted with the same ``--run-name`` and let
run to the end of the simulated window: per trial the orders lost, sent twice, extra or
different against the reference (by client order id, side, quantity), the final positions and
the paper account's fills (see ``cryptoml_pipeline_tests/live_kill.py``).

The model: the test suite's LightGBM fixture (2 traded / 3-member synthetic universe) with the
trading settings of ``test_live_service._redeploy`` (it trades often).

    .venv/bin/python benchmarks/live_kill.py [--trials 20] [--bars 36] [--seed 20]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from cryptoml_pipeline_tests.live_kill import compare, plan_kills, run_once

RESULTS = Path(__file__).resolve().parent / "results" / "live.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--bars", type=int, default=36, help="simulated hours per run")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--workdir", help="default: a new temporary directory")
    args = parser.parse_args()
    from cryptoml_pipeline_tests.test_live_service import _redeploy
    from cryptoml_pipeline_tests.test_trading_realtime import build_deployed

    root = Path(args.workdir or tempfile.mkdtemp(prefix="live_kill_"))
    root.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    dep = build_deployed(root / "fixture")
    _redeploy(dep, "kill-a")
    reference = run_once(dep, root / "reference", args.bars)
    if reference.returncodes != [0] or not reference.orders:
        raise SystemExit(
            f"the reference run failed: {reference.returncodes}\n{reference.stderr_tail}"
        )
    print(
        f"reference: {len(reference.orders)} orders, {reference.seconds:.1f} s, "
        f"last executed bar {reference.executed_bar}",
        flush=True,
    )
    trials = []
    for k, kill in enumerate(plan_kills(args.trials, args.seed, reference)):
        got = run_once(
            dep,
            root / f"trial{k:02d}",
            args.bars,
            kill_after_s=kill.get("kill_after_s"),
            kill_at_order=kill.get("kill_at_order"),
        )
        row = {
            "trial": k,
            **kill,
            "orders_at_kill": got.killed_after_orders,
            "exit_codes": got.returncodes,
            **compare(reference, got),
            "seconds": round(got.seconds, 1),
        }
        trials.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "ids"}), flush=True)
    ok = [
        t
        for t in trials
        if t["lost"] == t["doubled"] == t["extra"] == t["different"] == 0
        and t["positions_equal"]
        and t["paper_fills_equal"]
        and t["finished"]
    ]
    result = {
        "what": "cryptoml live --execute against the exchange simulator (real subprocess, "
        "SIGKILL at a seeded random moment, restart with the same --run-name); orders compared "
        "with a never-killed reference run by client order id, side and quantity",
        "command": f"benchmarks/live_kill.py --trials {args.trials} --bars {args.bars} "
        f"--seed {args.seed}",
        "model": "test fixture: LightGBM, tiny profile, 2 traded / 3-member synthetic universe",
        "simulated_hours_per_run": args.bars,
        "reference_orders": len(reference.orders),
        "trials": len(trials),
        "trials_clean": len(ok),
        "orders_lost": sum(t["lost"] for t in trials),
        "orders_doubled": sum(t["doubled"] for t in trials),
        "orders_extra_or_different": sum(t["extra"] + t["different"] for t in trials),
        "kills_right_after_an_accepted_order": sum(t["mode"] == "order" for t in trials),
        "wall_seconds": round(time.monotonic() - t_start, 1),
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "per_trial": [{k: v for k, v in t.items() if k != "ids"} for t in trials],
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["kill_trials"] = result
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "per_trial"}, indent=2))
    bad = [t for t in trials if t not in ok]
    if bad:
        print(json.dumps([t["ids"] | {"trial": t["trial"]} for t in bad], indent=2))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
