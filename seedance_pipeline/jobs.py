"""The asset keys of the graph and the jobs the sensors, schedule and backfills launch.

Jobs select assets by key, so a sensor of an early stage can launch a job of a later one (the task
sensor launches `ledger_job`) without importing that stage: imports follow the data flow."""

from __future__ import annotations

import dagster as dg

from seedance_pipeline.providers import provider_names

IMAGE_CATALOG = "image_catalog"
CATALOG_ASSETS = [IMAGE_CATALOG, "rejected_rows"]
PROVIDERS = provider_names()
SUBMISSION_ASSETS = [f"{provider}_submissions" for provider in PROVIDERS]
LEDGER_ASSET = "batch_ledger"
REPORT_ASSET = "batch_report"
# Who answers for every asset (shown in the UI's asset pages and catalog); one team owns the flow.
OWNERS = ["team:seedance-data"]

catalog_job = dg.define_asset_job(
    "catalog_job",
    selection=dg.AssetSelection.assets(*CATALOG_ASSETS),
    description=(
        "Read and validate the catalog, record its requests in the state store and register its "
        "batches as partitions. The catalog sensor launches it whenever the catalog file changes."
    ),
)
submit_batch_job = dg.define_asset_job(
    "submit_batch_job",
    selection=dg.AssetSelection.assets(*SUBMISSION_ASSETS),
    # Every provider's step at once, whatever the number of cores: a step stays while its
    # provider has work, waiting on the provider, and must not hold another provider's step back.
    executor_def=dg.multiprocess_executor.configured({"max_concurrent": len(SUBMISSION_ASSETS)}),
    description=(
        "Submit one batch's pending requests to their providers, within each provider's limit of "
        "tasks in flight and the spend caps. Launched by the task sensor and the daily schedule; "
        "backfill it over many batches (nothing already submitted is submitted again)."
    ),
)
ledger_job = dg.define_asset_job(
    "ledger_job",
    selection=dg.AssetSelection.assets(LEDGER_ASSET, REPORT_ASSET),
    description=(
        "Write one batch's ledger partition, run its checks, then draw its report (contact sheet "
        "and chart). The task sensor launches it once the batch has nothing left in flight."
    ),
)
