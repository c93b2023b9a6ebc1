"""Sensors: notice catalog changes, and move tasks in flight to completion. Each tick says what it
did (its skip reason, or its log when it launches runs), so the sensor's tick list in the UI reads
as a history of the pipeline."""

import json
import time

import dagster as dg

from seedance_pipeline.catalog.assets import batches
from seedance_pipeline.catalog.reading import CatalogError, batch_names, read_catalog
from seedance_pipeline.jobs import catalog_job, ledger_job, submit_batch_job
from seedance_pipeline.pipeline import catalog_digest, poll_tick, submittable_batches
from seedance_pipeline.resources import SeedanceResource

ACTIVE_RUNS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
CATALOG_INTERVAL_S = 30
TASK_INTERVAL_S = 15


def _names(items: list[str], most: int = 10) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "") or "none"


@dg.sensor(
    job=catalog_job,
    minimum_interval_seconds=CATALOG_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches the catalog file's checksum; when it changes (or on first start) launches "
        "`catalog_job`, which validates the rows and registers new batches as partitions. Its "
        "ticks name the batches in the catalog and those already registered, or say why it "
        "skipped (catalog unchanged, missing or unreadable)."
    ),
)
def catalog_sensor(
    context: dg.SensorEvaluationContext, seedance: SeedanceResource
) -> dg.SensorResult | dg.SkipReason:
    settings = seedance.settings()
    registered = sorted(context.instance.get_dynamic_partitions(str(batches.name)))
    try:
        digest = catalog_digest(settings.catalog)
    except FileNotFoundError:
        return dg.SkipReason(f"no catalog at {settings.catalog}")
    if digest == context.cursor:
        return dg.SkipReason(
            f"catalog unchanged (sha256 {digest[:12]}); {len(registered)} batches registered: "
            f"{_names(registered)}"
        )
    try:  # the batch column only: cheap, and a broken catalog is reported here, not by a failed run
        named = batch_names(read_catalog(settings.catalog), settings.defaults.batch)
    except CatalogError as exc:
        return dg.SkipReason(f"catalog changed (sha256 {digest[:12]}) but cannot be read: {exc}")
    new = [b for b in named if b not in registered]
    context.log.info(
        f"catalog changed (sha256 {digest[:12]}): launched catalog_job to validate it and register "
        f"its {len(named)} batches: {_names(named)} (new: {_names(new)})"
    )
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"catalog:{digest}")], cursor=digest)


def _running(context: dg.SensorEvaluationContext, job: str, batch: str) -> bool:
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(
            job_name=job, tags={"dagster/partition": batch}, statuses=ACTIVE_RUNS
        ),
        limit=1,
    )
    return bool(runs)


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
    context: dg.SensorEvaluationContext, seedance: SeedanceResource
) -> dg.SensorResult | dg.SkipReason:
    settings = seedance.settings()
    store = settings.store()
    last_count_at, ledgers_launched = _read_cursor(context.cursor)
    report = poll_tick(settings)
    open_batches = store.open_batches()
    fingerprints = store.batch_fingerprints()
    ledger_batches = [
        b
        for b, fingerprint in fingerprints.items()
        if b not in open_batches and ledgers_launched.get(b) != fingerprint
    ]
    run_requests = [
        dg.RunRequest(job_name=ledger_job.name, partition_key=b,
                      run_key=f"ledger:{b}:{fingerprints[b]}")
        for b in ledger_batches
    ]  # fmt: skip
    submit_batches = [
        b
        for b in submittable_batches(settings, store)
        if not _running(context, submit_batch_job.name, b)
    ]
    run_requests += [
        dg.RunRequest(job_name=submit_batch_job.name, partition_key=b) for b in submit_batches
    ]
    # Submissions happen in the runs this sensor (or the schedule, or a backfill) launched: count
    # those since the last tick, or over one interval when there is no cursor yet.
    now = time.time()
    submitted = store.submitted_between(last_count_at or now - TASK_INTERVAL_S, now)
    cursor = json.dumps({"at": now, "ledgers": {b: f for b, f in fingerprints.items()
                                                if b not in open_batches}})  # fmt: skip
    launched = "; ".join(
        f"launched {job} for {_names(names)}"
        for job, names in (
            (ledger_job.name, ledger_batches),
            (submit_batch_job.name, submit_batches),
        )
        if names
    )
    summary = (
        f"{report.summary()}; submitted {submitted} since the last check; "
        f"open batches: {len(open_batches)}; {launched or 'nothing to launch'}; "
        f"next check in {TASK_INTERVAL_S} s"
    )
    if not run_requests:
        context.update_cursor(cursor)
        return dg.SkipReason(summary)
    context.log.info(summary)
    return dg.SensorResult(run_requests=run_requests, cursor=cursor)
