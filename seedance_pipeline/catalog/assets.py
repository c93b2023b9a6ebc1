"""Dagster assets for the catalog: the planned requests, and the rows that were rejected."""

import dagster as dg

from seedance_pipeline.catalog.refresh import refresh_catalog, write_rejected_rows
from seedance_pipeline.jobs import OWNERS
from seedance_pipeline.metadata import tag_run
from seedance_pipeline.partitions import batches
from seedance_pipeline.resources import CatalogResource, SeedanceResource


@dg.asset(
    kinds={"csv", "parquet"},
    tags={"seedance/stage": "catalog"},
    group_name="catalog",
    owners=OWNERS,
    description=(
        "Reads the image catalog (CSV or Parquet, local or any fsspec URL), validates every row "
        "against its provider's documented limits, gives each distinct request a stable id (a digest "
        "of the image bytes and every output-changing parameter) and records new requests in the "
        "state store. Registers each batch as a partition of `batches`."
    ),
)
def image_catalog(
    context: dg.AssetExecutionContext,
    seedance: SeedanceResource,
    seedance_catalog: CatalogResource,
) -> dg.MaterializeResult:
    settings = seedance.settings(seedance_catalog)
    tag_run(context)
    plan = refresh_catalog(settings)
    new = [b for b in plan.batches if not context.instance.has_dynamic_partition(batches.name, b)]
    if new:
        context.instance.add_dynamic_partitions(batches.name, new)
    for warning in plan.warnings:
        context.log.warning(f"catalog: {warning}")
    context.log.info(
        f"catalog {settings.catalog}: {plan.rows} rows, {len(plan.records)} requests ({plan.valid} "
        f"valid, {plan.rejected} rejected) in {len(plan.batches)} batches; new: {', '.join(new) or 'none'}"
    )
    return dg.MaterializeResult(
        metadata={
            "catalog": settings.catalog,
            "rows": plan.rows,
            "requests": plan.requests,
            "duplicate_rows_collapsed": plan.duplicates,
            "valid": plan.valid,
            "rejected": plan.rejected,
            "batches": dg.MetadataValue.json(plan.batches),
            "new_batches": dg.MetadataValue.json(new),
            "warnings": dg.MetadataValue.json(plan.warnings),
        }
    )


@dg.asset(
    deps=[image_catalog],
    kinds={"parquet"},
    tags={"seedance/stage": "catalog"},
    group_name="catalog",
    owners=OWNERS,
    description=(
        "Every catalog row that cannot be sent, with every reason at once (also in the ledger with "
        "status `rejected`). Written to `<data dir>/rejected_rows.parquet`; fix the rows and the "
        "catalog sensor picks the change up."
    ),
)
def rejected_rows(seedance: SeedanceResource) -> dg.MaterializeResult:
    frame, path = write_rejected_rows(seedance.settings())
    preview = frame[["catalog_row", "image_id", "reasons"]].head(50)
    return dg.MaterializeResult(
        metadata={
            "rejected": len(frame),
            "path": dg.MetadataValue.path(path),
            "preview": dg.MetadataValue.md(
                preview.to_markdown(index=False) if len(preview) else "none"
            ),
        }
    )
