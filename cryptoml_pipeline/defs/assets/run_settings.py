"""The run's settings, resolved once, as an asset every other asset of the graph reads.

``run_settings`` resolves the :class:`~cryptoml_pipeline.settings.PipelineSettings` of the run
from the ``pipeline`` resource (profile YAML -> ``--config`` overrides -> timeframe, window and
symbols) and stores them as JSON (the project IO manager, never pickled): ``prepare_job``,
``retrain_job`` and ``nightly_job`` materialize it first; the fold runs (``train_folds_job``),
``evaluate_job`` and the experiment jobs load the value that the chain's first run stored, so
every run of one chain computes with the same settings.

The landing assets (``ingest_job``, daily partitions on their own schedule) read the resource's
settings instead: they are upstream of the whole graph and must land a day on an instance
where the main chain never ran.
"""

import dagster as dg

from cryptoml_pipeline.defs.resources import PipelineResource
from cryptoml_pipeline.settings import PipelineSettings

GROUP = "settings"
RUN_SETTINGS = "run_settings"  # the asset key (the input name of every reader)


@dg.asset(group_name=GROUP)
def run_settings(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> PipelineSettings:
    """The run's resolved settings (profile, config-file overrides, window and symbols)."""
    settings = pipeline.settings()
    context.add_output_metadata(
        {
            "profile": settings.profile,
            "config_file": pipeline.config_file or "-",
            "timeframe": settings.data.timeframe,
            "start": str(settings.data.start),
            "end": str(settings.data.end),
            "strategy_model": settings.strategy.model,
            "settings": dg.MetadataValue.json(settings.model_dump(mode="json")),
        }
    )
    return settings
