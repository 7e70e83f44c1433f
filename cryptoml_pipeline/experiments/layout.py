"""Where a sweep keeps its files: ``OUTPUT/experiments/<grid name>/``.

* ``grid.yaml`` — the grid file as it was run;
* ``configurations.json`` — every configuration's name, parameters, partition key and training
  fingerprint;
* ``trainings/<fingerprint>/<split>.parquet`` — one split's test predictions (shared by every
  configuration with that fingerprint), or ``<split>.error.json`` when the training failed;
* ``leaderboard.json`` / ``leaderboard.html`` / ``selected.yaml`` — the results.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

CONFIGURATION_SEPARATOR = "+"


def configuration_partition(grid_name: str, configuration: str) -> str:
    return f"{grid_name}{CONFIGURATION_SEPARATOR}{configuration}"


def split_partition_key(key: str) -> tuple[str, str]:
    """``(grid name, configuration name)`` of a configuration partition key."""
    grid, sep, name = key.partition(CONFIGURATION_SEPARATOR)
    if not sep:
        raise ValueError(f"not a sweep configuration key: {key!r}")
    return grid, name


def atomic_write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class SweepLayout:
    root: Path  # OUTPUT/experiments/<grid name>

    @classmethod
    def of(cls, output_dir: Path | str, grid_name: str) -> SweepLayout:
        return cls(Path(output_dir) / "experiments" / grid_name)

    def training(self, fingerprint: str, split: str) -> Path:
        return self.root / "trainings" / fingerprint / f"{split}.parquet"

    def training_error(self, fingerprint: str, split: str) -> Path:
        return self.root / "trainings" / fingerprint / f"{split}.error.json"

    @property
    def configurations(self) -> Path:
        return self.root / "configurations.json"

    @property
    def selected(self) -> Path:
        return self.root / "selected.yaml"

    def write_predictions(self, fingerprint: str, split: str, frame: pd.DataFrame) -> Path:
        path = self.training(fingerprint, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        self.training_error(fingerprint, split).unlink(missing_ok=True)
        return path

    def write_error(self, fingerprint: str, split: str, error: str) -> Path:
        return atomic_write_text(
            self.training_error(fingerprint, split), json.dumps({"error": error})
        )

    def read_split(self, fingerprint: str, split: str) -> pd.DataFrame | str | None:
        """The split's predictions, its error message, or None when it has not run."""
        path = self.training(fingerprint, split)
        if path.is_file():
            frame = pd.read_parquet(path)
            frame["timestamp"] = frame["timestamp"].astype("datetime64[ns, UTC]")
            return frame
        err = self.training_error(fingerprint, split)
        if err.is_file():
            return str(json.loads(err.read_text()).get("error"))
        return None

    def write_configurations(self, rows: list[dict[str, Any]]) -> Path:
        return atomic_write_text(self.configurations, json.dumps(rows, indent=2, default=str))
