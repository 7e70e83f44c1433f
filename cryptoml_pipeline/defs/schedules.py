import dagster as dg

from cryptoml_pipeline.defs.jobs import ingest_job, nightly_job

nightly_job_schedule = dg.ScheduleDefinition(
    name="nightly_job_schedule",
    job=nightly_job,
    cron_schedule="15 0 * * *",  # 00:15 UTC, after the daily candle closes
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

# The landing job's daily partitions (UTC) drive the cadence: each tick at 00:05 UTC requests the
# day that has just closed (yesterday's partition), ten minutes before ``nightly_job``.
ingest_job_schedule = dg.build_schedule_from_partitioned_job(
    ingest_job,
    name="ingest_job_schedule",
    description="Land yesterday's UTC day (candles, funding, open interest) at 00:05 UTC",
    hour_of_day=0,
    minute_of_hour=5,
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
