"""One tick of the task sensor as plain functions: poll what is in flight, then decide which
batches need a submission run and which are ready for their ledger."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass

from seedance_pipeline.polling.poll import PollReport, poll_once
from seedance_pipeline.providers import ProviderError, adapter_for
from seedance_pipeline.providers.client import ProviderConfig
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.state.store import StateStore
from seedance_pipeline.storage import is_local, local_path
from seedance_pipeline.storage.videos import clean_stale_downloads
from seedance_pipeline.submission.batch import submission_outlook
from seedance_pipeline.submission.budget import enforce_daily_budget
from seedance_pipeline.submission.clients import open_provider_clients
from seedance_pipeline.submission.reconcile import awaiting, reconcile_unknown

log = logging.getLogger(__name__)


async def _poll(settings: PipelineSettings, store: StateStore, providers: list[str]) -> PollReport:
    async with AsyncExitStack() as stack:
        clients = await open_provider_clients(settings, providers, stack)
        for provider in {r.provider for r in store.records(statuses=[RequestStatus.UNKNOWN])} & set(
            providers
        ):
            try:
                await reconcile_unknown(store, clients[provider])
            except ProviderError as error:  # the list call failed: try again next tick
                log.info("reconciliation at %s postponed: %s", provider, error)
            except Exception as exc:  # one provider's odd list must not stop every poll
                log.warning("reconciliation at %s postponed: unexpected %s", provider,
                            type(exc).__name__, exc_info=True)  # fmt: skip
        try:
            await enforce_daily_budget(store, clients, settings)
        except Exception as exc:  # a budget stop is retried next tick; the polls must go on
            log.warning("budget stop postponed: unexpected %s", type(exc).__name__, exc_info=True)
        return await poll_once(store, clients, settings)


@functools.cache
def _clean_at_start(local_folders: tuple[str, ...]) -> None:
    """Partial downloads and temporary files a killed process left behind, removed once per
    process (a sensor's code server, a headless command): a scan of a large videos folder on
    every tick would cost more than the files it finds."""
    clean_stale_downloads([local_path(url) for url in local_folders])


def poll_tick(settings: PipelineSettings) -> PollReport:
    """One time-boxed polling pass over every task in flight, after flagging submissions whose
    process died mid-call and reconciling unknown outcomes where the provider lists its tasks."""
    store = settings.store()
    _clean_at_start(tuple(url for url in (settings.videos, settings.ledger) if is_local(url)))
    store.flag_stale_submissions(settings.stale_submission_s)
    providers = sorted(
        {
            r.provider
            for r in store.records(
                statuses=[RequestStatus.IN_FLIGHT, RequestStatus.FETCHING, RequestStatus.UNKNOWN]
            )
        }
    )
    if not providers:
        return PollReport()
    return asyncio.run(_poll(settings, store, providers))


def reconciliation_pending(settings: PipelineSettings) -> int:
    """Unknown outcomes that the next ticks may still settle from a provider's task list."""
    store = settings.store()
    providers = {r.provider for r in store.records(statuses=[RequestStatus.UNKNOWN])}
    configs = {p: ProviderConfig.from_env(adapter_for(p)) for p in providers}
    return awaiting(store, configs)


@dataclass(frozen=True)
class TickPlan:
    """What the task sensor does after polling."""

    report: PollReport
    open_batches: int
    ledger_batches: dict[str, str]  # batch → the fingerprint of the state its ledger is wanted for
    submit_batches: list[str]  # batches with pending requests and a free provider slot
    submit_providers: dict[str, list[str]]  # per such batch, its providers with pending requests
    why_no_submission: str  # when there are none: nothing pending, budget spent, or no free slot
    finished: dict[str, str]  # every batch with nothing open → its fingerprint (the next cursor)
    submitted_since: int  # requests claimed since the last count
    counted_at: float  # when they were counted (the next tick counts from here)


def plan_tick(
    settings: PipelineSettings, ledgers_launched: dict[str, str], last_count_at: float | None,
    interval_s: float,
) -> TickPlan:  # fmt: skip
    """Poll, then choose the batches whose ledger is due (nothing open, and a state not yet
    written) and those with something to submit. `ledgers_launched` is what earlier ticks
    launched, per batch; submissions are counted since `last_count_at` (else one interval)."""
    report = poll_tick(settings)
    store = settings.store()
    open_batches = store.open_batches()
    fingerprints = store.batch_fingerprints()
    finished = {b: f for b, f in fingerprints.items() if b not in open_batches}
    outlook = submission_outlook(settings)
    now = time.time()
    return TickPlan(
        report=report,
        open_batches=len(open_batches),
        ledger_batches={b: f for b, f in finished.items() if ledgers_launched.get(b) != f},
        submit_batches=outlook.batches,
        submit_providers=outlook.providers,
        why_no_submission=outlook.why_none,
        finished=finished,
        submitted_since=store.submitted_between(last_count_at or now - interval_s, now),
        counted_at=now,
    )
