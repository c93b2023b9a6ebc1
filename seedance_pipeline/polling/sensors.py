"""The task sensor: moves tasks in flight to completion. Each tick says what it did (its skip
reason, or its log when it launches runs), so the sensor's tick list in the UI reads as a history
of the pipeline."""

import json

import dagster as dg

from seedance_pipeline.jobs import ledger_job, submit_batch_job
from seedance_pipeline.metadata import BATCH_TAG, TRIGGER_TAG, short_list
from seedance_pipeline.partitions import batches
from seedance_pipeline.polling.tick import plan_tick
from seedance_pipeline.resources import BudgetResource, SeedanceResource, SubmissionResource

ACTIVE_RUNS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
TASK_INTERVAL_S = 15


def _running(context: dg.SensorEvaluationContext, job: str, batch: str) -> bool:
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(
            job_name=job, tags={"dagster/partition": batch}, statuses=ACTIVE_RUNS
        ),
        limit=1,
    )
    return bool(runs)


def _tags(batch: str) -> dict[str, str]:
    """Run tags to filter by in the UI; Dagster adds `dagster/sensor_name` itself."""
    return {BATCH_TAG: batch, TRIGGER_TAG: "sensor"}


def _read_cursor(raw: str | None) -> tuple[float | None, dict[str, str]]:
    """(when the last tick counted submissions, the ledger state launched per batch)."""
    try:
        data = json.loads(raw) if raw else {}
        return float(data["at"]), dict(data.get("ledgers", {}))
    except (ValueError, KeyError, TypeError):
        return None, {}


@dg.sensor(
    jobs=[submit_batch_job, ledger_job],
    minimum_interval_seconds=TASK_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Polls every task in flight concurrently (time-boxed at 40 s, least recently polled first, "
        "so a large backlog is covered over several ticks), copies finished videos, and records "
        "each outcome in the state store. Then launches `submit_batch_job` for batches with pending "
        "requests and free provider capacity, and `ledger_job` (ledger and report) for each batch "
        "with nothing left in flight, once per final state. Each tick says what it did: "
        "`polled N, finished M (…), submitted K since the last check, …, next check in 15 s`."
    ),
)
def task_sensor(
    context: dg.SensorEvaluationContext,
    seedance: SeedanceResource,
    seedance_budget: BudgetResource,
    seedance_submission: SubmissionResource,
) -> dg.SensorResult | dg.SkipReason:
    last_count_at, ledgers_launched = _read_cursor(context.cursor)
    settings = seedance.settings(seedance_budget, seedance_submission)
    plan = plan_tick(settings, ledgers_launched, last_count_at, TASK_INTERVAL_S)
    # A batch the catalog job has recorded but not yet registered as a partition waits a tick:
    # a run for it would fail, and its ledger is not marked launched, so it follows once registered.
    registered = set(context.instance.get_dynamic_partitions(str(batches.name)))
    unregistered = sorted({*plan.ledger_batches, *plan.submit_batches} - registered)
    ledger_batches = sorted(b for b in plan.ledger_batches if b in registered)
    run_requests = [
        dg.RunRequest(job_name=ledger_job.name, partition_key=b,
                      run_key=f"ledger:{b}:{plan.ledger_batches[b]}", tags=_tags(b))
        for b in ledger_batches
    ]  # fmt: skip
    submit_batches = [
        b
        for b in plan.submit_batches
        if b in registered and not _running(context, submit_batch_job.name, b)
    ]
    # Only the steps of providers with work: each step is a process, and it stays while its
    # provider has work.
    run_requests += [
        dg.RunRequest(job_name=submit_batch_job.name, partition_key=b, tags=_tags(b),
                      asset_selection=[dg.AssetKey(f"{p}_submissions")
                                       for p in plan.submit_providers.get(b, [])] or None)
        for b in submit_batches
    ]  # fmt: skip
    ledgers = {b: f for b, f in plan.finished.items() if b in registered}
    cursor = json.dumps({"at": plan.counted_at, "ledgers": ledgers})
    launched = "; ".join(
        f"launched {job} for {short_list(names)}"
        for job, names in (
            (ledger_job.name, ledger_batches),
            (submit_batch_job.name, submit_batches),
        )
        if names
    )
    summary = (
        f"{plan.report.summary()}; submitted {plan.submitted_since} since the last check; "
        f"open batches: {plan.open_batches}; {launched or 'nothing to launch'}; "
        + (f"no submission: {plan.why_no_submission}; " if plan.why_no_submission else "")
        + (
            f"not yet registered by catalog_job: {short_list(unregistered)}; "
            if unregistered
            else ""
        )
        + f"next check in {TASK_INTERVAL_S} s"
    )
    if not run_requests:
        context.update_cursor(cursor)
        return dg.SkipReason(summary)
    context.log.info(summary)
    return dg.SensorResult(run_requests=run_requests, cursor=cursor)
