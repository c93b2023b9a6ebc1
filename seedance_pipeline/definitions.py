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
from seedance_pipeline.resources import PipelineResources
from seedance_pipeline.submission.assets import submission_assets
from seedance_pipeline.submission.jobs import retry_job, set_budget_job
from seedance_pipeline.submission.schedules import daily_outstanding_batches

JOBS: list[dg.JobDefinition | dg.UnresolvedAssetJobDefinition] = [
    catalog_job, submit_batch_job, ledger_job, retry_job, set_budget_job
]  # fmt: skip


def build_definitions(resources: PipelineResources) -> dg.Definitions:
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
    by_key = resources.by_key()
    every_resource = dg.Definitions(assets=assets, jobs=JOBS, resources=by_key)
    # Dagster gives an asset job every resource of the code location, and its launchpad offers
    # each one's fields; a copy of each job keeps only the resources its steps require.
    jobs = {job.name: _own_resources(every_resource.resolve_job_def(job.name)) for job in JOBS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # copying a sensor passes its owners
        sensors = [
            sensor.with_attributes(jobs=[jobs[target.job_name] for target in sensor.targets])
            for sensor in (catalog_sensor, task_sensor)
        ]
    schedule = daily_outstanding_batches.with_attributes(job=jobs[submit_batch_job.name])
    return dg.Definitions(
        assets=assets,
        jobs=list(jobs.values()),
        sensors=sensors,
        schedules=[schedule],
        resources=by_key,
    )


def _own_resources(job: dg.JobDefinition) -> dg.JobDefinition:
    required = job.required_resource_keys
    return job.with_top_level_resources(
        {key: resource for key, resource in job.resource_defs.items() if key in required}
    )


# Every setting left empty here is read from the environment when a run or tick needs it.
defs = build_definitions(PipelineResources())
