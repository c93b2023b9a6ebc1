"""One submission asset per provider, partitioned by batch, each in its provider's Dagster pool."""

import dagster as dg

from seedance_pipeline.catalog.assets import batches, image_catalog
from seedance_pipeline.pipeline import submit_batch
from seedance_pipeline.providers import provider_names
from seedance_pipeline.resources import SeedanceResource
from seedance_pipeline.state.lifecycle import ACTIVE, RequestStatus


def submission_asset(provider: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{provider}_submissions",
        deps=[image_catalog],
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
        report = submit_batch(
            settings, batch, [provider], seedance.run_label or context.run.run_id
        ).get(provider)
        store = settings.store()
        records = store.records(batch=batch, provider=provider)
        if report is not None and report.stopped:
            context.log.warning(f"{provider}: submissions stopped for now: {report.stopped}")
        sandbox = [r for r in records if r.sandbox]
        if sandbox:
            context.log.warning(
                f"SANDBOX: {len(sandbox)} {provider} requests of {batch} went to the emulator"
            )
        return dg.MaterializeResult(
            metadata={
                "submitted_now": report.submitted if report else 0,
                "finished_now": report.finished if report else 0,
                "refused_now": report.failed if report else 0,
                "outcome_unknown_now": report.unknown if report else 0,
                "waiting": dg.MetadataValue.json(dict(report.waiting) if report else {}),
                "pending": sum(r.status == RequestStatus.PENDING for r in records),
                "in_flight": sum(r.status in ACTIVE for r in records),
                "sandbox_requests": len(sandbox),
                "in_flight_limit_now": store.current_limit(
                    provider, settings.in_flight_limit(provider)
                ),
                **settings.budget_metadata(store, batch),
            }
        )

    return _submissions


submission_assets = [submission_asset(name) for name in provider_names()]
