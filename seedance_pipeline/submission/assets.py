"""One submission asset per provider, partitioned by batch, each in its provider's Dagster pool.
Its step stays while its batch has work for the provider, submitting as its own tasks free slots
(`keep_busy.py`); every pass that sends something is an observation on the batch's partition."""

import time
from collections.abc import Iterator

import dagster as dg

from seedance_pipeline.jobs import IMAGE_CATALOG, LEDGER_ASSET, OWNERS, PROVIDERS
from seedance_pipeline.metadata import tag_run
from seedance_pipeline.partitions import batches
from seedance_pipeline.resources import BudgetResource, SeedanceResource, SubmissionResource
from seedance_pipeline.submission.batch import submission_metadata
from seedance_pipeline.submission.keep_busy import FollowTasks, Wave, keep_busy


def submission_asset(provider: str, follow: FollowTasks) -> dg.AssetsDefinition:
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
            "or backfill submits it twice. The step stays while the batch has work for the "
            "provider, following its own tasks and submitting as slots free (each wave an "
            "observation on the partition), at most `submission_stay_s`. Materialised only for "
            f"batches that have requests for {provider}."
        ),
    )
    def _submissions(
        context: dg.AssetExecutionContext,
        seedance: SeedanceResource,
        seedance_budget: BudgetResource,
        seedance_submission: SubmissionResource,
    ) -> Iterator[dg.MaterializeResult]:
        settings = seedance.settings(seedance_budget, seedance_submission)
        batch = context.partition_key
        run_id = seedance_submission.run_label or context.run.run_id
        started = time.time()

        def on_wave(wave: Wave) -> None:
            context.log_event(
                dg.AssetObservation(
                    asset_key=context.asset_key, partition=batch, metadata=wave.metadata()
                )
            )

        stay = keep_busy(settings, batch, provider, run_id, follow, on_wave)
        context.log.info(f"{provider}: {stay.summary()}")
        report = stay.report
        if report.stopped:
            context.log.warning(f"{provider}: submissions stopped for now: {report.stopped}")
        metadata, sandbox_now = submission_metadata(
            settings, batch, provider, report, run_id, started
        )
        if sandbox_now:
            context.log.warning(
                f"SANDBOX: this run sent {sandbox_now} {provider} requests of {batch} to the emulator"
            )
        metadata["waiting"] = dg.MetadataValue.json(metadata["waiting"])
        metadata |= {"waves": stay.waves, "stayed_s": round(stay.stayed_s, 1), "ended": stay.ended}
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


def submission_assets(follow: FollowTasks) -> list[dg.AssetsDefinition]:
    """Every provider's submission asset; `follow` polls a batch's own tasks (the polling
    stage's pass, handed in by the wiring: imports follow the data flow)."""
    return [submission_asset(name, follow) for name in PROVIDERS]
