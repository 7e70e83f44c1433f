"""The model zoo: every model implements :class:`~cryptoml_pipeline.modeling.models.base.ZooModel`
(fit on a fold's purged training / validation slices, predict its test window in the one
prediction schema, describe itself in a card) and is registered here.

``ZOO`` is the registry ``defs/assets/zoo.py`` builds the assets from (and ``model_comparison``
compares), in comparison order. Adding a model: one file under ``modeling/models/`` with a
``ZooModel`` subclass, plus one line below.

``DEPLOYABLE``: the models that implement the serving half of the contract (the legal values of
``strategy.model``); :func:`load_saved` loads a saved model with the zoo model its manifest
names.
"""

from pathlib import Path

from cryptoml_pipeline.errors import InputError
from cryptoml_pipeline.modeling.models.base import (
    Fitted,
    FoldInputs,
    NotDeployableError,
    Unavailable,
    ZooModel,
    ZooResult,
    classification_metrics,
    run_all_folds,
    run_model,
    unavailable,
)
from cryptoml_pipeline.modeling.models.ensemble import EnsembleModel
from cryptoml_pipeline.modeling.models.gbm import GbmModel
from cryptoml_pipeline.modeling.models.lstm_cnn import LstmCnnModel
from cryptoml_pipeline.modeling.models.ppo import PpoModel
from cryptoml_pipeline.modeling.models.transformer import TransformerModel
from cryptoml_pipeline.modeling.persistence import read_manifest


def registry(*models: ZooModel) -> dict[str, ZooModel]:
    return {m.name: m for m in models}


TRANSFORMER = TransformerModel()  # its assets are hand-written (see models/transformer.py)

ZOO: dict[str, ZooModel] = registry(
    TRANSFORMER,
    GbmModel(),
    LstmCnnModel(),
    PpoModel(),
    EnsembleModel(),
)

DEPLOYABLE: tuple[str, ...] = tuple(name for name, m in ZOO.items() if m.deployable)


def saved_model(manifest: dict) -> ZooModel:
    """The deployable zoo model that wrote ``manifest``: its ``model_kind`` (the zoo name the
    candidate records), else its ``model_class`` (a walk-forward fold model's)."""
    kind = manifest.get("model_kind")
    if kind is None:
        model_class = manifest.get("model_class", "CryptoTransformer")
        kind = next((n for n, m in ZOO.items() if m.model_class == model_class), None)
        if kind is None:
            raise InputError(f"no zoo model saves model_class {model_class!r}")
    if kind not in ZOO or not ZOO[kind].deployable:
        raise NotDeployableError(
            f"saved model {kind!r} is not a deployable zoo model (one of {DEPLOYABLE})"
        )
    return ZOO[kind]


def load_saved(directory: Path) -> Fitted:
    """Load the model saved in ``directory`` (its manifest names the zoo model) after the
    model's own checksum verification."""
    return saved_model(read_manifest(Path(directory))).load(Path(directory))


__all__ = [
    "DEPLOYABLE",
    "TRANSFORMER",
    "ZOO",
    "Fitted",
    "FoldInputs",
    "NotDeployableError",
    "Unavailable",
    "ZooModel",
    "ZooResult",
    "classification_metrics",
    "load_saved",
    "registry",
    "run_all_folds",
    "run_model",
    "saved_model",
    "unavailable",
]
