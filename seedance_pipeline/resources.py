"""The Dagster resource that carries the pipeline's settings into assets, sensors and schedules.

Every field is optional: one left empty (None, `null` in run config) takes its environment
variable, then its default, both in `settings.py` (the one place defaults are written), when a
run or tick asks for its settings. A spend cap of -1 is no cap.
API keys are not among the fields: each provider's key is read from its environment variable at
call time and never enters run config.
"""

import dagster as dg
from pydantic import Field

from seedance_pipeline.settings import ENV, CatalogDefaults, PipelineSettings, settings_from


def _env(name: str) -> str:
    return f"default ${ENV[name]}, else the built-in default (settings.py)"


class SeedanceResource(dg.ConfigurableResource):
    """Where the catalog, state store, ledger and videos live, and the limits submissions obey."""

    data_dir: str | None = Field(
        default=None, description=f"state store, ledger, videos; {_env('data_dir')}"
    )
    catalog: str | None = Field(
        default=None,
        description=f"catalog_job and the catalog sensor only: CSV or Parquet, path or fsspec URL; {_env('catalog')}",
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
    default_provider: str | None = Field(
        default=None,
        description="catalog_job only: provider of rows that name none (default novita)",
    )
    default_model: str | None = Field(
        default=None,
        description="catalog_job only: model of rows that name none (default: the provider's first)",
    )
    default_batch: str | None = Field(
        default=None,
        description="catalog_job only: batch of rows that name none (default `default`)",
    )
    default_resolution: str | None = Field(
        default=None,
        description="catalog_job only: resolution of rows that name none (default: the model's)",
    )
    default_duration: int | None = Field(
        default=None,
        description="catalog_job only: duration (s) of rows that name none (default: the model's)",
    )
    daily_budget_usd: float | None = Field(
        default=None,
        description=f"submissions: spend cap per UTC day for this run only, -1 for none; empty: the cap set with set_budget_job, else {_env('daily_budget_usd')}",
    )
    batch_budget_usd: float | None = Field(
        default=None,
        description=f"submissions: spend cap per batch for this run only, -1 for none; empty: the cap set with set_budget_job, else {_env('batch_budget_usd')}",
    )
    run_budget_usd: float | None = Field(
        default=None,
        description=f"submissions: spend cap of this run, -1 for none; {_env('run_budget_usd')}",
    )
    run_label: str | None = Field(
        default=None,
        description="headless command only: scopes the per-run budget instead of the Dagster run id",
    )
    poll_time_box_s: float | None = Field(
        default=None, description="task sensor only: seconds one polling pass may take (default 40)"
    )
    stale_submission_s: float | None = Field(
        default=None,
        description=f"seconds before an unanswered submission is unknown; {_env('stale_submission_s')}",
    )
    submission_stay_s: float | None = Field(
        default=None,
        description="seconds a submission step may stay, submitting as its own tasks free slots "
        f"(0: one pass); {_env('submission_stay_s')}",
    )
    sandbox_url: str | None = Field(default=None, description=f"an emulator for providers without a key; {_env('sandbox_url')}")  # fmt: skip
    max_failure_share: float | None = Field(
        default=None,
        description="the ledger's no_failed_rows check fails (ERROR) above this share of failed "
        f"rows (0 to 1); {_env('max_failure_share')}",
    )

    def settings(self) -> PipelineSettings:
        catalog_defaults = {
            name: getattr(self, f"default_{name}")
            for name in ("provider", "model", "batch", "resolution", "duration")
            if getattr(self, f"default_{name}") is not None
        }
        return settings_from(
            stored_caps=True,  # caps set from the UI apply at once, to runs, sensors and schedules
            data_dir=self.data_dir,
            catalog=self.catalog,
            state_url=self.state_url,
            videos_url=self.videos_url,
            ledger_url=self.ledger_url,
            defaults=CatalogDefaults(**catalog_defaults) if catalog_defaults else None,
            daily_budget_usd=self.daily_budget_usd,
            batch_budget_usd=self.batch_budget_usd,
            run_budget_usd=self.run_budget_usd,
            poll_time_box_s=self.poll_time_box_s,
            stale_submission_s=self.stale_submission_s,
            submission_stay_s=self.submission_stay_s,
            sandbox_url=self.sandbox_url,
            max_failure_share=self.max_failure_share,
        )
