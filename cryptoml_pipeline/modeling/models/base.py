"""The one interface every model of the zoo implements, and the generic driver that runs it.

A zoo model is an object with a ``name`` (its directory under ``output/models/`` and its key in
the comparison), the ``asset_name`` of the Dagster asset that emits its predictions, the extra
upstream inputs it ``needs`` and a ``scope``:

* ``"fold"`` — one fold-partitioned asset; :func:`run_model` runs on that fold alone.
* ``"all_folds"`` — one unpartitioned asset that calls :func:`run_model` fold by fold (the
  stacking ensemble: it learns from earlier folds' out-of-fold predictions).

and three methods over a fold's :class:`FoldInputs`:

* ``fit(inputs, out_dir) -> Fitted | Unavailable`` — train on the fold's purged fit rows,
  early-stop / select on its validation slice and save the artifact (tensors or LightGBM text,
  never pickles) under ``out_dir``; :class:`Unavailable` (with the reason) when it cannot run.
* ``predict(fitted, inputs) -> DataFrame`` — the fold's test window only, in the one prediction
  schema (:mod:`cryptoml_pipeline.modeling.predictions`).
* ``card(fitted, predictions) -> dict`` — the JSON model card: configuration, data range, test
  metrics, train time, device, artifact path and SHA-256, number of tuning trials.

A *deployable* model (``deployable = True``: the models ``strategy.model`` may name — the
candidate, the deploy gate, the tracker, paper trading and the real-time signal use it) also
implements the serving half of the contract; the others raise :class:`NotDeployableError`:

* ``fit_window(inputs) -> Fitted`` — train on exactly ``inputs.fold``'s purged training window as
  configured (no tuning, no window capping): the candidate model.
* ``predict_rows(fitted, features, labels, row_mask, settings, timeframe, *, tag) -> DataFrame``
  — the prediction schema for the rows of ``row_mask``, with NO leakage guard (walk-forward
  evaluation goes through ``predict``).
* ``predict_arrays(fitted, columns, stamps, symbols, row_mask, timeframe)`` — the same numbers
  from column arrays (the signal's fast path), or None when the model has no such path.
* ``save(fitted, directory) -> Path`` / ``load(directory) -> Fitted`` — tensors (``state_dict``,
  loaded with ``weights_only=True``) or LightGBM text plus a JSON manifest carrying checksums;
  never pickles. :func:`cryptoml_pipeline.modeling.models.load_saved` picks the model from the
  manifest.
* ``importance(fitted, top) -> dict`` — the model's own feature importance (normalised).
* ``history_rows(fitted) -> int`` — feature rows before a predicted one that the model reads.

Every consumer gets the strategy model as ``ZOO[settings.strategy.model]`` and a loaded one as
``ZOO[fitted.name]``; a :class:`Fitted` carries ``name``, ``fold``, ``feature_cols`` and
``manifest``.

Adding a model is one file under ``modeling/models/`` (a :class:`ZooModel` subclass) plus one line
in the registry ``modeling/models/__init__.py``; ``defs/assets/zoo.py`` builds its asset.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import pandas as pd

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.fold_training import fold_to_dict
from cryptoml_pipeline.modeling.folds import Fold, capped_fold
from cryptoml_pipeline.modeling.persistence import to_jsonable
from cryptoml_pipeline.modeling.predictions import PROB_COLUMNS, label_to_class
from cryptoml_pipeline.modeling.predictions import empty_predictions as _empty_schema
from cryptoml_pipeline.settings import PipelineSettings

logger = logging.getLogger(__name__)

Scope = Literal["fold", "all_folds"]
# the extra inputs a model may declare in ``needs`` (the asset factory loads exactly these)
NEEDS = frozenset({"ohlcv", "funding", "market", "base_predictions"})


class CandleSource(Protocol):
    """What the multi-timeframe models need from the market resource (``settings``: the run's,
    from which the synthetic market derives its other timeframes)."""

    def symbols_with_timeframes(
        self, symbols: list[str], timeframes: list[str], settings: Any = None
    ) -> tuple[list[str], dict[str, Any]]: ...

    def candles_by_timeframe(
        self, symbols: list[str], timeframes: list[str], start: Any, end: Any, settings: Any = None
    ) -> dict[str, pd.DataFrame]: ...


@dataclass(frozen=True)
class FoldInputs:
    """Everything a model sees for one walk-forward fold.

    ``features`` / ``labels`` are the aligned feature and label tables of the whole universe
    (a model restricts them to ``traded`` itself when it trains on the traded symbols only);
    the optional extras are filled only when the model ``needs`` them.
    """

    features: pd.DataFrame
    labels: pd.DataFrame | None
    fold: Fold
    settings: PipelineSettings
    timeframe: str
    traded: tuple[str, ...] = ()
    candles: pd.DataFrame | None = None  # "ohlcv"
    funding: pd.DataFrame | None = None  # "funding"
    market: CandleSource | None = None  # "market": loader of the finer timeframes' candles
    base_predictions: Mapping[str, pd.DataFrame] | None = None  # "base_predictions"

    def for_fold(self, fold: Fold) -> FoldInputs:
        return replace(self, fold=fold)


class NotDeployableError(InputError):
    """The zoo model does not implement the serving half of the contract (save / load /
    predict_rows ...): it cannot be the strategy model."""


@dataclass
class Fitted:
    """A trained model: ``model`` (whatever ``predict`` needs), the ``fold`` it was trained for,
    card facts known after fitting (``info``; ``predict`` may add prediction-time facts), the
    saved ``artifact`` directory and the weights file inside it that the card checksums, and
    ``name``: the zoo model that fitted it (``ZOO[fitted.name]`` predicts, saves and describes
    it).

    A deployable model's state carries its JSON ``manifest`` and ``feature_cols``, exposed here."""

    model: Any
    fold: Fold
    info: dict[str, Any] = field(default_factory=dict)
    artifact: Path | None = None
    weights_file: str | None = None
    name: str | None = None

    @property
    def manifest(self) -> dict[str, Any]:
        manifest = getattr(self.model, "manifest", None)
        if manifest is None:
            raise NotDeployableError(f"the fitted {self.name or 'model'} has no manifest")
        return manifest

    @manifest.setter
    def manifest(self, value: dict[str, Any]) -> None:
        self.model.manifest = value

    @property
    def feature_cols(self) -> list[str]:
        cols = getattr(self.model, "feature_cols", None)
        return list(cols if cols is not None else self.manifest["feature_cols"])


@dataclass
class Unavailable:
    """Why the model cannot run on this fold (it then emits no predictions)."""

    reason: str
    fold: Fold | None = None  # the fold the model would have trained on (default: the input's)
    extra: dict[str, Any] = field(default_factory=dict)  # more card fields


@dataclass
class ZooResult:
    predictions: pd.DataFrame
    card: dict[str, Any]


class ZooModel(ABC):
    """The zoo's model interface (see the module docstring). Subclasses set ``name`` and
    ``asset_name``; ``needs``/``scope`` default to none and ``"fold"``; the class docstring is
    the asset's description in the UI."""

    name: ClassVar[str]
    asset_name: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()
    scope: ClassVar[Scope] = "fold"
    base_models: ClassVar[tuple[str, ...]] = ()  # zoo models whose predictions it stacks

    def enabled(self, settings: PipelineSettings) -> bool:
        """``settings.<name>.enabled`` when that section exists, else always."""
        return bool(getattr(getattr(settings, self.name, None), "enabled", True))

    def recent_folds(self, settings: PipelineSettings) -> int | None:
        """``settings.<name>.recent_folds``: the model trains on the most recent N folds only
        (None: every fold; the older folds get an unavailable card saying why)."""
        return getattr(getattr(settings, self.name, None), "recent_folds", None)

    def skipped_fold(self, settings: PipelineSettings, fold: Fold, n_folds: int) -> str | None:
        """Why this model does not train on ``fold`` of a plan of ``n_folds`` folds, or None."""
        recent = self.recent_folds(settings)
        if recent is None or fold.index >= n_folds - recent:
            return None
        return (
            f"not trained on this fold: {self.name}.recent_folds = {recent} "
            f"(the most recent {recent} of {n_folds} folds)"
        )

    def precondition(self, inputs: FoldInputs) -> str | None:
        """Why the model cannot run on any fold (checked once per asset run), or None."""
        return None

    @abstractmethod
    def fit(self, inputs: FoldInputs, out_dir: Path | None) -> Fitted | Unavailable: ...

    @abstractmethod
    def predict(self, fitted: Fitted, inputs: FoldInputs) -> pd.DataFrame: ...

    @abstractmethod
    def card(self, fitted: Fitted, predictions: pd.DataFrame) -> dict[str, Any]: ...

    @property
    def description(self) -> str:
        return (type(self).__doc__ or self.name).strip()

    @property
    def card_asset_name(self) -> str:
        """The Dagster asset emitted beside ``asset_name`` that holds its model card (scope
        ``"fold"``: one per fold partition; ``"all_folds"``: the list of every fold's card)."""
        return f"{self.name}_model_card"

    # --- the serving half (deployable models; see the module docstring) --------------------------

    deployable: ClassVar[bool] = False
    model_class: ClassVar[str | None] = None  # the saved manifest's ``model_class``

    def _not_deployable(self, what: str) -> NotDeployableError:
        return NotDeployableError(
            f"zoo model {self.name!r} cannot {what}: it is not deployable (a strategy model "
            "implements fit_window / predict_rows / save / load)"
        )

    def fit_window(self, inputs: FoldInputs) -> Fitted:
        """Train on exactly ``inputs.fold``'s purged training window (the candidate model)."""
        raise self._not_deployable("fit a deployable model")

    def predict_rows(
        self,
        fitted: Fitted,
        features: pd.DataFrame,
        labels: pd.DataFrame | None,
        row_mask: np.ndarray,
        settings: PipelineSettings,
        timeframe: str,
        *,
        tag: str,
    ) -> pd.DataFrame:
        """Predictions (the prediction schema, ``fold`` = ``tag``) for the rows of
        ``row_mask`` — inference with NO leakage guard."""
        raise self._not_deployable("predict feature rows")

    def predict_arrays(
        self,
        fitted: Fitted,
        columns: Mapping[str, np.ndarray],
        stamps: np.ndarray,
        symbols: np.ndarray,
        row_mask: np.ndarray,
        timeframe: str,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
        """:meth:`predict_rows`' numbers from column arrays (``columns``: name -> ``[n]``,
        ``stamps`` in ns, ``symbols``): ``(rows, expected_return, confidence, probabilities)``
        of the usable rows of ``row_mask`` — or None when the model has no array path (the
        caller then goes through :meth:`predict_rows`)."""
        return None

    def save(self, fitted: Fitted, directory: Path) -> Path:
        """Write the fitted model (weights + JSON manifest, never a pickle) into ``directory``."""
        raise self._not_deployable("be saved")

    def load(self, directory: Path) -> Fitted:
        """The model :meth:`save` wrote into ``directory``, after verifying its checksum."""
        raise self._not_deployable("be loaded")

    def importance(self, fitted: Fitted, top: int = 20) -> dict[str, float]:
        """The ``top`` most important features, normalised to sum to 1 over all features."""
        raise self._not_deployable("report feature importance")

    def history_rows(self, fitted: Fitted) -> int:
        """Feature rows before a predicted one that the model reads (lags, input sequence)."""
        raise self._not_deployable("serve signals")


def empty_predictions() -> pd.DataFrame:
    return _empty_schema()


def unavailable(model: str, fold: Fold, reason: str, **extra: Any) -> ZooResult:
    logger.warning("%s fold %s unavailable: %s", model, fold.key, reason)
    return ZooResult(
        empty_predictions(),
        {
            "model": model,
            "fold": fold_to_dict(fold),
            "status": "unavailable",
            "reason": reason,
            **extra,
        },
    )


def classification_metrics(preds: pd.DataFrame) -> dict[str, float | int | None]:
    """Accuracy, macro-F1 (over the five classes present in labels or predictions) and log-loss
    (None when the model gives no probabilities) on rows with a known label."""
    known = preds.dropna(subset=["label"])
    if known.empty:
        return {"n": 0, "accuracy": None, "macro_f1": None, "log_loss": None}
    y = label_to_class(known["label"].to_numpy(dtype=np.float64))
    p = known["pred_class"].to_numpy(dtype=np.int64)
    f1s = []
    for c in np.union1d(y, p):
        tp = int(((p == c) & (y == c)).sum())
        fp = int(((p == c) & (y != c)).sum())
        fn = int(((p != c) & (y == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    probs = known[PROB_COLUMNS].to_numpy(dtype=np.float64)
    log_loss = None
    if np.isfinite(probs).all():
        log_loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))
    return {
        "n": len(known),
        "accuracy": float((p == y).mean()),
        "macro_f1": float(np.mean(f1s)),
        "log_loss": log_loss,
    }


def model_card(name: str, fitted: Fitted, preds: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """The card every model starts from: name, fold, status, test metrics, the fit-time facts
    and — when the model saved one — artifact path and checksum; ``extra`` adds its own."""
    from cryptoml_pipeline.modeling.persistence import file_sha256

    card: dict[str, Any] = {
        "model": name,
        "fold": fold_to_dict(fitted.fold),
        "status": "trained",
        "test_metrics": classification_metrics(preds),
        **fitted.info,
        **extra,
    }
    if fitted.artifact is not None:
        card["artifact"] = str(fitted.artifact)
        if fitted.weights_file is not None:
            card["artifact_sha256"] = file_sha256(fitted.artifact / fitted.weights_file)
    return to_jsonable(card)


def run_model(model: ZooModel, inputs: FoldInputs, out_dir: Path | None) -> ZooResult:
    """Fit, predict and describe one fold: disabled or unavailable -> empty predictions and a
    card with the reason."""
    if not model.enabled(inputs.settings):
        return unavailable(model.name, inputs.fold, f"disabled in settings ({model.name}.enabled)")
    fitted = model.fit(inputs, out_dir)
    if isinstance(fitted, Unavailable):
        return unavailable(model.name, fitted.fold or inputs.fold, fitted.reason, **fitted.extra)
    preds = model.predict(fitted, inputs)
    return ZooResult(preds, model.card(fitted, preds))


def run_all_folds(
    model: ZooModel, inputs: FoldInputs, folds: list[Fold]
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """A scope ``"all_folds"`` model over every fold: the concatenated test-window predictions
    and one card per fold."""
    results = [run_model(model, inputs.for_fold(fold), None) for fold in folds]
    parts = [r.predictions for r in results if len(r.predictions)]
    preds = pd.concat(parts, ignore_index=True) if parts else empty_predictions()
    return preds, [r.card for r in results]


# --- what the models share about their training rows ---------------------------------------------


def heavy_fold(fold: Fold, settings: PipelineSettings, timeframe: str) -> Fold:
    """The fold the heavier networks (transformer, LSTM-CNN, PPO) train on: a rolling window of
    ``walk_forward.train_days`` even when the pooled LightGBM's walk-forward expands."""
    wf = settings.walk_forward
    return capped_fold(
        fold, wf.train_days, validation_fraction=wf.validation_fraction, timeframe=timeframe
    )


def traded_only(frame: pd.DataFrame, traded: Mapping[str, Any] | tuple | list) -> pd.DataFrame:
    """Rows of the traded symbols (the heavier networks train and predict on these only; the
    pooled models see the whole universe). ``traded``: the symbols or ``dataset_info``."""
    symbols = traded["symbols"] if isinstance(traded, Mapping) else traded
    keep = set(symbols)
    if set(frame["symbol"].astype(str).unique()) <= keep:
        return frame
    return frame[frame["symbol"].astype(str).isin(keep)].reset_index(drop=True)
