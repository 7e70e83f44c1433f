import dagster as dg

from cryptoml_pipeline.defs.jobs import nightly_job

nightly_job_schedule = dg.ScheduleDefinition(
    name="nightly_job_schedule",
    job=nightly_job,
    cron_schedule="15 0 * * *",  # 00:15 UTC, after the daily candle closes
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
