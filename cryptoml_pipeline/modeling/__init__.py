"""Modeling: labels, walk-forward folds, scaling, sequence datasets, nets, training, persistence.

Dagster-free. Modules are imported explicitly (``from cryptoml_pipeline.modeling.training import
train_model``) so that the torch-free ones (``labels``, ``folds``) stay cheap to import.
"""
