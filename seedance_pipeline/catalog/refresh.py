"""Recording the catalog in the state store: new requests are added, known ones keep their
progress, and the rows that cannot be sent are written out with every reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from seedance_pipeline.catalog.planning import CatalogPlan, plan_catalog
from seedance_pipeline.catalog.reading import catalog_base_dir, read_catalog
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.lifecycle import RequestStatus

REJECTED_COLUMNS = ["catalog_row", "batch", "image_id", "provider", "model", "image", "reasons"]


def refresh_catalog(settings: PipelineSettings) -> CatalogPlan:
    """Read and plan the catalog, record new requests (known ones keep their progress), and flag
    submissions a dead process left without an answer."""
    frame = read_catalog(settings.catalog)
    plan = plan_catalog(
        frame,
        settings.defaults,
        catalog_base_dir(settings.catalog),
        image_roots=settings.image_roots,
    )
    store = settings.store()
    store.add_new(plan.records)
    store.flag_stale_submissions(settings.stale_submission_s)
    return plan


def write_rejected_rows(settings: PipelineSettings) -> tuple[pd.DataFrame, str]:
    """Every rejected row of the store, with its reasons, at `<data dir>/rejected_rows.parquet`."""
    rejected = settings.store().records(statuses=[RequestStatus.REJECTED])
    frame = pd.DataFrame(
        [
            {
                "catalog_row": r.catalog_row,
                "batch": r.batch,
                "image_id": r.image_id,
                "provider": r.provider,
                "model": r.model,
                "image": r.request.get("image"),
                "reasons": r.error_message,
            }
            for r in rejected
        ],
        columns=REJECTED_COLUMNS,
    )
    path = f"{settings.data_dir}/rejected_rows.parquet"
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)  # not made by a PostgreSQL store
    frame.to_parquet(path, index=False)
    return frame, path
