"""Compare two ``report.json`` files leaf by leaf: every numeric leaf equal within a relative
tolerance, every other leaf equal, the same keys on both sides.

Excluded: ``generated_at``, paths (keys ending in ``path``/``dir``/``file``/``url`` or string
values that look like absolute paths) and timings (keys containing ``seconds``, ``elapsed``,
``wall`` or ``duration``, ``_s`` suffixes). Exit 0 when equal, 1 with one line per difference.

    python scripts/compare_reports.py BEFORE/report.json AFTER/report.json [--rtol 1e-12]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

EXCLUDED_KEYS = {"generated_at"}
TIMING_PARTS = ("seconds", "elapsed", "wall", "duration", "timing", "samples_per_s")
PATH_SUFFIXES = ("path", "dir", "file", "url", "paths", "files")


def excluded(key: str) -> bool:
    k = key.lower()
    return (
        k in EXCLUDED_KEYS
        or any(p in k for p in TIMING_PARTS)
        or k.endswith(PATH_SUFFIXES)
        or k.endswith("_s")
    )


def looks_like_path(value: Any) -> bool:
    return isinstance(value, str) and (value.startswith("/") or value.startswith("file:"))


def numbers_equal(a: float, b: float, rtol: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= rtol * max(abs(a), abs(b)) or a == b


def compare(a: Any, b: Any, where: str, rtol: float, out: list[str]) -> int:
    """Append differences to ``out``; return the number of numeric leaves compared."""
    if isinstance(a, dict) and isinstance(b, dict):
        n = 0
        for key in sorted(set(a) | set(b), key=str):
            if excluded(str(key)):
                continue
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in {'after' if key not in a else 'before'}")
                continue
            n += compare(a[key], b[key], f"{where}.{key}", rtol, out)
        return n
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: length {len(a)} != {len(b)}")
            return 0
        return sum(
            compare(x, y, f"{where}[{i}]", rtol, out)
            for i, (x, y) in enumerate(zip(a, b, strict=True))
        )
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool):
        if not numbers_equal(float(a), float(b), rtol):
            out.append(f"{where}: {a!r} != {b!r}")
        return 1
    if looks_like_path(a) and looks_like_path(b):
        return 0
    if a != b:
        out.append(f"{where}: {a!r} != {b!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rtol", type=float, default=1e-12)
    args = parser.parse_args(argv)
    before = json.loads(args.before.read_text())
    after = json.loads(args.after.read_text())
    diffs: list[str] = []
    n = compare(before, after, "report", args.rtol, diffs)
    verdict = "EQUAL" if not diffs else f"{len(diffs)} DIFFERENCES"
    sys.stdout.write("".join(f"{line}\n" for line in diffs))
    sys.stdout.write(f"{verdict}: {n} numeric leaves compared (rtol {args.rtol:g})\n")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
