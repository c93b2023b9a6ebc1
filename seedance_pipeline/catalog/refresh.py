"""Recording the catalog in the state store: new requests are added, known ones keep their
progress, and the rows that cannot be sent are written out with every reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from seedance_pipeline.catalog.planning import CatalogPlan, CatalogPlanner
from seedance_pipeline.catalog.reading import CHUNK_ROWS, catalog_base_dir, iter_catalog
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.lifecycle import RequestStatus

REJECTED_COLUMNS = ["catalog_row", "batch", "image_id", "provider", "model", "image", "reasons"]


def refresh_catalog(settings: PipelineSettings, chunk_rows: int = CHUNK_ROWS) -> CatalogPlan:
    """Read and plan the catalog, record new requests (known ones keep their progress), and flag
    submissions a dead process left without an answer.

    The catalog is streamed `chunk_rows` rows at a time, each chunk's new requests recorded in a
    transaction of its own, so memory stays flat for a million rows and other writers are not held
    up. It is read through once before (Arrow's readers: about a second per million rows) so that a
    catalog broken half-way down records nothing, as when it was read whole."""
    for _ in iter_catalog(settings.catalog, chunk_rows):
        pass
    store = settings.store()
    planner: CatalogPlanner | None = None
    added = 0
    for chunk in iter_catalog(settings.catalog, chunk_rows):
        if planner is None:
            base_dir = catalog_base_dir(settings.catalog)
            planner = CatalogPlanner(
                list(chunk.columns), settings.defaults, base_dir, image_roots=settings.image_roots
            )
        added += store.add_new(planner.add(chunk))
    if added:
        store.refresh_statistics()
    store.flag_stale_submissions(settings.stale_submission_s)
    assert planner is not None  # iter_catalog yields at least one chunk
    return planner.plan


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
