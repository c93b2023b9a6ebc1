"""The jobs the sensors, schedule and backfills launch."""

from __future__ import annotations

import dagster as dg

from seedance_pipeline.catalog.assets import image_catalog, rejected_rows
from seedance_pipeline.ledger.assets import batch_ledger
from seedance_pipeline.submission.assets import submission_assets

catalog_job = dg.define_asset_job(
    "catalog_job",
    selection=dg.AssetSelection.assets(image_catalog, rejected_rows),
    description="Read and validate the catalog; register its batches as partitions.",
)
submit_batch_job = dg.define_asset_job(
    "submit_batch_job",
    selection=dg.AssetSelection.assets(*submission_assets),
    description="Submit one batch's pending requests to their providers (backfill it over many batches).",
)
ledger_job = dg.define_asset_job(
    "ledger_job",
    selection=dg.AssetSelection.assets(batch_ledger),
    description="Write one batch's ledger partition and run its checks.",
)
