"""One submission asset per provider, partitioned by batch, each in its provider's Dagster pool."""

import time

import dagster as dg

from seedance_pipeline.jobs import IMAGE_CATALOG, PROVIDERS
from seedance_pipeline.partitions import batches
from seedance_pipeline.resources import SeedanceResource
from seedance_pipeline.submission.batch import submission_metadata, submit_batch


def submission_asset(provider: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{provider}_submissions",
        deps=[IMAGE_CATALOG],
        partitions_def=batches,
        pool=f"seedance_{provider}",
        kinds={"python", "api"},
        tags={"seedance/stage": "submission", "seedance/provider": provider},
        description=(
            f"Submits this batch's pending {provider} requests, keeping {provider} under its limit of "
            "tasks in flight (counted in the state store across runs) and the daily spend cap. Each "
            "request is claimed in the state store before the call and updated after it, so no rerun "
            "or backfill submits it twice. Requests beyond the limit wait; the task sensor submits "
            "them when slots free up."
        ),
    )
    def _submissions(
        context: dg.AssetExecutionContext, seedance: SeedanceResource
    ) -> dg.MaterializeResult:
        settings = seedance.settings()
        batch = context.partition_key
        run_id = seedance.run_label or context.run.run_id
        started = time.time()
        report = submit_batch(settings, batch, [provider], run_id).get(provider)
        if report is not None and report.stopped:
            context.log.warning(f"{provider}: submissions stopped for now: {report.stopped}")
        metadata, sandbox_now = submission_metadata(
            settings, batch, provider, report, run_id, started
        )
        if sandbox_now:
            context.log.warning(
                f"SANDBOX: this run sent {sandbox_now} {provider} requests of {batch} to the emulator"
            )
        metadata["waiting"] = dg.MetadataValue.json(metadata["waiting"])
        return dg.MaterializeResult(metadata=metadata)

    return _submissions


submission_assets = [submission_asset(name) for name in PROVIDERS]
