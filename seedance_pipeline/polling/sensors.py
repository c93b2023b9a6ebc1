"""Sensors: notice catalog changes, and move tasks in flight to completion."""

import dagster as dg

from seedance_pipeline.jobs import catalog_job, ledger_job, submit_batch_job
from seedance_pipeline.pipeline import catalog_digest, poll_tick, submittable_batches
from seedance_pipeline.resources import SeedanceResource

ACTIVE_RUNS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    job=catalog_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches the catalog file's checksum; when it changes (or on first start) launches "
        "`catalog_job`, which validates the rows and registers new batches as partitions."
    ),
)
def catalog_sensor(
    context: dg.SensorEvaluationContext, seedance: SeedanceResource
) -> dg.SensorResult | dg.SkipReason:
    settings = seedance.settings()
    try:
        digest = catalog_digest(settings.catalog)
    except FileNotFoundError:
        return dg.SkipReason(f"no catalog at {settings.catalog}")
    if digest == context.cursor:
        return dg.SkipReason(f"catalog unchanged ({digest[:12]})")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"catalog:{digest}")], cursor=digest)


def _running(context: dg.SensorEvaluationContext, job: str, batch: str) -> bool:
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(
            job_name=job, tags={"dagster/partition": batch}, statuses=ACTIVE_RUNS
        ),
        limit=1,
    )
    return bool(runs)


@dg.sensor(
    jobs=[submit_batch_job, ledger_job],
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Polls every task in flight concurrently (time-boxed at 40 s, least recently polled first, "
        "so a large backlog is covered over several ticks), copies finished videos, and records "
        "each outcome in the state store. Then launches `submit_batch_job` for batches with pending "
        "requests and free provider capacity, and `ledger_job` for each batch with nothing left in "
        "flight (once per final state, by run key)."
    ),
)
def task_sensor(
    context: dg.SensorEvaluationContext, seedance: SeedanceResource
) -> dg.SensorResult | dg.SkipReason:
    settings = seedance.settings()
    store = settings.store()
    report = poll_tick(settings)
    open_batches = store.open_batches()
    run_requests = []
    for batch, fingerprint in store.batch_fingerprints().items():
        if batch not in open_batches:
            run_requests.append(
                dg.RunRequest(
                    job_name=ledger_job.name,
                    partition_key=batch,
                    run_key=f"ledger:{batch}:{fingerprint}",
                )
            )
    for batch in submittable_batches(settings, store):
        if not _running(context, submit_batch_job.name, batch):
            run_requests.append(dg.RunRequest(job_name=submit_batch_job.name, partition_key=batch))
    summary = f"{report.summary()}; open batches: {len(open_batches)}"
    if not run_requests:
        return dg.SkipReason(f"{summary}; nothing to launch")
    context.log.info(summary)
    return dg.SensorResult(run_requests=run_requests)
