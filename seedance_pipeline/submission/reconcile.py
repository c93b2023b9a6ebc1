"""Finding the tasks behind unknown outcomes, where the provider can list its tasks (ModelArk).

A create whose answer was lost may or may not have made a task. Listing the provider's recent tasks
settles it: exactly one unclaimed task of the same model created within the call's window is that
request's task (polling resumes); none at all, once the window is fully listed, means the create
never took effect and the request may safely be sent again. Anything ambiguous stays `unknown`
for an operator (`seedance-pipeline resolve-unknown`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from seedance_pipeline.providers import TaskState
from seedance_pipeline.providers.client import ProviderClient
from seedance_pipeline.state.store import IN_FLIGHT, PENDING, UNKNOWN, RequestRecord, StateStore

log = logging.getLogger(__name__)

MARGIN_S = 5.0
PAGE_SIZE = 100
MAX_PAGES = 20


@dataclass
class ReconcileReport:
    adopted: int = 0
    released: int = 0
    ambiguous: int = 0


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
    unknown = [r for r in store.records(provider=provider, statuses=[UNKNOWN]) if r.submitted_at]
    if not unknown or client.adapter.build_list(1, 1) is None:
        return report
    timeout = client.config.timeout_s
    windows: dict[str, tuple[float, float]] = {}
    for r in unknown:
        sent = r.submitted_at or 0.0
        windows[r.request_id] = (sent - MARGIN_S, sent + timeout + MARGIN_S)
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
            if store.transition(record.request_id, UNKNOWN, IN_FLIGHT, "reconciled: found in the provider's task list",
                                task_id=task_id, error_kind=None, error_message=None):  # fmt: skip
                report.adopted += 1
                unclaimed.remove(candidates[0])
        elif not candidates and complete and now > windows[record.request_id][1]:
            if store.transition(record.request_id, UNKNOWN, PENDING,
                                "reconciled: the provider has no task for it; safe to send again",
                                error_kind=None, error_message=None, submitted_at=None):  # fmt: skip
                report.released += 1
        else:
            report.ambiguous += 1
    if report.adopted or report.released:
        log.warning("%s: reconciled unknown submissions: %s", provider, report)
    return report
