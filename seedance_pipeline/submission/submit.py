"""Submitting a batch's pending requests to one provider, safely.

Each request is claimed in the state store (`pending → submitting`, slot and budget reserved) before
the provider is called, and its outcome written right after (`state.writes`: on PostgreSQL without
blocking the pass's other calls). A create call whose outcome is unknown is recorded `unknown`,
never retried here; retryable refusals put the request back to `pending`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from seedance_pipeline.providers import ErrorKind, GenerationRequest, ProviderError, adapter_for
from seedance_pipeline.providers.client import ProviderClient
from seedance_pipeline.qc import checked_columns
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.claims import start_of_utc_day
from seedance_pipeline.state.lifecycle import Move, RequestStatus
from seedance_pipeline.state.store import NO_LONGER_PENDING, RequestRecord, StateStore
from seedance_pipeline.state.writes import Writes
from seedance_pipeline.storage.videos import VideoLost, keep_bytes

log = logging.getLogger(__name__)

# Between the claim and the call, and our clock against a slow write: added to the call's deadline.
CLAIM_MARGIN_S = 30.0

# Refusals that concern the account, not the request: stop submitting to that provider and retry later.
STOP_KINDS = (
    ErrorKind.AUTHENTICATION,
    ErrorKind.INSUFFICIENT_CREDIT,
    ErrorKind.RATE_LIMITED,
    ErrorKind.TRANSIENT,
)


@dataclass
class SubmitReport:
    submitted: int = 0
    finished: int = 0  # synchronous providers deliver at once
    failed: int = 0
    unknown: int = 0
    waiting: Counter[str] = field(default_factory=Counter)  # why requests still wait
    stopped: str | None = None


def _attempt_stem(settings: PipelineSettings, record: RequestRecord) -> str:
    """`<request_id>` for a first attempt, `<request_id>.<n>` for a later one, so a retry never
    overwrites an earlier attempt's video (the `attempts` table points at it)."""
    n = record.attempts_before + 1
    suffix = f".{n}" if n > 1 else ""
    return f"{settings.videos}/{record.batch}/{record.request_id}{suffix}"


def video_destination(settings: PipelineSettings, record: RequestRecord) -> str:
    return f"{_attempt_stem(settings, record)}.mp4"


def last_frame_destination(settings: PipelineSettings, record: RequestRecord) -> str:
    """Beside the video: the provider's last frame, where a row asked for it."""
    return f"{_attempt_stem(settings, record)}.last.png"


def deliver(store: StateStore, settings: PipelineSettings, record: RequestRecord, state_bytes: bytes,
            tokens: int | None, cost: float, seed_used: int | None) -> bool:  # fmt: skip
    """Keep a video that arrived inline and mark the request succeeded."""
    try:
        kept = keep_bytes(state_bytes, video_destination(settings, record))
    except VideoLost as exc:
        return store.move(record.request_id, Move.INLINE_VIDEO_UNREADABLE,
                          error_kind=ErrorKind.VIDEO_LOST, error_message=str(exc), cost_usd=cost,
                          tokens=tokens, completed_at=time.time())  # fmt: skip
    size = (
        (record.image_width, record.image_height)
        if record.image_width and record.image_height
        else None
    )
    qc = checked_columns(kept.uri, GenerationRequest(**record.request), size, settings.qc)
    kept_now = store.move(
        record.request_id, Move.DELIVERED_INLINE, **qc,
        video_uri=kept.uri, video_sha256=kept.sha256, video_bytes=kept.bytes, video_width=kept.width,
        video_height=kept.height, video_fps=kept.fps, video_duration_s=kept.duration_s,
        cost_usd=cost, tokens=tokens, seed_used=seed_used, completed_at=time.time(),
    )  # fmt: skip
    if kept_now and record.attempts_before:  # a retry: the ledger keeps the best attempt's video
        store.keep_best_attempt(record.request_id)
    return kept_now


async def submit_pending(
    store: StateStore,
    writes: Writes,
    client: ProviderClient,
    settings: PipelineSettings,
    batch: str | None = None,
    run_id: str | None = None,
) -> SubmitReport:
    """Submit `batch`'s (or every batch's) pending requests for the client's provider, within the
    provider's limit of tasks in flight and the spend cap, claiming each and recording its task
    through `writes` (`submission_writes(store)`, opened once for all of a run's passes). Returns
    what happened and why the rest wait."""
    provider = client.adapter.name
    adapter = adapter_for(provider)
    report = SubmitReport()
    day_start = start_of_utc_day()
    limit = settings.in_flight_limit(provider)
    # Only as many requests as could get a slot are read and tried, so a pass costs O(free slots),
    # not O(pending); at least one, so a full provider still says why the rest wait.
    current = store.current_limit(provider, limit)
    free = current - store.active_by_provider().get(provider, 0)
    pending = store.records(
        batch=batch, provider=provider, statuses=[RequestStatus.PENDING], limit=max(1, free)
    )
    gate = asyncio.Semaphore(max(1, settings.submit_concurrency))

    # Adaptive concurrency: 429s halve the provider's limit, accepted tasks raise it again (a
    # write only while it is below the configured one). The client calls these hooks mid-call; the
    # writes run beside the pass (`writes.later`: never blocking the loop) and end before it does.
    lowered = [current < limit]

    async def change_limit(note: Callable[[str, int], Awaitable[int]]) -> None:
        lowered[0] = await note(provider, limit) < limit  # the last to end knows the limit now

    def rate_limited() -> None:
        lowered[0] = True
        writes.later(change_limit(writes.note_rate_limited), f"{provider}: lowering its limit")

    def accepted() -> None:
        if lowered[0]:
            writes.later(change_limit(writes.note_accepted), f"{provider}: raising its limit")

    client.on_rate_limited, client.on_accepted = rate_limited, accepted

    # The first refusal (a full provider, a spend cap) holds for the rest of this pass too: they
    # wait without a claim each, and their reason is written in one statement.
    refused: list[str] = []

    def held_back(record: RequestRecord) -> bool:
        if report.stopped:
            report.waiting[f"submission to {provider} stopped"] += 1
        return bool(report.stopped or refused)

    async def one(record: RequestRecord) -> None:
        if held_back(record):
            return
        async with gate:
            if held_back(record):
                return
            caps = settings.spend_caps(record.batch, run_id, day_start)
            reason = await writes.claim(
                record.request_id, provider, limit, record.cost_usd_estimated,
                sandbox=client.config.sandbox, caps=caps, run_id=run_id,
                call_deadline_s=client.config.submit_deadline_s + CLAIM_MARGIN_S,
            )  # fmt: skip
            if reason is not None:
                if reason != NO_LONGER_PENDING:
                    refused.append(reason)
                return
            if report.stopped:  # stopped while this claim was on its way: it waits too
                store.move(record.request_id, Move.BACK_TO_PENDING, reason=report.stopped,
                           submitted_at=None, sandbox=None)  # fmt: skip
                report.waiting[f"submission to {provider} stopped"] += 1
                return
            request = GenerationRequest(**record.request)
            try:
                state = await client.submit(request)
            except ProviderError as error:
                _record_refusal(store, record, error, report)
                return
            except (
                Exception
            ) as exc:  # never leave a claimed row in `submitting`: it may have billed
                log.warning("request %s: create call failed unexpectedly", record.request_id,
                            exc_info=True)  # fmt: skip
                unexpected = ProviderError(
                    ErrorKind.TRANSIENT, f"unexpected {type(exc).__name__} in the create call",
                    provider=provider, outcome_unknown=True,
                )  # fmt: skip
                _record_refusal(store, record, unexpected, report)
                return
            report.submitted += 1
            if state.video_bytes is not None:  # synchronous provider: the video itself
                size = (
                    (record.image_width, record.image_height)
                    if record.image_width and record.image_height
                    else None
                )
                cost = adapter.actual_cost(request, state, size)
                # Copying and checking a video takes a while: off the loop, so the pass's other
                # calls (and any claim pipeline holding its lock rows) go on meanwhile.
                await asyncio.to_thread(
                    deliver,
                    store,
                    settings,
                    record,
                    state.video_bytes,
                    cost.tokens,
                    cost.usd,
                    None,
                )
                report.finished += 1
            else:
                if not await writes.move(
                    record.request_id, Move.TASK_CREATED, task_id=state.task_id
                ):
                    log.error("request %s: task %s was created but its record had moved on",
                              record.request_id, state.task_id)  # fmt: skip

    await asyncio.gather(*(one(r) for r in pending))
    await writes.settled()
    if refused:
        report.waiting[refused[0].split(" (")[0]] += store.note_wait(provider, batch, refused[0])
    return report


def _record_refusal(
    store: StateStore, record: RequestRecord, error: ProviderError, report: SubmitReport
) -> None:
    message = str(error)
    if error.outcome_unknown:
        store.move(record.request_id, Move.OUTCOME_UNKNOWN, error_kind=ErrorKind.OUTCOME_UNKNOWN,
                   error_message=message, sent_at=error.sent_at)  # fmt: skip
        report.unknown += 1
        report.stopped = message  # whatever hid this answer may hit the next call too: stop for now
        log.error("request %s: outcome unknown, NOT resubmitted: %s", record.request_id, message)
    elif error.kind in STOP_KINDS:
        store.move(record.request_id, Move.BACK_TO_PENDING, reason=message, submitted_at=None,
                   sandbox=None)  # fmt: skip
        report.stopped = message
        report.waiting[f"{error.kind}"] += 1
        log.warning("stopping submissions to %s for now: %s", record.provider, message)
    else:
        store.move(record.request_id, Move.REFUSED, error_kind=error.kind, error_message=message,
                   cost_usd=0.0, completed_at=time.time())  # fmt: skip
        report.failed += 1
