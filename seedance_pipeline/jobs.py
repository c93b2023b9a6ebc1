"""The jobs the sensors, schedule and backfills launch."""

from __future__ import annotations

import dagster as dg

from seedance_pipeline.catalog.assets import image_catalog, rejected_rows
from seedance_pipeline.ledger.assets import batch_ledger
from seedance_pipeline.reports.assets import batch_report
from seedance_pipeline.submission.assets import submission_assets

catalog_job = dg.define_asset_job(
    "catalog_job",
    selection=dg.AssetSelection.assets(image_catalog, rejected_rows),
    description=(
        "Read and validate the catalog, record its requests in the state store and register its "
        "batches as partitions. The catalog sensor launches it whenever the catalog file changes."
    ),
)
submit_batch_job = dg.define_asset_job(
    "submit_batch_job",
    selection=dg.AssetSelection.assets(*submission_assets),
    description=(
        "Submit one batch's pending requests to their providers, within each provider's limit of "
        "tasks in flight and the spend caps. Launched by the task sensor and the daily schedule; "
        "backfill it over many batches (nothing already submitted is submitted again)."
    ),
)
ledger_job = dg.define_asset_job(
    "ledger_job",
    selection=dg.AssetSelection.assets(batch_ledger, batch_report),
    description=(
        "Write one batch's ledger partition, run its checks, then draw its report (contact sheet "
        "and chart). The task sensor launches it once the batch has nothing left in flight."
    ),
)
