"""The pipeline's artifact store (no Dagster): every artifact is stored as parquet, JSON or
weights + JSON — never pickled (:class:`defs.io_manager.ArtifactIOManager` writes through it).

Layout: ``<base_dir>/assets/<asset key>[/<partition key>]`` + a suffix chosen by the value's type:

* ``pandas.DataFrame``          -> ``.parquet``
* a zoo model's :class:`~cryptoml_pipeline.modeling.models.Fitted` -> directory written by
  ``ZOO[name].save``: ``model.pt`` (state_dict) or ``gbm.txt`` (LightGBM text) +
  ``manifest.json``, loaded back by the zoo model its manifest names
* ``dict`` holding DataFrames   -> directory "bundle": one parquet per frame + ``bundle.json``
* JSON-able ``dict`` / ``list``  -> ``.json``

Loading looks at what is on disk, so the format never needs to be declared twice. A non-partitioned
asset that depends on a partitioned one receives ``{partition_key: value}``.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from cryptoml_pipeline.modeling.importance import IMPORTANCE_COLUMNS
from cryptoml_pipeline.modeling.models import ZOO, Fitted, load_saved

_BUNDLE_INDEX = "bundle.json"
FEATURE_IMPORTANCE_ASSET = "feature_importance"  # the asset key (defs.assets.importance)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _replace_dir(tmp_dir: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp_dir, final)


def write_value(stem: Path, value: Any) -> Path:
    """Store ``value`` under ``stem`` (no suffix); returns the path written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(value, pd.DataFrame):
        path = stem.with_suffix(".parquet")
        _atomic_write_parquet(path, value)
        return path
    if isinstance(value, Fitted):
        tmp = Path(tempfile.mkdtemp(dir=stem.parent, prefix=f".{stem.name}."))
        ZOO[str(value.name)].save(value, tmp)
        _replace_dir(tmp, stem)
        return stem
    if isinstance(value, dict) and any(isinstance(v, pd.DataFrame) for v in value.values()):
        tmp = Path(tempfile.mkdtemp(dir=stem.parent, prefix=f".{stem.name}."))
        frames = [k for k, v in value.items() if isinstance(v, pd.DataFrame)]
        for key in frames:
            value[key].to_parquet(tmp / f"{key}.parquet", index=False)
        rest = {k: v for k, v in value.items() if k not in frames}
        (tmp / _BUNDLE_INDEX).write_text(
            json.dumps({"frames": frames, "values": rest}, default=str)
        )
        _replace_dir(tmp, stem)
        return stem
    if isinstance(value, dict | list):
        path = stem.with_suffix(".json")
        _atomic_write_text(path, json.dumps(value, indent=2, default=str))
        return path
    raise TypeError(
        f"cannot store a {type(value).__name__} at {stem}: return a DataFrame, a zoo model's "
        "Fitted, or a JSON-able dict/list"
    )


def read_value(stem: Path) -> Any:
    """Load what :func:`write_value` stored under ``stem``."""
    if stem.with_suffix(".parquet").exists():
        return pd.read_parquet(stem.with_suffix(".parquet"))
    if stem.with_suffix(".json").exists():
        return json.loads(stem.with_suffix(".json").read_text())
    if (stem / _BUNDLE_INDEX).exists():
        index = json.loads((stem / _BUNDLE_INDEX).read_text())
        out: dict[str, Any] = dict(index["values"])
        for key in index["frames"]:
            out[key] = pd.read_parquet(stem / f"{key}.parquet")
        return out
    if (stem / "manifest.json").exists():
        return load_saved(stem)
    raise FileNotFoundError(f"no stored artifact at {stem} (materialize the upstream asset first)")


def read_partitions(stems: dict[str, Path]) -> dict[str, Any]:
    """``{key: read_value(stem)}`` without failing on one: a partition that cannot be loaded
    maps to the exception raised (``FileNotFoundError`` when nothing is stored)."""
    out: dict[str, Any] = {}
    for key, stem in stems.items():
        try:
            out[key] = read_value(stem)
        except Exception as exc:  # a corrupt artifact must not take the reader down
            out[key] = exc
    return out


def importance_tables(
    values: dict[str, Any], fold_keys: list[str]
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Sort loaded ``feature_importance`` partitions (``{fold: table or the exception its load
    raised}``, see :func:`read_partitions`) into ``({fold: table}, {fold: why it is missing})``:
    a fold with no stored table, an unreadable one or one missing ``IMPORTANCE_COLUMNS`` is
    listed as missing with the reason."""
    found: dict[str, pd.DataFrame] = {}
    missing: dict[str, str] = {}
    for key in fold_keys:
        table = values.get(key, FileNotFoundError(key))
        if isinstance(table, FileNotFoundError):
            missing[key] = "feature_importance partition not materialized (run train_folds_job)"
        elif isinstance(table, Exception):
            missing[key] = f"unreadable: {type(table).__name__}: {table}"
        elif not isinstance(table, pd.DataFrame) or not set(IMPORTANCE_COLUMNS) <= set(table):
            missing[key] = "stored value is not an importance table"
        else:
            found[key] = table
    return found, missing


def load_importance_partitions(
    base_dir: str | Path, fold_keys: list[str]
) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Read the stored ``feature_importance`` fold partitions without failing on a missing one
    (outside the Dagster graph: the dashboard; inside it they reach ``backtest_report`` through
    the IO manager).

    Returns ``({fold: table}, {fold: why it is missing})`` (:func:`importance_tables`). Reads
    where ``ArtifactIOManager`` (``base_dir``/assets/feature_importance/<fold>) writes.
    """
    root = Path(base_dir, "assets", FEATURE_IMPORTANCE_ASSET)
    return importance_tables(read_partitions({k: root / k for k in fold_keys}), fold_keys)
