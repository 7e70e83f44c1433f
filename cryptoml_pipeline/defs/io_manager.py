"""Project IO manager: stores asset values with :mod:`cryptoml_pipeline.registry.artifact_store`
(parquet, JSON or weights + JSON — never pickled) under ``<base_dir>/assets/<asset
key>[/<partition key>]``. A non-partitioned asset that depends on a partitioned one receives
``{partition_key: value}``; one declared with ``dg.AssetIn(...,
metadata={ALLOW_MISSING_PARTITIONS: True})`` loads every partition it can and gets, for one that
cannot be loaded, the exception its load raised (``FileNotFoundError``: not materialized) as the
value, instead of failing the input load. A pydantic model (``run_settings``: the run's
``PipelineSettings``) is stored as its JSON dump and validated back into the model class it was
declared as.
"""

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel

from cryptoml_pipeline.registry.artifact_store import read_partitions, read_value, write_value

__all__ = ["ALLOW_MISSING_PARTITIONS", "ArtifactIOManager", "read_value", "write_value"]
# input metadata: a missing/unreadable upstream partition arrives as its exception, not a failure
ALLOW_MISSING_PARTITIONS = "allow_missing_partitions"


class ArtifactIOManager(dg.ConfigurableIOManager):
    """Stores asset values under ``base_dir/assets`` without pickling."""

    base_dir: str

    def _stem(self, asset_key: dg.AssetKey, partition: str | None) -> Path:
        stem = Path(self.base_dir, "assets", *asset_key.path)
        return stem / partition if partition is not None else stem

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        partition = context.partition_key if context.has_asset_partitions else None
        if isinstance(obj, BaseModel):
            obj = obj.model_dump(mode="json")
        path = write_value(self._stem(context.asset_key, partition), obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        if not context.has_asset_partitions:
            value = read_value(self._stem(key, None))
            model = _model_class(context)
            return model.model_validate(value) if model is not None else value
        keys = list(context.asset_partition_keys)
        if context.has_partition_key and len(keys) == 1:
            # partitioned -> same-partitioned dependency (fold_model[k] -> fold_predictions[k])
            return read_value(self._stem(key, keys[0]))
        if (context.definition_metadata or {}).get(ALLOW_MISSING_PARTITIONS):
            return read_partitions({k: self._stem(key, k) for k in keys})
        return {k: read_value(self._stem(key, k)) for k in keys}


def _model_class(context: dg.InputContext) -> type[BaseModel] | None:
    """The pydantic model class the input (or else its upstream output) is declared as."""
    for ctx in (context, context.upstream_output):
        try:
            typing_type = getattr(ctx.dagster_type, "typing_type", None) if ctx else None
        except dg.DagsterInvariantViolationError:  # no type given for it
            continue
        if isinstance(typing_type, type) and issubclass(typing_type, BaseModel):
            return typing_type
    return None
