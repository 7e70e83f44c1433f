"""Partitions. Fold keys depend on the run's window, so folds are dynamic partitions named by the
fold's test-window start (e.g. ``2025-07-03``). The Models issue adds a model dimension by turning
this into ``MultiPartitionsDefinition({"model": ..., "fold": fold_partitions})``."""

import dagster as dg

FOLDS = "folds"
fold_partitions = dg.DynamicPartitionsDefinition(name=FOLDS)
