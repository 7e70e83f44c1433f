"""The model zoo: every model implements :class:`~cryptoml_pipeline.modeling.models.base.ZooModel`
(fit on a fold's purged training / validation slices, predict its test window in the one
prediction schema, describe itself in a card) and is registered here.

``ZOO`` is the registry ``defs/assets/zoo.py`` builds the assets from (and ``model_comparison``
compares), in comparison order. Adding a model: one file under ``modeling/models/`` with a
``ZooModel`` subclass, plus one line below.
"""

from cryptoml_pipeline.modeling.models.base import (
    Fitted,
    FoldInputs,
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

__all__ = [
    "TRANSFORMER",
    "ZOO",
    "Fitted",
    "FoldInputs",
    "Unavailable",
    "ZooModel",
    "ZooResult",
    "classification_metrics",
    "registry",
    "run_all_folds",
    "run_model",
    "unavailable",
]
