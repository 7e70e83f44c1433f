"""Project IO manager: stores asset values with :mod:`cryptoml_pipeline.registry.artifact_store`
(parquet, JSON or weights + JSON — never pickled) under ``<base_dir>/assets/<asset
key>[/<partition key>]``. A non-partitioned asset that depends on a partitioned one receives
``{partition_key: value}``.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from cryptoml_pipeline.registry.artifact_store import read_value, write_value

__all__ = ["ArtifactIOManager", "read_value", "write_value"]


class ArtifactIOManager(dg.ConfigurableIOManager):
    """Stores asset values under ``base_dir/assets`` without pickling."""

    base_dir: str

    def _stem(self, asset_key: dg.AssetKey, partition: str | None) -> Path:
        stem = Path(self.base_dir, "assets", *asset_key.path)
        return stem / partition if partition is not None else stem

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        partition = context.partition_key if context.has_asset_partitions else None
        path = write_value(self._stem(context.asset_key, partition), obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        if not context.has_asset_partitions:
            return read_value(self._stem(key, None))
        keys = list(context.asset_partition_keys)
        if context.has_partition_key and len(keys) == 1:
            # partitioned -> same-partitioned dependency (fold_model[k] -> fold_predictions[k])
            return read_value(self._stem(key, keys[0]))
        return {k: read_value(self._stem(key, k)) for k in keys}
