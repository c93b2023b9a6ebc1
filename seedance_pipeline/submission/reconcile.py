"""Finding the tasks behind unknown outcomes, where the provider can list its tasks (ModelArk).

A create whose answer was lost may or may not have made a task. Listing the provider's recent tasks
can settle it: exactly one unclaimed task of the same model, created in the call's window with the
same seed, resolution and duration, is that request's task, and polling resumes. The absence of a
task is never taken as proof that none was made: a provider may still process a request after the
client gave up waiting (this happened under load in our fault tests), so such requests, and every
ambiguous one, stay `unknown` for an operator (`seedance-pipeline resolve-unknown`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from seedance_pipeline.providers import ErrorKind, TaskState, adapter_for
from seedance_pipeline.providers.client import ProviderClient, ProviderConfig
from seedance_pipeline.state.lifecycle import Move, RequestStatus
from seedance_pipeline.state.store import RequestRecord, StateStore

log = logging.getLogger(__name__)

MARGIN_S = 30.0  # our clock against the provider's
LATE_S = 300.0  # how long after our timeout a provider may still create the task
GIVE_UP_AFTER_S = 600.0  # a headless run waits this long past a window for the list call to work
PAGE_SIZE = 100
MAX_PAGES = 20


@dataclass
class ReconcileReport:
    adopted: int = 0
    undecided: int = 0


def window(record: RequestRecord, config: ProviderConfig) -> tuple[float, float]:
    """When the request's task, if any, was created, by the provider's clock: from the recorded send
    time of the call whose answer was lost (or, for a process that died mid-call, from the claim,
    allowing for every retry the client may have made), plus LATE_S for a provider that works
    through a request after the client stopped waiting."""
    if record.sent_at is not None:
        return record.sent_at - MARGIN_S, record.sent_at + config.timeout_s + LATE_S + MARGIN_S
    start = record.submitted_at or 0.0
    retry = config.retry
    latest = (
        start + retry.attempts * config.timeout_s + (retry.attempts - 1) * retry.retry_after_cap_s
    )
    return start - MARGIN_S, latest + LATE_S + MARGIN_S


def awaiting(
    store: StateStore, configs: dict[str, ProviderConfig], now: float | None = None
) -> int:
    """Unknown requests that reconciliation may still settle: their provider lists its tasks and no
    pass has looked at them since their window closed. Worth waiting for before a run is done."""
    now = time.time() if now is None else now
    return sum(
        1
        for r in store.records(statuses=[RequestStatus.UNKNOWN])
        if r.provider in configs
        and adapter_for(r.provider).build_list(1, 1) is not None
        and r.error_kind == ErrorKind.OUTCOME_UNKNOWN
        and now <= window(r, configs[r.provider])[1] + GIVE_UP_AFTER_S
    )


def _created_at(task: TaskState) -> float | None:
    value = task.raw.get("created_at")
    return (
        float(value)
        if isinstance(value, int | float | str) and str(value).replace(".", "", 1).isdigit()
        else None
    )


async def reconcile_unknown(store: StateStore, client: ProviderClient) -> ReconcileReport:
    provider = client.adapter.name
    report = ReconcileReport()
    unknown = [
        r
        for r in store.records(provider=provider, statuses=[RequestStatus.UNKNOWN])
        if r.submitted_at and not r.task_id  # a task given up on is no create in doubt
    ]
    if not unknown or client.adapter.build_list(1, 1) is None:
        return report
    windows = {r.request_id: window(r, client.config) for r in unknown}
    oldest = min(low for low, _ in windows.values())
    tasks: list[TaskState] = []
    complete = False
    for page in range(1, MAX_PAGES + 1):
        batch = await client.list_tasks(page, PAGE_SIZE) or []
        tasks += batch
        created = [c for c in (_created_at(t) for t in batch) if c is not None]
        if len(batch) < PAGE_SIZE or (created and min(created) < oldest):
            complete = True
            break
    known = {r.task_id for r in store.records(provider=provider) if r.task_id}
    unclaimed = [t for t in tasks if t.task_id and t.task_id not in known]
    now = time.time()

    def inside(task: TaskState, record: RequestRecord) -> bool:
        """Could `task` be this request's? Same model, created in the call's window, and the same
        seed, resolution and duration where both sides know them."""
        created = _created_at(task)
        low, high = windows[record.request_id]
        if created is None or not low <= created <= high or task.raw.get("model") != record.model:
            return False
        asked = record.request
        seed, resolution, duration = (
            asked.get("seed"),
            asked.get("resolution"),
            asked.get("duration"),
        )
        return not (
            (seed not in (None, -1) and task.seed_used is not None and task.seed_used != seed)
            or (resolution and task.resolution and task.resolution != resolution)
            or (duration and task.duration_s and task.duration_s != duration)
        )

    for record in unknown:
        candidates = [t for t in unclaimed if inside(t, record)]
        rivals = [r for r in unknown if r is not record and any(inside(t, r) for t in candidates)]
        if len(candidates) == 1 and not rivals:
            task_id = candidates[0].task_id
            if store.move(record.request_id, Move.RECONCILED, task_id=task_id, error_kind=None,
                          error_message=None):  # fmt: skip
                report.adopted += 1
                unclaimed.remove(candidates[0])
        elif (
            complete
            and now > windows[record.request_id][1]
            and record.error_kind != ErrorKind.OUTCOME_UNKNOWN_UNDECIDED
        ):
            # Looked at after its window closed and still undecidable: an operator's call.
            store.move(
                record.request_id,
                Move.RECONCILE_UNDECIDED,
                error_kind=ErrorKind.OUTCOME_UNKNOWN_UNDECIDED,
            )
            report.undecided += 1
    if report.adopted or report.undecided:
        log.warning("%s: reconciled unknown submissions: %s", provider, report)
    return report
