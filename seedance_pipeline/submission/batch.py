"""A batch's submissions, as the submission assets, the sensor and the schedule see them: what to
submit, what is submittable, and what a submission pass did."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.claims import start_of_utc_day
from seedance_pipeline.state.lifecycle import ACTIVE, RequestStatus
from seedance_pipeline.state.writes import submission_writes
from seedance_pipeline.submission.clients import open_provider_clients
from seedance_pipeline.submission.submit import SubmitReport, submit_pending


async def _submit(
    settings: PipelineSettings, batch: str, providers: list[str], run_id: str | None
) -> dict[str, SubmitReport]:
    store = settings.store()
    async with AsyncExitStack() as stack:
        clients = await open_provider_clients(settings, providers, stack)
        writes = await stack.enter_async_context(submission_writes(store))
        reports = await asyncio.gather(
            *(submit_pending(store, writes, clients[p], settings, batch, run_id) for p in providers)
        )
    return dict(zip(providers, reports, strict=True))


def submit_batch(
    settings: PipelineSettings, batch: str, providers: Iterable[str], run_id: str | None = None
) -> dict[str, SubmitReport]:
    """Submit a batch's pending requests for these providers (those with pending work); `run_id`
    scopes the per-run budget."""
    store = settings.store()
    wanted = set(providers)
    present = sorted(
        provider
        for provider, batches in store.pending_batches_by_provider().items()
        if provider in wanted and batch in batches
    )  # one aggregate, not every pending record read twice
    if not present:
        return {}
    return asyncio.run(_submit(settings, batch, present, run_id))


@dataclass(frozen=True)
class Outlook:
    """What can be submitted now: the batches, or why none (shown in sensor and schedule ticks)."""

    batches: list[str]
    why_none: str = ""
    # batch → every provider with pending requests in it: a run needs only their steps (a full
    # provider's step ends at once, and may find a free slot by then)
    providers: dict[str, list[str]] = field(default_factory=dict)


def submission_outlook(settings: PipelineSettings) -> Outlook:
    """Batches with pending requests for a provider that has a free slot, while budget is left;
    when there are none, which of those reasons holds."""
    store = settings.store()
    pending = store.pending_batches_by_provider()
    if not pending:
        return Outlook([], "nothing pending")
    cap = settings.daily_budget_usd
    if cap is not None:
        spent = store.spend(start_of_utc_day())
        if spent >= cap:
            return Outlook([], f"today's budget of ${cap:.2f} is spent (${spent:.4f} committed)")
    active = store.active_by_provider()
    batches: set[str] = set()
    full = []
    for provider, waiting in sorted(pending.items()):
        limit = store.current_limit(provider, settings.in_flight_limit(provider))
        if active.get(provider, 0) < limit:
            batches |= waiting
        else:
            full.append(f"{provider} {active.get(provider, 0)}/{limit}")
    if not batches:
        return Outlook([], f"no free slot (in flight: {', '.join(full)})")
    providers = {
        b: [p for p, waiting in sorted(pending.items()) if b in waiting] for b in sorted(batches)
    }
    return Outlook(sorted(batches), providers=providers)


def submission_metadata(
    settings: PipelineSettings, batch: str, provider: str, report: SubmitReport | None,
    run_id: str, since: float,
) -> tuple[dict[str, Any], int]:  # fmt: skip
    """What a submission pass did and where the provider's share of the batch stands, for the
    asset's materialisation; and how many requests this pass (claimed by `run_id` at `since` or
    later) sent to the sandbox emulator."""
    store = settings.store()
    records = store.records(batch=batch, provider=provider)
    sandbox = sum(1 for r in records if r.sandbox)
    sandbox_now = sum(
        1 for r in records if r.sandbox and r.run_id == run_id and (r.submitted_at or 0) >= since
    )
    metadata: dict[str, Any] = {
        "requests": len(records),  # this provider's share of the batch
        "submitted_now": report.submitted if report else 0,
        "finished_now": report.finished if report else 0,
        "refused_now": report.failed if report else 0,
        "outcome_unknown_now": report.unknown if report else 0,
        "waiting": dict(report.waiting) if report else {},
        "pending": sum(r.status == RequestStatus.PENDING for r in records),
        "in_flight": sum(r.status in ACTIVE for r in records),
        "sandbox_requests": sandbox,
        "in_flight_limit_now": store.current_limit(provider, settings.in_flight_limit(provider)),
        **settings.budget_metadata(store, batch),
    }
    return metadata, sandbox_now
