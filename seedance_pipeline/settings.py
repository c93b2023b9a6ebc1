"""Pipeline settings, shared by the Dagster resource and the headless command."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from seedance_pipeline.catalog.planning import CatalogDefaults
from seedance_pipeline.providers.facts import load_facts
from seedance_pipeline.state.claims import SpendCap, start_of_utc_day
from seedance_pipeline.state.schema import default_state_url
from seedance_pipeline.state.store import StateStore
from seedance_pipeline.storage import absolute, refuse_credentials, sibling

SANDBOX_URL_ENV = "SEEDANCE_SANDBOX_URL"
LEDGER_URL_ENV = "SEEDANCE_LEDGER_URL"
VIDEOS_URL_ENV = "SEEDANCE_VIDEOS_URL"


_STORES: dict[str, StateStore] = {}


def store_for(url: str) -> StateStore:
    """One store (one engine and connection pool) per URL per process: engines are costly to make
    and are meant to be shared."""
    if url not in _STORES:
        _STORES[url] = StateStore(url)
    return _STORES[url]


@dataclass(frozen=True)
class PipelineSettings:
    data_dir: str = "data"
    catalog: str = "data/catalog.csv"
    state_url: str | None = None  # any SQLAlchemy URL; default SQLite at <data_dir>/state.sqlite
    videos_url: str | None = None  # any fsspec URL; default <data_dir>/videos
    ledger_url: str | None = None  # any fsspec URL; default <data_dir>/ledger
    defaults: CatalogDefaults = field(default_factory=CatalogDefaults)
    max_in_flight: dict[str, int] = field(default_factory=dict)  # per provider; default facts.toml
    daily_budget_usd: float | None = 25.0  # spend cap per UTC day, reserved before each submission
    batch_budget_usd: float | None = None  # spend cap per batch, all time
    run_budget_usd: float | None = (
        None  # spend cap per run (a Dagster run, or one headless command)
    )
    poll_time_box_s: float = 40.0  # well under Dagster's 60 s sensor timeout
    poll_concurrency: int = 32
    submit_concurrency: int = 8
    stale_submission_s: float = 900.0
    not_found_grace_s: float = 3600.0  # a task "not found" this long after submission becomes unknown  # longer than any create call may take (Segmind: minutes)
    sandbox_url: str | None = None  # an emulator to use for providers without a key

    def __post_init__(self) -> None:
        refuse_credentials("videos_url", self.videos_url)
        refuse_credentials("ledger_url", self.ledger_url)
        _ = self.reports_url  # a ledger at a bucket root has no sibling folder: say so now

    def spend_caps(self, batch: str | None, run_id: str | None, day_start: float) -> list[SpendCap]:
        caps = []
        if self.daily_budget_usd is not None:
            caps.append(SpendCap("daily", self.daily_budget_usd, since=day_start))
        if self.batch_budget_usd is not None and batch is not None:
            caps.append(SpendCap("batch", self.batch_budget_usd, batch=batch))
        if self.run_budget_usd is not None and run_id is not None:
            caps.append(SpendCap("run", self.run_budget_usd, run_id=run_id))
        return caps

    def budget_metadata(self, store: StateStore, batch: str | None = None) -> dict[str, float]:
        """Spend so far and budget left, for materialisation metadata and the headless summary."""
        spent = store.spend(start_of_utc_day())
        values = {"spent_today_usd": round(spent, 6)}
        if self.daily_budget_usd is not None:
            values |= {"daily_budget_usd": self.daily_budget_usd,
                       "budget_left_today_usd": round(max(0.0, self.daily_budget_usd - spent), 6)}  # fmt: skip
        if batch is not None and self.batch_budget_usd is not None:
            batch_spent = store.spend(batch=batch)
            values |= {"batch_spent_usd": round(batch_spent, 6),
                       "batch_budget_left_usd": round(max(0.0, self.batch_budget_usd - batch_spent), 6)}  # fmt: skip
        return values

    def in_flight_limit(self, provider: str) -> int:
        return self.max_in_flight.get(provider, load_facts().providers[provider].max_in_flight)

    @property
    def ledger(self) -> str:
        """The hive-partitioned ledger's folder: an absolute path or an fsspec URL."""
        return absolute(self.ledger_url or str(Path(self.data_dir) / "ledger"))

    @property
    def videos(self) -> str:
        """Where videos are copied: an absolute path or an fsspec URL."""
        return absolute(self.videos_url or str(Path(self.data_dir) / "videos"))

    @property
    def reports_url(self) -> str:
        """Reports (contact sheets, …) go in `reports` beside the ledger's folder, on the same store:
        `s3://b/seedance/ledger` → `s3://b/seedance/reports`, `<data dir>/ledger` → `<data dir>/reports`.
        Beside, not inside: readers of the ledger folder expect Parquet only. Write there with
        `storage.write_bytes_atomic`."""
        return sibling(self.ledger, "reports")

    def store(self) -> StateStore:
        # SEEDANCE_STATE_URL is read here, when used, so a password in it never enters run config.
        url = (
            self.state_url
            or os.environ.get("SEEDANCE_STATE_URL")
            or default_state_url(self.data_dir)
        )
        return store_for(url)

    def explicit_sandbox_url(self) -> str | None:
        return self.sandbox_url or os.environ.get(SANDBOX_URL_ENV) or None
