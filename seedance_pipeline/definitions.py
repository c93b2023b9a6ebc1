"""The Dagster code location: wiring only (`dagster dev` from the repo root loads it)."""

from __future__ import annotations

import warnings

import dagster as dg

from seedance_pipeline.catalog.assets import image_catalog, rejected_rows
from seedance_pipeline.catalog.sensors import catalog_sensor
from seedance_pipeline.jobs import catalog_job, ledger_job, submit_batch_job
from seedance_pipeline.ledger.assets import batch_ledger
from seedance_pipeline.polling.poll import poll_once
from seedance_pipeline.polling.sensors import task_sensor
from seedance_pipeline.reports.assets import batch_report
from seedance_pipeline.resources import SeedanceResource
from seedance_pipeline.submission.assets import submission_assets
from seedance_pipeline.submission.jobs import retry_job, set_budget_job
from seedance_pipeline.submission.schedules import daily_outstanding_batches


def build_definitions(seedance: SeedanceResource) -> dg.Definitions:
    # Code references: each asset links to the file and line that defines it in the UI. The API
    # is marked beta; its warning would otherwise be printed by every process that loads us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.with_source_code_references(
            [
                image_catalog,
                rejected_rows,
                *submission_assets(follow=poll_once),
                batch_ledger,
                batch_report,
            ]
        )
    return dg.Definitions(
        assets=assets,
        jobs=[catalog_job, submit_batch_job, ledger_job, retry_job, set_budget_job],
        sensors=[catalog_sensor, task_sensor],
        schedules=[daily_outstanding_batches],
        resources={"seedance": seedance},
    )


# Every setting left empty here is read from the environment when a run or tick needs it.
defs = build_definitions(SeedanceResource())
