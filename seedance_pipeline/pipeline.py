"""The pipeline's steps as plain functions over settings: the Dagster assets and sensor are thin
wrappers around these, and the headless command runs the very same Dagster definitions."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass

import fsspec
import pandas as pd
import PIL.Image

from seedance_pipeline.catalog.planning import (
    CatalogPlan,
    catalog_base_dir,
    plan_catalog,
    read_catalog,
)
from seedance_pipeline.ledger.rows import (
    partition_path,
    read_partition,
    write_store_ledger,
)
from seedance_pipeline.polling.poll import PollReport, poll_once
from seedance_pipeline.providers import ProviderError, adapter_for
from seedance_pipeline.providers.client import ProviderConfig
from seedance_pipeline.providers.connections import needs_sandbox, open_clients, provider_configs
from seedance_pipeline.reports.chart import render_chart
from seedance_pipeline.reports.contact_sheet import BOX, ContactSheet, render_contact_sheet
from seedance_pipeline.reports.frames import first_and_last_frames
from seedance_pipeline.reports.publish import ReportUrls, report_urls, write_png
from seedance_pipeline.sandbox import ensure_sandbox
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.claims import start_of_utc_day
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.state.store import StateStore
from seedance_pipeline.submission.budget import enforce_daily_budget
from seedance_pipeline.submission.reconcile import awaiting, reconcile_unknown
from seedance_pipeline.submission.submit import SubmitReport, submit_pending

log = logging.getLogger(__name__)


def catalog_digest(url: str) -> str:
    """sha256 of the catalog file's bytes: how the catalog sensor notices a change."""
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def refresh_catalog(settings: PipelineSettings) -> CatalogPlan:
    """Read and plan the catalog, record new requests (known ones keep their progress), and flag
    submissions a dead process left without an answer."""
    frame = read_catalog(settings.catalog)
    plan = plan_catalog(frame, settings.defaults, catalog_base_dir(settings.catalog))
    store = settings.store()
    store.add_new(plan.records)
    flagged = store.flag_stale_submissions(settings.stale_submission_s)
    if flagged:
        log.error(
            "%d submissions had no answer when their process stopped; flagged unknown", len(flagged)
        )
    return plan


def connections(settings: PipelineSettings, providers: Iterable[str]) -> dict[str, ProviderConfig]:
    """Configs for these providers: real where a key is set, the sandbox emulator otherwise."""
    providers = sorted(set(providers))
    sandbox_url = settings.explicit_sandbox_url()
    if sandbox_url is None and needs_sandbox(providers):
        sandbox_url = ensure_sandbox(settings.data_dir)
    return provider_configs(providers, sandbox_url)


async def _submit(
    settings: PipelineSettings, batch: str, providers: list[str], run_id: str | None
) -> dict[str, SubmitReport]:
    store = settings.store()
    async with AsyncExitStack() as stack:
        clients = await open_clients(connections(settings, providers), stack)
        reports = await asyncio.gather(
            *(submit_pending(store, clients[p], settings, batch, run_id) for p in providers)
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
        {r.provider for r in store.records(batch=batch, statuses=[RequestStatus.PENDING])} & wanted
    )
    if not present:
        return {}
    return asyncio.run(_submit(settings, batch, present, run_id))


async def _poll(settings: PipelineSettings, store: StateStore, providers: list[str]) -> PollReport:
    async with AsyncExitStack() as stack:
        clients = await open_clients(connections(settings, providers), stack)
        for provider in {r.provider for r in store.records(statuses=[RequestStatus.UNKNOWN])} & set(
            providers
        ):
            try:
                await reconcile_unknown(store, clients[provider])
            except ProviderError as error:  # the list call failed: try again next tick
                log.info("reconciliation at %s postponed: %s", provider, error)
        await enforce_daily_budget(store, clients, settings)
        return await poll_once(store, clients, settings)


def poll_tick(settings: PipelineSettings) -> PollReport:
    """One time-boxed polling pass over every task in flight, after flagging submissions whose
    process died mid-call and reconciling unknown outcomes where the provider lists its tasks."""
    store = settings.store()
    flagged = store.flag_stale_submissions(settings.stale_submission_s)
    if flagged:
        log.error(
            "%d submissions had no answer when their process stopped; flagged unknown", len(flagged)
        )
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


@dataclass(frozen=True)
class BatchLedger:
    path: str  # the partition file: an absolute path or an fsspec URL
    request_ids: set[str]  # what the store holds for the batch, to check the ledger against
    cost_usd: float


def write_batch_ledger(settings: PipelineSettings, batch: str) -> BatchLedger:
    """The batch's ledger partition written from the store, with the store's own totals to check it
    against, read meanwhile by queries of their own in a thread (on SQLite both reads spend most
    of their time outside the GIL, in the driver's child processes and in Arrow)."""
    store = settings.store()
    with ThreadPoolExecutor(max_workers=1) as pool:
        totals = pool.submit(store.batch_totals, batch)
        path = write_store_ledger(store, settings.ledger, batch)
        request_ids, cost = totals.result()
    return BatchLedger(path, request_ids, cost)


def read_batch_ledger(settings: PipelineSettings, batch: str) -> pd.DataFrame:
    """A batch's ledger partition as readers see it (read back from storage)."""
    return read_partition(partition_path(settings.ledger, batch)).to_pandas()


@dataclass(frozen=True)
class BatchReport:
    urls: ReportUrls
    sheet: ContactSheet
    chart: PIL.Image.Image
    sheet_bytes: int


def write_batch_report(settings: PipelineSettings, batch: str) -> BatchReport:
    """The batch's contact sheet and chart, from its ledger partition, written under
    `settings.reports_url`."""
    ledger = read_batch_ledger(settings, batch)
    sheet = render_contact_sheet(
        ledger, f"batch {batch}", lambda uri: first_and_last_frames(uri, BOX)
    )
    budget_left = settings.budget_metadata(settings.store(), batch).get("budget_left_today_usd")
    chart = render_chart(ledger, f"batch {batch}: {len(ledger)} rows", budget_left)
    urls = report_urls(settings.reports_url, batch)
    sheet_bytes = write_png(sheet.image, urls.contact_sheet)
    write_png(chart, urls.chart)
    return BatchReport(urls, sheet, chart, sheet_bytes)


def submittable_batches(settings: PipelineSettings, store: StateStore) -> list[str]:
    """Batches with pending requests for a provider that has a free slot, while budget is left."""
    if (
        settings.daily_budget_usd is not None
        and store.spend(start_of_utc_day()) >= settings.daily_budget_usd
    ):
        return []
    active = store.active_by_provider()
    batches: set[str] = set()
    for provider, pending in store.pending_batches_by_provider().items():
        limit = store.current_limit(provider, settings.in_flight_limit(provider))
        if active.get(provider, 0) < limit:
            batches |= pending
    return sorted(batches)


def reconciliation_pending(settings: PipelineSettings) -> int:
    """Unknown outcomes that the next ticks may still settle from a provider's task list."""
    store = settings.store()
    providers = {r.provider for r in store.records(statuses=[RequestStatus.UNKNOWN])}
    configs = {p: ProviderConfig.from_env(adapter_for(p)) for p in providers}
    return awaiting(store, configs)
