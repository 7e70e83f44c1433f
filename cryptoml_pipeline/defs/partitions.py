"""Partitions. Fold keys depend on the run's window, so folds are dynamic partitions named by the
fold's test-window start (e.g. ``2025-07-03``). The Models issue adds a model dimension by turning
this into ``MultiPartitionsDefinition({"model": ..., "fold": fold_partitions})``."""

import dagster as dg

FOLDS = "folds"
fold_partitions = dg.DynamicPartitionsDefinition(name=FOLDS)

# Sweeps (``cryptoml experiment``): one partition per (configuration, split). Configuration keys
# are ``<grid name>+<configuration name>``; split keys ``wf-00`` … (the walk-forward folds) and
# ``cpcv-00`` … (the combinatorial purged CV splits).
EXPERIMENT_CONFIGURATIONS = "experiment_configurations"
EXPERIMENT_SPLITS = "experiment_splits"
CONFIGURATION_DIM = "configuration"
SPLIT_DIM = "split"
experiment_partitions = dg.MultiPartitionsDefinition(
    {
        CONFIGURATION_DIM: dg.DynamicPartitionsDefinition(name=EXPERIMENT_CONFIGURATIONS),
        SPLIT_DIM: dg.DynamicPartitionsDefinition(name=EXPERIMENT_SPLITS),
    }
)
