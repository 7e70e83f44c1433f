"""Where data, output and the Dagster home live by default (no Dagster imports)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR_ENV = "CRYPTOML_DATA_DIR"
SYNTHETIC_WARNING = (
    "NO MARKET DATA FOUND (no --data-dir, no $CRYPTOML_DATA_DIR, no ./data, no ../shared/data): "
    "running on a SYNTHETIC market. Results say nothing about real markets."
)


@dataclass(frozen=True)
class DataLocation:
    kind: Literal["parquet", "synthetic"]
    path: Path | None
    reason: str


def has_market_data(path: Path) -> bool:
    """True when ``path`` holds the parquet layout (``market/*.parquet``)."""
    return (path / "market").is_dir() and any((path / "market").glob("*.parquet"))


def resolve_data_location(
    explicit: str | Path | None = None, cwd: Path | None = None
) -> DataLocation:
    """The data-source rule: --data-dir, else $CRYPTOML_DATA_DIR, else ./data when it holds data,
    else ../shared/data when present, else synthetic (with a loud warning).

    An explicit directory (argument or environment variable) that does not exist is an error the
    caller reports; it is returned as-is so the caller can name it.
    """
    cwd = cwd or Path.cwd()
    if explicit:
        return DataLocation("parquet", Path(explicit).expanduser(), "--data-dir")
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return DataLocation("parquet", Path(env).expanduser(), f"${DATA_DIR_ENV}")
    for candidate, reason in (
        (cwd / "data", "./data"),
        (cwd.parent / "shared" / "data", "../shared/data"),
        (REPO_ROOT.parent / "shared" / "data", "../shared/data (next to the repository)"),
    ):
        if has_market_data(candidate):
            return DataLocation("parquet", candidate.resolve(), reason)
    log.warning(SYNTHETIC_WARNING)
    return DataLocation("synthetic", None, "no data found")
