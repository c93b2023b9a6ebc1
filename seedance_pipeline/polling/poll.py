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
from seedance_pipeline.providers.client import ProviderClient, tls_context
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.lifecycle import Move, RequestStatus
from seedance_pipeline.state.store import RequestRecord, StateStore
from seedance_pipeline.storage.videos import VideoLost, download, download_frame
from seedance_pipeline.submission.submit import last_frame_destination, video_destination

log = logging.getLogger(__name__)

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
                await _advance(store, clients[record.provider], settings, record, http, report)
            except ProviderError as error:
                report.errors += 1
                if error.kind is ErrorKind.NOT_FOUND:
                    _not_found(store, settings, record, error)
                else:
                    log.info("poll of %s failed, will retry: %s", record.task_id, error)
            except Exception:  # one bad record must not starve the others (their URLs expire)
                report.errors += 1
                log.exception(
                    "poll of request %s (task %s) failed; will retry",
                    record.request_id,
                    record.task_id,
                )

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
) -> None:
    adapter = adapter_for(record.provider)
    state: TaskState = await client.poll(record.task_id or "")
    report.polled += 1
    if not state.status.terminal:
        return
    request = GenerationRequest(**record.request)
    size = (
        (record.image_width, record.image_height)
        if record.image_width and record.image_height
        else None
    )
    cost = adapter.actual_cost(request, state, size)
    now = time.time()
    if state.status in ENDINGS:
        error = state.error
        if store.move(record.request_id, Move.TASK_ENDED, to=ENDINGS[state.status],
                      error_kind=error.kind if error else None,
                      error_message=error.message if error else None,
                      cost_usd=cost.usd, tokens=cost.tokens, completed_at=now):  # fmt: skip
            report.finished += 1
            report.by_outcome[ENDINGS[state.status]] = (
                report.by_outcome.get(ENDINGS[state.status], 0) + 1
            )
        return
    # Succeeded: note what the provider said first, then copy the video.
    store.move(record.request_id, Move.PROVIDER_SUCCEEDED, video_url=state.video_url,
               seed_used=state.seed_used, tokens=cost.tokens, cost_usd=cost.usd)  # fmt: skip
    frame_url = state.last_frame_url
    try:
        try:
            kept = await download(http, state.video_url or "", video_destination(settings, record))
        except VideoLost:
            if not adapter.spec.refreshes_video_url:
                raise
            fresh = await client.poll(record.task_id or "")  # the provider signs a new URL
            frame_url = fresh.last_frame_url
            kept = await download(http, fresh.video_url or "", video_destination(settings, record))
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
    except httpx.HTTPError as exc:
        log.info("download of %s failed, will retry: %s", record.request_id, type(exc).__name__)
        report.errors += 1
        return
    last_frame_uri = None
    if frame_url:  # asked for with return_last_frame; the video is what was paid for
        try:
            last_frame_uri = await download_frame(
                http, frame_url, last_frame_destination(settings, record)
            )
        except (VideoLost, httpx.HTTPError) as exc:
            log.warning("last frame of %s not kept: %s", record.request_id, exc)
    if store.move(record.request_id, Move.KEEP_VIDEO, video_uri=kept.uri, video_sha256=kept.sha256,
                  video_bytes=kept.bytes, video_width=kept.width, video_height=kept.height,
                  video_fps=kept.fps, video_duration_s=kept.duration_s,
                  last_frame_uri=last_frame_uri, completed_at=now):  # fmt: skip
        report.finished += 1
        report.by_outcome[RequestStatus.SUCCEEDED] = (
            report.by_outcome.get(RequestStatus.SUCCEEDED, 0) + 1
        )
