"""The Dagster resources that carry the pipeline's settings into assets, sensors and schedules.

One resource per group of settings, so that each job requires, and its launchpad offers, only the
settings it reads: `seedance` (where things live) for every job, `seedance_catalog` for
catalog_job, `seedance_budget` for submit_batch_job and retry_job, `seedance_submission` for
submit_batch_job, `seedance_ledger` for ledger_job. Sensors and the schedule take the same ones.

Every field is optional: one left empty (None, `null` in run config) takes its environment
variable, then its default, both in `settings.py` (the one place defaults are written), when a
run or tick asks for its settings. A spend cap of -1 is no cap.
API keys are not among the fields: each provider's key is read from its environment variable at
call time and never enters run config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import Field

from seedance_pipeline.settings import ENV, CatalogDefaults, PipelineSettings, settings_from


def _env(name: str) -> str:
    return f"default ${ENV[name]}, else the built-in default (settings.py)"


class StageResource(dg.ConfigurableResource):
    """Settings that only some jobs read, added to `SeedanceResource`'s by `settings`."""

    def given(self) -> dict[str, Any]:
        """The settings given here, by their name in `PipelineSettings` (None: not given)."""
        return {name: getattr(self, name) for name in type(self).model_fields}


class SeedanceResource(dg.ConfigurableResource):
    """Where the state store, ledger and videos live: read by every job, sensor and schedule."""

    data_dir: str | None = Field(
        default=None, description=f"state store, ledger, videos; {_env('data_dir')}"
    )
    state_url: str | None = Field(
        default=None, description=f"SQLAlchemy URL of the state store; {_env('state_url')}"
    )
    videos_url: str | None = Field(
        default=None, description=f"where videos are kept (fsspec URL); {_env('videos_url')}"
    )
    ledger_url: str | None = Field(
        default=None, description=f"the ledger's folder (fsspec URL); {_env('ledger_url')}"
    )
    sandbox_url: str | None = Field(default=None, description=f"an emulator for providers without a key; {_env('sandbox_url')}")  # fmt: skip
    stale_submission_s: float | None = Field(
        default=None,
        description="seconds before an unanswered submission is unknown (checked by catalog_job "
        f"and the task sensor); {_env('stale_submission_s')}",
    )

    def settings(self, *stages: StageResource) -> PipelineSettings:
        """These settings and those of the stage resources a job or tick has, the rest from the
        environment; caps set from the UI apply at once, to runs, sensors and schedules."""
        given = {name: getattr(self, name) for name in type(self).model_fields}
        for stage in stages:
            given |= stage.given()
        return settings_from(stored_caps=True, **given)


class CatalogResource(StageResource):
    """The catalog and what its empty cells mean: catalog_job and the catalog sensor."""

    catalog: str | None = Field(
        default=None,
        description=f"CSV or Parquet, path or fsspec URL; {_env('catalog')}",
    )
    default_provider: str | None = Field(
        default=None, description="provider of rows that name none (default novita)"
    )
    default_model: str | None = Field(
        default=None, description="model of rows that name none (default: the provider's first)"
    )
    default_batch: str | None = Field(
        default=None, description="batch of rows that name none (default `default`)"
    )
    default_resolution: str | None = Field(
        default=None, description="resolution of rows that name none (default: the model's)"
    )
    default_duration: int | None = Field(
        default=None, description="duration (s) of rows that name none (default: the model's)"
    )

    def given(self) -> dict[str, Any]:
        defaults = {
            name: getattr(self, f"default_{name}")
            for name in ("provider", "model", "batch", "resolution", "duration")
            if getattr(self, f"default_{name}") is not None
        }
        return {
            "catalog": self.catalog,
            "defaults": CatalogDefaults(**defaults) if defaults else None,
        }


class BudgetResource(StageResource):
    """Spend caps for one run: submit_batch_job, retry_job, the task sensor and the schedule."""

    daily_budget_usd: float | None = Field(
        default=None,
        description=f"spend cap per UTC day for this run only, -1 for none; empty: the cap set with set_budget_job, else {_env('daily_budget_usd')}",
    )
    batch_budget_usd: float | None = Field(
        default=None,
        description=f"spend cap per batch for this run only, -1 for none; empty: the cap set with set_budget_job, else {_env('batch_budget_usd')}",
    )
    run_budget_usd: float | None = Field(
        default=None,
        description=f"spend cap of this run, -1 for none; {_env('run_budget_usd')}",
    )


class SubmissionResource(StageResource):
    """How a submission step runs: submit_batch_job (and the task sensor's polling pass)."""

    submission_stay_s: float | None = Field(
        default=None,
        description="seconds a submission step may stay, submitting as its own tasks free slots "
        f"(0: one pass); {_env('submission_stay_s')}",
    )
    poll_time_box_s: float | None = Field(
        default=None,
        description="seconds one polling pass may take: a staying step's, and the task "
        "sensor's (default 40)",
    )
    run_label: str | None = Field(
        default=None,
        description="headless command only: scopes the per-run budget instead of the Dagster run id",
    )

    def given(self) -> dict[str, Any]:
        return {
            "submission_stay_s": self.submission_stay_s,
            "poll_time_box_s": self.poll_time_box_s,
        }


class LedgerResource(StageResource):
    """What the ledger's checks accept: ledger_job."""

    max_failure_share: float | None = Field(
        default=None,
        description="the no_failed_rows check fails (ERROR) above this share of failed "
        f"rows (0 to 1); {_env('max_failure_share')}",
    )


@dataclass(frozen=True)
class PipelineResources:
    """Every resource of the code location; each attribute is named after its resource key."""

    seedance: SeedanceResource = field(default_factory=SeedanceResource)
    seedance_catalog: CatalogResource = field(default_factory=CatalogResource)
    seedance_budget: BudgetResource = field(default_factory=BudgetResource)
    seedance_submission: SubmissionResource = field(default_factory=SubmissionResource)
    seedance_ledger: LedgerResource = field(default_factory=LedgerResource)

    def by_key(self) -> dict[str, dg.ConfigurableResource]:
        return {spec.name: getattr(self, spec.name) for spec in dataclasses.fields(self)}

    def settings(self) -> PipelineSettings:
        """All the settings at once, as the headless command (which runs every job) sees them."""
        stages = (self.seedance_catalog, self.seedance_budget, self.seedance_submission)
        return self.seedance.settings(*stages, self.seedance_ledger)
