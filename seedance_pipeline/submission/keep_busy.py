"""A submission step that keeps its provider busy: it submits its batch's pending requests, then
stays, following its own tasks every few seconds and submitting again as they free slots.

Under the Dagster daemon a step that submitted once and ended left the provider idle until the
task sensor's next tick (15 s) noticed the finished tasks and a new run had started (about 5 s):
1.56 × the provider's bound, measured. Staying, the step notices a finished task within
`follow_interval_s` and fills its slot in the same second.

Nothing here is new about safety: every submission is `submit_pending`'s claim before the call and
compare-and-set after it, and following is the sensor's own polling pass on this batch's tasks, so a
tick that polls the same task at once is harmless. The step ends when its share of the batch has
nothing pending and nothing in flight, when it can do nothing more now (the provider is full with
other batches' tasks, a budget is spent, submission was stopped), when another batch waits for the
provider and this one has nothing left to send, or after `submission_stay_s`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Protocol

from seedance_pipeline.providers.client import ProviderClient
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.lifecycle import ACTIVE, RequestStatus
from seedance_pipeline.state.store import StateStore
from seedance_pipeline.state.writes import submission_writes
from seedance_pipeline.submission.clients import open_provider_clients
from seedance_pipeline.submission.submit import SubmitReport, submit_pending

_CHECK_S = 0.5  # how often free slots are looked at while following


class Followed(Protocol):
    """What following a batch's tasks once reports (the polling stage's `PollReport`)."""

    polled: int
    finished: int


class FollowTasks(Protocol):
    """One polling pass over `batch`'s tasks in flight at the clients' providers. It belongs to
    the polling stage, a later one than this: the wiring (`definitions.py`) hands it in."""

    def __call__(
        self,
        store: StateStore,
        clients: Mapping[str, ProviderClient],
        settings: PipelineSettings,
        time_box_s: float | None = None,
        *,
        batch: str | None = None,
    ) -> Awaitable[Followed]: ...


@dataclass(frozen=True)
class Wave:
    """One submission pass that sent something: an event on the batch's partition."""

    number: int
    submitted: int
    finished: int  # synchronous providers deliver at once
    refused: int
    outcome_unknown: int
    pending: int  # left in this batch for this provider after the wave
    in_flight: int  # this batch's tasks at the provider (or being copied) after the wave
    followed_finished: int  # tasks of this batch seen finished since the previous wave
    at: float

    def metadata(self) -> dict[str, int | float]:
        return dataclasses.asdict(self)


@dataclass
class Stay:
    """What a staying submission step did in all: its waves and why it ended."""

    report: SubmitReport = field(default_factory=SubmitReport)
    waves: int = 0
    follows: int = 0
    finished_followed: int = 0
    ended: str = ""
    stayed_s: float = 0.0

    def summary(self) -> str:
        r = self.report
        return (f"{self.waves} waves, submitted {r.submitted}, refused {r.failed}, outcome unknown "
                f"{r.unknown}, {self.finished_followed} finished while following ({self.follows} "
                f"passes) in {self.stayed_s:.1f} s; ended: {self.ended}")  # fmt: skip


def _add(total: SubmitReport, wave: SubmitReport) -> None:
    total.submitted += wave.submitted
    total.finished += wave.finished
    total.failed += wave.failed
    total.unknown += wave.unknown
    total.waiting = Counter(wave.waiting)  # the latest wave says why the rest wait now
    total.stopped = wave.stopped or total.stopped


def _share(store: StateStore, batch: str, provider: str) -> tuple[int, int]:
    """(pending, in flight or being copied) of this batch at this provider."""
    counts = store.counts(batch=batch, provider=provider)
    return counts.get(RequestStatus.PENDING, 0), sum(counts.get(s, 0) for s in ACTIVE)


def _free_slots(store: StateStore, settings: PipelineSettings, provider: str) -> int:
    limit = store.current_limit(provider, settings.in_flight_limit(provider))
    return limit - store.active_by_provider().get(provider, 0)


def _others_waiting(store: StateStore, batch: str, provider: str) -> bool:
    return bool(store.pending_batches_by_provider().get(provider, set()) - {batch})


async def _stay(
    settings: PipelineSettings,
    batch: str,
    provider: str,
    run_id: str | None,
    follow: FollowTasks,
    on_wave: Callable[[Wave], None],
) -> Stay:
    store = settings.store()
    stay = Stay()
    started = time.monotonic()
    deadline = started + max(0.0, settings.submission_stay_s)
    followed = passes = 0

    async def follow_later() -> Followed:
        await asyncio.sleep(settings.follow_interval_s)
        return await follow(store, clients, settings, settings.poll_time_box_s, batch=batch)

    following: asyncio.Task[Followed] | None = None
    async with AsyncExitStack() as stack:
        clients = await open_provider_clients(settings, [provider], stack)
        writes = await stack.enter_async_context(submission_writes(store))
        while True:
            # A full provider is read, not claimed: no lock taken and no wait reason rewritten
            # every half second while our own tasks run.
            full = passes > 0 and _free_slots(store, settings, provider) <= 0
            wave = (
                SubmitReport()
                if full
                else await submit_pending(store, writes, clients[provider], settings, batch, run_id)
            )
            passes += 1
            _add(stay.report, wave)
            pending, in_flight = _share(store, batch, provider)
            sent = wave.submitted + wave.failed + wave.unknown
            if sent:
                stay.waves += 1
                on_wave(Wave(stay.waves, wave.submitted, wave.finished, wave.failed, wave.unknown,
                             pending, in_flight, followed, time.time()))  # fmt: skip
                followed = 0
            if settings.submission_stay_s <= 0:
                stay.ended = "one pass (submission_stay_s is 0)"
                break
            if wave.stopped:
                stay.ended = f"submission stopped: {wave.stopped}"
                break
            if not pending and not in_flight:
                stay.ended = "nothing pending or in flight"
                break
            if not in_flight and not sent:  # nothing of ours will free a slot: others hold them
                why = next(iter(wave.waiting), "no free slot")
                stay.ended = f"{pending} pending wait ({why}); the task sensor launches again"
                break
            if not pending and _others_waiting(store, batch, provider):
                stay.ended = "nothing left to send, another batch waits for the provider"
                break
            if time.monotonic() >= deadline:
                stay.ended = f"stayed {settings.submission_stay_s:g} s (submission_stay_s)"
                break
            # Following runs beside submitting: a finished task frees its slot as soon as the
            # provider says so (`fetching` does not count), so the next request goes out while
            # the finished videos are still being copied.
            if following is None and in_flight:
                following = asyncio.create_task(follow_later())
            if following is not None:
                await asyncio.wait({following}, timeout=_CHECK_S)
                if following.done():
                    finished = following.result().finished
                    stay.follows += 1
                    stay.finished_followed += finished
                    followed += finished
                    following = None
        if following is not None:  # its copies are paid for: let them finish
            stay.finished_followed += (await following).finished
            stay.follows += 1
    stay.stayed_s = time.monotonic() - started
    return stay


def keep_busy(
    settings: PipelineSettings,
    batch: str,
    provider: str,
    run_id: str | None,
    follow: FollowTasks,
    on_wave: Callable[[Wave], None] = lambda wave: None,
) -> Stay:
    """Submit `batch`'s pending requests for `provider`, and stay (at most `submission_stay_s`)
    following the batch's tasks and submitting as they free slots; `on_wave` hears of every pass
    that sent something. With nothing pending for the provider it returns at once."""
    if not _share(settings.store(), batch, provider)[0]:
        return Stay(ended="nothing pending")
    return asyncio.run(_stay(settings, batch, provider, run_id, follow, on_wave))
