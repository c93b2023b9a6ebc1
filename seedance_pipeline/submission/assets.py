"""One submission asset per provider, partitioned by batch, each in its provider's Dagster pool."""

import time
from collections.abc import Iterator

import dagster as dg

from seedance_pipeline.jobs import IMAGE_CATALOG, LEDGER_ASSET, OWNERS, PROVIDERS
from seedance_pipeline.metadata import tag_run
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
        group_name="submission",
        owners=OWNERS,
        # Materialised only for batches with requests for this provider: the asset's partitions
        # then show where the provider has work, not every batch of every provider.
        output_required=False,
        description=(
            f"Submits this batch's pending {provider} requests, keeping {provider} under its limit of "
            "tasks in flight (counted in the state store across runs) and the daily spend cap. Each "
            "request is claimed in the state store before the call and updated after it, so no rerun "
            "or backfill submits it twice. Requests beyond the limit wait; the task sensor submits "
            "them when slots free up. Materialised only for batches that have requests for "
            f"{provider}."
        ),
    )
    def _submissions(
        context: dg.AssetExecutionContext, seedance: SeedanceResource
    ) -> Iterator[dg.MaterializeResult]:
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
        # A run that also writes the ledger needs every submission output, or Dagster skips it.
        in_run = context.run.asset_selection or context.job_def.asset_layer.selected_asset_keys
        ledger_in_run = dg.AssetKey(LEDGER_ASSET) in in_run
        if not metadata["requests"] and not ledger_in_run:
            context.log.info(
                f"{batch} has no {provider} requests: nothing to submit, not materialised"
            )
            return
        tag_run(context, provider)
        context.log.info(
            f"{provider} in {batch}: submitted {metadata['submitted_now']}, finished "
            f"{metadata['finished_now']}, refused {metadata['refused_now']}, outcome unknown "
            f"{metadata['outcome_unknown_now']}; now {metadata['pending']} pending, "
            f"{metadata['in_flight']} in flight of {metadata['requests']}"
        )
        yield dg.MaterializeResult(metadata=metadata)

    return _submissions


submission_assets = [submission_asset(name) for name in PROVIDERS]
