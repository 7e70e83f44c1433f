"""Dagster assets, grouped as ingestion, features, modeling, evaluation, deployment."""
