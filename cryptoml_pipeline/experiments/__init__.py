"""Configuration studies on the pipeline's own domain functions (no Dagster)."""
