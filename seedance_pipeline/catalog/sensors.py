"""The catalog sensor: notices a changed catalog and launches `catalog_job`, which registers its
batches. Its ticks name the batches, or say why they skipped."""

import dagster as dg

from seedance_pipeline.catalog.reading import CatalogError, catalog_batch_names, catalog_digest
from seedance_pipeline.jobs import catalog_job
from seedance_pipeline.metadata import TRIGGER_TAG, short_list
from seedance_pipeline.partitions import batches
from seedance_pipeline.resources import CatalogResource, SeedanceResource

CATALOG_INTERVAL_S = 30


@dg.sensor(
    job=catalog_job,
    minimum_interval_seconds=CATALOG_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches the catalog file's checksum; when it changes (or on first start) launches "
        "`catalog_job`, which validates the rows and registers new batches as partitions. Its "
        "ticks name the batches in the catalog and those already registered, or say that it is "
        "unchanged; a catalog that is missing or cannot be read fails the tick with the reason."
    ),
)
def catalog_sensor(
    context: dg.SensorEvaluationContext,
    seedance: SeedanceResource,
    seedance_catalog: CatalogResource,
) -> dg.SensorResult | dg.SkipReason:
    settings = seedance.settings(seedance_catalog)
    registered = sorted(context.instance.get_dynamic_partitions(str(batches.name)))
    # A catalog that cannot be read fails the tick: red in the UI, with the reason on one line.
    try:
        digest = catalog_digest(settings.catalog)
    except FileNotFoundError:
        raise CatalogError(f"no catalog at {settings.catalog}") from None
    if digest == context.cursor:
        return dg.SkipReason(
            f"catalog unchanged (sha256 {digest[:12]}); {len(registered)} batches registered: "
            f"{short_list(registered)}"
        )
    try:  # the batch column only: cheap, and a broken catalog is reported here, not by a failed run
        named = catalog_batch_names(settings.catalog, settings.defaults.batch)
    except CatalogError as exc:
        raise CatalogError(f"the catalog cannot be read: {exc}") from None
    new = [b for b in named if b not in registered]
    context.log.info(
        f"catalog changed (sha256 {digest[:12]}): launched catalog_job to validate it and register "
        f"its {len(named)} batches: {short_list(named)} (new: {short_list(new)})"
    )
    request = dg.RunRequest(run_key=f"catalog:{digest}", tags={TRIGGER_TAG: "sensor"})
    return dg.SensorResult(run_requests=[request], cursor=digest)
