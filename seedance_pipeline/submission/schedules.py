"""The daily schedule: submit whatever is outstanding, within the daily spend cap."""

import dagster as dg

from seedance_pipeline.jobs import submit_batch_job
from seedance_pipeline.metadata import BATCH_TAG, TRIGGER_TAG
from seedance_pipeline.resources import BudgetResource, SeedanceResource
from seedance_pipeline.submission.batch import submission_outlook


@dg.schedule(
    job=submit_batch_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Every day at 06:00 UTC, launches `submit_batch_job` for each batch with pending requests. "
        "The daily spend cap (`daily_budget_usd`) is reserved request by request, so whatever "
        "exceeds today's cap waits for tomorrow's run."
    ),
)
def daily_outstanding_batches(
    context: dg.ScheduleEvaluationContext,
    seedance: SeedanceResource,
    seedance_budget: BudgetResource,
) -> list[dg.RunRequest] | dg.SkipReason:
    outlook = submission_outlook(seedance.settings(seedance_budget))
    if not outlook.batches:
        return dg.SkipReason(f"no batch to submit: {outlook.why_none}")
    date = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [
        dg.RunRequest(partition_key=b, run_key=f"daily:{date}:{b}",
                      tags={BATCH_TAG: b, TRIGGER_TAG: "schedule"})
        for b in outlook.batches
    ]  # fmt: skip
