"""One polling pass over the tasks in flight: concurrent, time-boxed, least-recently-polled first.

The pass is what the Dagster sensor runs on each tick and what the headless command loops on. When
its time box is spent it starts no new poll and cancels those still running (polls and downloads
are safe to repeat), so a tick stays well under Dagster's 60 s sensor timeout whatever the backlog;
the next tick starts with the tasks this one did not reach.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from seedance_pipeline.providers import (
    ErrorKind,
    GenerationRequest,
    ProviderError,
    TaskState,
    TaskStatus,
    adapter_for,
)
from seedance_pipeline.providers.client import MALFORMED, ProviderClient, tls_context
from seedance_pipeline.qc import checked_columns
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.lifecycle import Move, RequestStatus
from seedance_pipeline.state.store import RequestRecord, StateStore
from seedance_pipeline.storage.videos import (
    MAX_DOWNLOAD_S,
    DownloadFailed,
    DownloadPolicy,
    VideoLost,
    download,
    download_frame,
)
from seedance_pipeline.submission.submit import last_frame_destination, video_destination

log = logging.getLogger(__name__)

# A task that answers nothing we can read this many polls in a row is given up on (as `unknown`:
# it may have run and billed, so its reservation stays).
MAX_MALFORMED_POLLS = 20
# Failed attempts to keep a paid video before it is recorded lost.
MAX_FETCH_ATTEMPTS = 6
# The longest task lifetime any provider documents (ModelArk's `execution_expires_after`, at most
# 259200 s); providers that document none are given this much.
LONGEST_TASK_LIFETIME_S = 259_200
LIFETIME_MARGIN_S = 3_600.0  # the provider's clock, and its last status change, against ours

ENDINGS = {
    TaskStatus.FAILED: RequestStatus.FAILED,
    TaskStatus.EXPIRED: RequestStatus.EXPIRED,
    TaskStatus.CANCELLED: RequestStatus.CANCELLED,
}


@dataclass
class PollReport:
    polled: int = 0
    finished: int = 0
    errors: int = 0
    not_reached: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def summary(self) -> str:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.by_outcome.items())) or "none"
        return (f"polled {self.polled}, finished {self.finished} ({outcomes}), errors {self.errors}, "
                f"not reached {self.not_reached}, in {self.elapsed_s:.1f} s")  # fmt: skip


async def poll_once(
    store: StateStore,
    clients: Mapping[str, ProviderClient],
    settings: PipelineSettings,
    time_box_s: float | None = None,
    video_http: httpx.AsyncClient | None = None,
    batch: str | None = None,
) -> PollReport:
    """Poll the tasks in flight of the clients' providers (of `batch` only, when given: a
    submission step that follows its own tasks); a task polled by two passes at once is safe, as
    every status change is a compare-and-set."""
    started = time.monotonic()
    deadline = started + (settings.poll_time_box_s if time_box_s is None else time_box_s)
    report = PollReport()
    only = next(iter(clients)) if len(clients) == 1 else None  # read only that provider's rows
    records = [
        r
        for r in store.records(
            batch=batch,
            provider=only,
            statuses=[RequestStatus.IN_FLIGHT, RequestStatus.FETCHING],
            order_by_poll=True,
        )
        if r.provider in clients
    ]
    gate = asyncio.Semaphore(max(1, settings.poll_concurrency))
    touched: list[str] = []
    own_http = video_http is None
    # No credentials: the video host is not the provider's API host.
    http = video_http or httpx.AsyncClient(
        timeout=httpx.Timeout(120.0, connect=10.0), follow_redirects=True, verify=tls_context()
    )

    async def one(record: RequestRecord) -> None:
        async with gate:
            if time.monotonic() >= deadline:
                report.not_reached += 1
                return
            touched.append(record.request_id)
            try:
                if _too_long_in_flight(store, record):
                    report.finished += 1
                    return
                await _advance(store, clients[record.provider], settings, record, http, report,
                               deadline)  # fmt: skip
            except ProviderError as error:
                report.errors += 1
                if error.kind is ErrorKind.NOT_FOUND:
                    _not_found(store, settings, record, error)
                elif error.code == MALFORMED:
                    if _unreadable(store, record, str(error)):
                        report.finished += 1
                else:
                    log.info("poll of %s failed, will retry: %s", record.task_id, error)
            except (
                Exception
            ) as exc:  # one bad record must not starve the others (their URLs expire)
                report.errors += 1
                log.warning(
                    "poll of request %s failed; will retry (%s)", record.request_id,
                    type(exc).__name__, exc_info=True,
                )  # fmt: skip
                try:
                    if _unreadable(store, record, f"unexpected {type(exc).__name__}"):
                        report.finished += 1
                except Exception:
                    log.exception("request %s: could not count the failed poll", record.request_id)

    try:
        # The time box is a hard limit: whatever is still running when it ends is cancelled and
        # simply polled again next tick (polls and downloads are safe to repeat).
        await asyncio.wait_for(
            asyncio.gather(*(one(r) for r in records)), max(0.0, deadline - time.monotonic())
        )
    except TimeoutError:
        report.not_reached += len(records) - len(touched)
    finally:
        store.mark_polled(touched)
        if own_http:
            await http.aclose()
    report.elapsed_s = time.monotonic() - started
    return report


def max_in_flight_s(record: RequestRecord) -> float:
    """How long a task may stay in flight: its provider's documented lifetime (the request's own
    `execution_expires_after`, else the model's default, else the longest any provider documents),
    plus a margin."""
    documented: int | None = record.request.get("execution_expires_after")
    if not documented:
        try:
            model = adapter_for(record.provider).spec.model(record.model)
            documented = model.execution_expires_after_default
        except KeyError:
            documented = None
    return float(documented or LONGEST_TASK_LIFETIME_S) + LIFETIME_MARGIN_S


def _too_long_in_flight(store: StateStore, record: RequestRecord) -> bool:
    """End a task that outlived its provider's documented lifetime: the provider has given up on
    it, whatever it says. Recorded `unknown` (it may have run and billed), not retried."""
    if record.status != RequestStatus.IN_FLIGHT or record.submitted_at is None:
        return False
    age = time.time() - record.submitted_at
    limit = max_in_flight_s(record)
    if age <= limit:
        return False
    reason = (f"in flight {age / 3600:.1f} h, past the provider's documented task lifetime "
              f"({limit / 3600:.1f} h with margin); check the provider's dashboard")  # fmt: skip
    log.warning("request %s (task %s) given up: %s", record.request_id, record.task_id, reason)
    return store.move(record.request_id, Move.GAVE_UP, error_kind=ErrorKind.TOO_LONG_IN_FLIGHT,
                      error_message=reason)  # fmt: skip


def _unreadable(store: StateStore, record: RequestRecord, why: str) -> bool:
    """Count an answer we could not read (or a poll that failed unexpectedly); past the limit, end
    the task with the reason: `unknown` while in flight, `video lost` once paid. True if ended."""
    if record.status == RequestStatus.FETCHING:
        return _failed_fetch(store, record, why)
    count = store.count_attempt(record.request_id, "malformed_polls")
    if count < MAX_MALFORMED_POLLS:
        log.warning("request %s: unreadable answer %d of %d allowed: %s", record.request_id,
                    count, MAX_MALFORMED_POLLS, why)  # fmt: skip
        return False
    reason = f"the provider answered {count} times in a row with nothing we could read: {why}"
    log.error("request %s (task %s) given up: %s", record.request_id, record.task_id, reason)
    return store.move(record.request_id, Move.GAVE_UP, error_kind=ErrorKind.MALFORMED_ANSWERS,
                      error_message=reason)  # fmt: skip


def _failed_fetch(store: StateStore, record: RequestRecord, why: str) -> bool:
    """Count a failed attempt to keep a paid video; past the limit it is recorded lost."""
    count = store.count_attempt(record.request_id, "fetch_attempts")
    if count < MAX_FETCH_ATTEMPTS:
        log.warning("download of %s failed (attempt %d of %d), will retry: %s", record.request_id,
                    count, MAX_FETCH_ATTEMPTS, why)  # fmt: skip
        return False
    reason = f"paid video lost: {count} attempts to keep it failed, the last: {why}"
    log.error("request %s: %s", record.request_id, reason)
    return store.move(record.request_id, Move.VIDEO_LOST, error_kind=ErrorKind.VIDEO_LOST,
                      error_message=reason, completed_at=time.time())  # fmt: skip


def _not_found(
    store: StateStore, settings: PipelineSettings, record: RequestRecord, error: ProviderError
) -> None:
    """A task the provider says it does not know. A wrong base URL says that of every task, so a
    paid (`fetching`) one is never failed for it, and an in-flight one only after a grace period,
    and then as `unknown` for an operator: it may have run and billed."""
    if record.status == RequestStatus.FETCHING:
        log.error(
            "task %s reported succeeded earlier but is now not found: %s", record.task_id, error
        )
        return
    age = time.time() - (record.submitted_at or time.time())
    if age < settings.not_found_grace_s:
        log.error(
            "task %s not found (%.0f s after submission); will ask again: %s",
            record.task_id,
            age,
            error,
        )
        return
    store.move(record.request_id, Move.NOT_FOUND, error_kind=error.kind, error_message=str(error))


async def _advance(
    store: StateStore,
    client: ProviderClient,
    settings: PipelineSettings,
    record: RequestRecord,
    http: httpx.AsyncClient,
    report: PollReport,
    deadline: float | None = None,
) -> None:
    adapter = adapter_for(record.provider)
    state: TaskState = await client.poll(record.task_id or "")
    report.polled += 1
    if record.malformed_polls:
        store.reset_counter(record.request_id, "malformed_polls")
    if not state.status.terminal:
        return
    request = GenerationRequest(**record.request)
    size = (
        (record.image_width, record.image_height)
        if record.image_width and record.image_height
        else None
    )
    cost = adapter.actual_cost(request, state, size)
    if cost.anomaly:
        log.warning("request %s: reported usage not trusted, the documented formula is used: %s",
                    record.request_id, cost.anomaly)  # fmt: skip
    now = time.time()
    if state.status in ENDINGS:
        error = state.error
        if store.move(record.request_id, Move.TASK_ENDED, to=ENDINGS[state.status],
                      error_kind=error.kind if error else None,
                      error_message=error.message if error else None,
                      cost_usd=cost.usd, tokens=cost.tokens, completed_at=now,
                      cost_anomaly=cost.anomaly):  # fmt: skip
            report.finished += 1
            report.by_outcome[ENDINGS[state.status]] = (
                report.by_outcome.get(ENDINGS[state.status], 0) + 1
            )
        return
    # Succeeded: note what the provider said first, then copy the video.
    store.move(record.request_id, Move.PROVIDER_SUCCEEDED, video_url=state.video_url,
               seed_used=state.seed_used, tokens=cost.tokens, cost_usd=cost.usd,
               cost_anomaly=cost.anomaly)  # fmt: skip
    record.status = RequestStatus.FETCHING
    frame_url = state.last_frame_url
    policy = DownloadPolicy.for_base_url(client.config.base_url)
    left = (deadline - time.monotonic()) if deadline is not None else MAX_DOWNLOAD_S
    # Ends a little before the pass's time box, so that a slow download is counted as an attempt
    # rather than cancelled uncounted with the pass.
    budget = max(0.5, min(MAX_DOWNLOAD_S, left - min(2.0, left * 0.2)))
    try:
        try:
            kept = await download(http, state.video_url or "", video_destination(settings, record),
                                  policy, budget)  # fmt: skip
        except VideoLost:
            if not adapter.spec.refreshes_video_url:
                raise
            fresh = await client.poll(record.task_id or "")  # the provider signs a new URL
            frame_url = fresh.last_frame_url
            kept = await download(http, fresh.video_url or "", video_destination(settings, record),
                                  policy, budget)  # fmt: skip
    except VideoLost as exc:
        no_refresh = (
            "" if adapter.spec.refreshes_video_url else "; the provider offers no fresh URL"
        )
        reason = f"paid video lost: {exc}{no_refresh}"
        store.move(record.request_id, Move.VIDEO_LOST, error_kind=ErrorKind.VIDEO_LOST,
                   error_message=reason, completed_at=now)  # fmt: skip
        report.finished += 1
        report.by_outcome["succeeded (video lost)"] = (
            report.by_outcome.get("succeeded (video lost)", 0) + 1
        )
        return
    except (DownloadFailed, httpx.HTTPError) as exc:
        report.errors += 1
        if _failed_fetch(store, record, str(exc) or type(exc).__name__):
            report.finished += 1
            report.by_outcome["succeeded (video lost)"] = (
                report.by_outcome.get("succeeded (video lost)", 0) + 1
            )
        return
    last_frame_uri = None
    if frame_url:  # asked for with return_last_frame; the video is what was paid for
        try:
            last_frame_uri = await download_frame(
                http, frame_url, last_frame_destination(settings, record), policy, budget
            )
        except (VideoLost, DownloadFailed, httpx.HTTPError) as exc:
            log.warning("last frame of %s not kept: %s", record.request_id, exc)
    # QC once, on the durable copy, in a thread (decoding takes a fraction of a second); its
    # verdict is written with the move that keeps the video, never instead of it.
    qc = await asyncio.to_thread(checked_columns, kept.uri, request, size, settings.qc)
    if store.move(record.request_id, Move.KEEP_VIDEO, **qc, video_uri=kept.uri, video_sha256=kept.sha256,
                  video_bytes=kept.bytes, video_width=kept.width, video_height=kept.height,
                  video_fps=kept.fps, video_duration_s=kept.duration_s,
                  last_frame_uri=last_frame_uri, completed_at=now):  # fmt: skip
        if record.attempts_before:  # a retry: the ledger keeps the best attempt's video
            store.keep_best_attempt(record.request_id)
        report.finished += 1
        report.by_outcome[RequestStatus.SUCCEEDED] = (
            report.by_outcome.get(RequestStatus.SUCCEEDED, 0) + 1
        )
