"""The model a real-time signal is served from: the deployed model, or (on request) the latest
registry candidate, with the settings, universe and data source of the run that trained it.

Everything the signal needs comes from the model's manifest (written by
``defs/assets/deployment.candidate_model``): ``symbols`` (traded), ``universe`` (the pooled
training universe: the cross-asset features need every member's candles), ``timeframe``,
``settings`` (the run's full :class:`PipelineSettings`) and ``data`` (``source``,
``synthetic``, ``train_end`` = the end of the run's data window).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.models import ZOO, Fitted, ZooModel, load_saved
from cryptoml_pipeline.registry.candidates import load_verified
from cryptoml_pipeline.registry.db import DB_FILE, DB_URL_ENV, open_database
from cryptoml_pipeline.registry.deployment_store import deployed_dir
from cryptoml_pipeline.registry.model_registry import ModelRegistry
from cryptoml_pipeline.settings import PipelineSettings
from cryptoml_pipeline.timing import to_utc

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("symbols", "universe", "timeframe", "settings", "data", "feature_cols")


class NotDeployedError(InputError):
    """Nothing is deployed for trading (the message names the latest candidate and why)."""


@dataclass(frozen=True)
class ServedModel:
    model: Fitted
    settings: PipelineSettings
    timeframe: str
    symbols: tuple[str, ...]  # traded
    universe: tuple[str, ...]  # every member whose candles the features need (traded included)
    version: str
    deployed: bool
    reason: str | None  # a candidate's reason for not being deployed

    @property
    def manifest(self) -> dict[str, Any]:
        return self.model.manifest

    @property
    def zoo(self) -> ZooModel:
        """The zoo model that predicts with the served one."""
        return ZOO[str(self.model.name)]

    @property
    def synthetic(self) -> bool:
        return bool(self.manifest["data"].get("synthetic"))

    @property
    def data_end(self) -> pd.Timestamp | None:
        """End (exclusive) of the run's data window."""
        end = self.manifest["data"].get("train_end")
        return to_utc(end) if end else None

    @property
    def history_rows(self) -> int:
        """Feature rows before the predicted one that the model reads (GBM lags, sequence)."""
        return self.zoo.history_rows(self.model)


def served_from(model: Fitted, *, deployed: bool, reason: str | None) -> ServedModel:
    """Wrap a loaded model; raises :class:`InputError` when its manifest predates the serving
    fields (retrain with ``cryptoml run``)."""
    manifest = model.manifest
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise InputError(
            f"model {manifest.get('version')} has no {missing} in its manifest: retrain it with "
            "`cryptoml run`"
        )
    try:
        settings = PipelineSettings.model_validate(manifest["settings"])
    except ValidationError as exc:
        first = str(exc).splitlines()[:3]
        raise InputError(f"model manifest settings no longer validate: {' '.join(first)}") from None
    universe = tuple(dict.fromkeys([*manifest["universe"], *manifest["symbols"]]))
    return ServedModel(
        model=model,
        settings=settings,
        timeframe=str(manifest["timeframe"]),
        symbols=tuple(manifest["symbols"]),
        universe=universe,
        version=str(manifest.get("version")),
        deployed=deployed,
        reason=reason,
    )


def _registry(output_dir: Path) -> ModelRegistry | None:
    """The run's registry, or None when the output directory has none (never creates one)."""
    if not os.environ.get(DB_URL_ENV) and not (Path(output_dir) / DB_FILE).is_file():
        return None
    return ModelRegistry(open_database(output_dir))


@dataclass(frozen=True)
class ServedRef:
    """Which model is served, without loading its weights: ``path`` (the serving copy's
    directory) or ``registry_version`` (load it verified from the registry)."""

    version: str
    deployed: bool
    reason: str | None
    path: Path | None = None
    registry_version: str | None = None


def resolve_served(
    output_dir: Path, *, candidate: bool = False, registry: ModelRegistry | None = None
) -> ServedRef:
    """THE resolution of the served model (every consumer goes through it): the serving copy
    ``OUTPUT/models/deployed/``, else the registry's deployed version; with ``candidate`` the
    latest registry candidate instead. ``registry``: the registry to read (default: the output
    directory's, never created). Raises :class:`NotDeployedError` when nothing is deployed."""
    output_dir = Path(output_dir)
    directory = deployed_dir(output_dir)
    manifest_file = directory / "manifest.json"
    if not candidate and manifest_file.is_file():
        version = json.loads(manifest_file.read_text()).get("version")
        return ServedRef(version=str(version), deployed=True, reason=None, path=directory)
    registry = registry if registry is not None else _registry(output_dir)
    if not candidate and registry is not None:  # no serving copy: the registry's deployed one
        current = registry.deployed()
        if current is not None:
            return ServedRef(
                version=current.version,
                deployed=True,
                reason=None,
                registry_version=current.version,
            )
    candidates = registry.list_versions(stage="candidate") if registry is not None else []
    if not candidate:
        if not candidates:
            raise NotDeployedError(
                f"no deployed model and no candidate in {output_dir}: run `cryptoml run` first"
            )
        latest = candidates[-1]
        raise NotDeployedError(
            f"no model deployed for trading in {output_dir}; the latest candidate "
            f"{latest.version} was not deployed: {latest.reason or 'no reason recorded'} "
            "(--candidate serves it anyway)"
        )
    if not candidates:
        current = registry.deployed() if registry is not None else None
        note = (
            f" (the latest model {current.version} is deployed: drop --candidate)"
            if current
            else ""
        )
        raise InputError(f"no undeployed candidate model in {output_dir}{note}")
    latest = candidates[-1]
    return ServedRef(
        version=latest.version,
        deployed=False,
        reason=latest.reason,
        registry_version=latest.version,
    )


def load_served(
    output_dir: Path, *, candidate: bool = False, registry: ModelRegistry | None = None
) -> ServedModel:
    """The deployed model under ``output_dir``; with ``candidate`` the latest registry candidate
    instead (deployed or not), resolved by :func:`resolve_served`. Raises
    :class:`NotDeployedError` when nothing is deployed."""
    ref = resolve_served(output_dir, candidate=candidate, registry=registry)
    if ref.path is not None:
        model = load_saved(ref.path)
    else:
        registry = registry if registry is not None else _registry(Path(output_dir))
        assert registry is not None and ref.registry_version is not None
        model = load_verified(registry, ref.registry_version)
    return served_from(model, deployed=ref.deployed, reason=ref.reason)


def narrow_symbols(served: ServedModel, symbols: Sequence[str] | None) -> list[str]:
    """The traded symbols a command trades: a flag may only NARROW the model's traded symbols
    (none = all of them); a symbol the model does not trade is a one-line :class:`InputError`.
    The universe (and so the features) stays the manifest's."""
    wanted = list(dict.fromkeys(symbols or ())) or list(served.symbols)
    unknown = [s for s in wanted if s not in served.symbols]
    if unknown:
        raise InputError(
            f"model {served.version} does not trade {unknown}; it trades {list(served.symbols)}"
        )
    return wanted


def check_timeframe(served: ServedModel, timeframe: str | None) -> None:
    """A ``--timeframe`` flag must agree with the manifest (one-line :class:`InputError`)."""
    if timeframe is not None and timeframe != served.timeframe:
        raise InputError(
            f"--timeframe {timeframe} contradicts model {served.version}, which is for "
            f"{served.timeframe} bars"
        )


def announce(served: ServedModel, command: str) -> str | None:
    """The stderr warning a command prints when it serves an undeployed candidate."""
    if served.deployed:
        return None
    return (
        f"cryptoml: warning: {command}: model {served.version} is a candidate, NOT deployed for "
        f"trading ({served.reason or 'no reason recorded'})"
    )
