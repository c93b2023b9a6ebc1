"""The Dagster resource that carries the pipeline's settings. API keys are not among them: each
provider's key is read from its environment variable at call time and never enters run config."""

import os
from pathlib import Path

import dagster as dg

from seedance_pipeline.catalog.planning import CatalogDefaults
from seedance_pipeline.settings import LEDGER_URL_ENV, VIDEOS_URL_ENV, PipelineSettings

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


class SeedanceResource(dg.ConfigurableResource):
    """Where the catalog, state store, ledger and videos live, and the limits submissions obey."""

    data_dir: str = str(REPO_DATA)
    catalog: str = str(REPO_DATA / "catalog.csv")
    state_url: str | None = None
    videos_url: str | None = None  # any fsspec URL; credentials come from the environment
    ledger_url: str | None = None  # any fsspec URL; reports go beside it
    default_provider: str = "novita"
    default_model: str | None = None
    default_batch: str = "default"
    default_resolution: str | None = None
    default_duration: int | None = None
    daily_budget_usd: float | None = 25.0
    batch_budget_usd: float | None = None
    run_budget_usd: float | None = None
    run_label: str | None = (
        None  # scopes the per-run budget instead of the Dagster run id (headless)
    )
    poll_time_box_s: float = 40.0
    stale_submission_s: float = 900.0
    sandbox_url: str | None = None

    def settings(self) -> PipelineSettings:
        return PipelineSettings(
            data_dir=self.data_dir,
            catalog=self.catalog,
            state_url=self.state_url,
            videos_url=self.videos_url,
            ledger_url=self.ledger_url,
            defaults=CatalogDefaults(
                provider=self.default_provider,
                model=self.default_model,
                batch=self.default_batch,
                resolution=self.default_resolution,
                duration=self.default_duration,
            ),
            daily_budget_usd=self.daily_budget_usd,
            batch_budget_usd=self.batch_budget_usd,
            run_budget_usd=self.run_budget_usd,
            poll_time_box_s=self.poll_time_box_s,
            stale_submission_s=self.stale_submission_s,
            sandbox_url=self.sandbox_url,
        )


def resource_from_env() -> SeedanceResource:
    """Zero configuration: the bundled sample catalog and `data/`; `SEEDANCE_DATA_DIR`,
    `SEEDANCE_CATALOG`, `SEEDANCE_STATE_URL`, `SEEDANCE_VIDEOS_URL`, `SEEDANCE_LEDGER_URL` and
    `SEEDANCE_DAILY_BUDGET_USD` move them (none of these is a secret: object store credentials stay
    in the `AWS_*` variables, read by s3fs when it connects)."""
    data_dir = os.environ.get("SEEDANCE_DATA_DIR", str(REPO_DATA))
    budget = os.environ.get("SEEDANCE_DAILY_BUDGET_USD")
    stale = os.environ.get("SEEDANCE_STALE_SUBMISSION_S")
    return SeedanceResource(
        data_dir=data_dir,
        catalog=os.environ.get("SEEDANCE_CATALOG", str(REPO_DATA / "catalog.csv")),
        videos_url=os.environ.get(VIDEOS_URL_ENV) or None,
        ledger_url=os.environ.get(LEDGER_URL_ENV) or None,
        daily_budget_usd=float(budget) if budget else 25.0,
        stale_submission_s=float(stale) if stale else 900.0,
    )
