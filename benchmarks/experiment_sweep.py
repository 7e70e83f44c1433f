"""Wall time of a sweep and how it splits: `cryptoml experiment --grid examples/grids/quick.yaml`
on the default data, one partition after another on this machine.

    python benchmarks/experiment_sweep.py [--grid FILE] [--output-dir DIR] [--output FILE]
    python benchmarks/experiment_sweep.py --log SWEEP.log --leaderboard DIR/leaderboard.json

The first form runs the sweep (fresh ``$DAGSTER_HOME`` under the output directory) and records
its progress lines; the second summarises an existing run's log. Writes
``benchmarks/results/experiment_quick.json``: the wall time, the time before the first partition
(validation + the shared prepare_job), trained vs reused partitions (mean seconds per walk-forward
fold and per CPCV split), the leaderboard step, and the leaderboard's summary (pick, PBO, DSR).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROGRESS = re.compile(r"\[cryptoml\] (\d+)/(\d+) (\S+) (\S+) \(([\d.]+) s, (\d+) s total\)")
WALL = re.compile(r"wall time: (\d+) s")


def summarise(log: str, leaderboard: dict, configurations: list[dict]) -> dict:
    rows = [m.groups() for m in map(PROGRESS.match, log.splitlines()) if m]
    wall = WALL.search(log)
    fingerprint = {c["partition"]: c["fingerprint"] for c in configurations}
    # the first partition of a (training fingerprint, split) trains; the others reuse it
    seen: set[tuple[str, str]] = set()
    reused_status: dict[bool, list[tuple[str, float]]] = {True: [], False: []}
    for _, _, partition, split, seconds, _ in rows:
        key = (fingerprint.get(partition, partition), split)
        reused_status[key in seen].append((split, float(seconds)))
        seen.add(key)

    def stats(items: list[tuple[str, float]]) -> dict:
        wf = [s for k, s in items if k.startswith("wf")]
        cp = [s for k, s in items if k.startswith("cpcv")]
        return {
            "n": len(items),
            "seconds": round(sum(s for _, s in items), 1),
            "mean_wf_s": round(statistics.mean(wf), 2) if wf else None,
            "mean_cpcv_s": round(statistics.mean(cp), 2) if cp else None,
        }

    first = float(rows[0][5]) - float(rows[0][4]) if rows else None
    last = float(rows[-1][5]) if rows else None
    total = int(wall.group(1)) if wall else None
    return {
        "wall_s": total,
        "before_first_partition_s": round(first, 1) if first is not None else None,
        "partitions": len(rows),
        "trained": stats(reused_status[False]),
        "reused": stats(reused_status[True]),
        "leaderboard_s": (total - last) if total is not None and last is not None else None,
        "summary": {
            k: leaderboard["summary"].get(k)
            for k in (
                "n_configurations",
                "selection_rule",
                "selected",
                "selected_value",
                "pbo",
                "dsr",
                "psr",
                "dsr_trials",
                "selected_path_ranks",
            )
        },
        "configurations": [
            {
                k: r.get(k)
                for k in (
                    "name",
                    "status",
                    "walk_forward_net_sharpe",
                    "rank_ic",
                    "rank_ic_t",
                    "turnover",
                    "break_even_taker_fee",
                    "n_trades",
                    "cpcv_path_sharpe_quantiles",
                )
            }
            for r in leaderboard["configurations"]
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="examples/grids/quick.yaml")
    parser.add_argument("--output-dir", default="/tmp/cryptoml_sweep_bench")
    parser.add_argument("--output", default="benchmarks/results/experiment_quick.json")
    parser.add_argument("--log", help="summarise this sweep log instead of running one")
    parser.add_argument("--leaderboard", help="the leaderboard.json of that log's sweep")
    args = parser.parse_args(argv)
    if args.log:
        log = Path(args.log).read_text()
        board_path = Path(args.leaderboard)
    else:
        out = Path(args.output_dir)
        env = os.environ | {"DAGSTER_HOME": str(out / "dagster_home")}
        (out / "dagster_home").mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        command = ["experiment", "--grid", args.grid, "--output-dir", str(out)]
        proc = subprocess.run(
            [sys.executable, "-m", "cryptoml_pipeline.cli", *command],
            capture_output=True,
            text=True,
            env=env,
        )
        log = proc.stderr + proc.stdout
        if proc.returncode != 0:
            print(log[-3000:], file=sys.stderr)
            return proc.returncode
        print(f"sweep took {time.monotonic() - started:.0f} s", file=sys.stderr)
        board_path = out / "experiments" / Path(args.grid).stem / "leaderboard.json"
    board = json.loads(board_path.read_text())
    configurations = json.loads((board_path.parent / "configurations.json").read_text())
    result = summarise(log, board, configurations) | {
        "grid": args.grid,
        "machine": f"{os.cpu_count()} cores",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("wall_s", "partitions", "trained", "reused")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
