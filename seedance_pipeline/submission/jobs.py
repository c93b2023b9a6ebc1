"""`retry_job`: new attempts of a batch's failed or expired requests, launched from the UI.

The job only sends them back to pending (within the spend caps); the task sensor then submits them
like any pending request, polls them, and rewrites the batch's ledger once nothing is in flight."""

import dagster as dg
from pydantic import Field

from seedance_pipeline.resources import SeedanceResource
from seedance_pipeline.submission.retry import parse_statuses, qc_retry_requests, retry_requests


class RetryConfig(dg.Config):
    batch: str = Field(description="the batch (partition) whose requests to retry")
    statuses: list[str] = Field(
        default=["failed", "expired"],
        description="statuses to retry: failed, expired, cancelled. Requests whose outcome is "
        "unknown are never retried (reconcile first: `seedance-pipeline resolve-unknown`).",
    )
    qc_fail: bool = Field(
        default=False,
        description="instead of `statuses`: the succeeded requests whose video failed QC "
        "(qc_status = fail), each with a new random seed, up to SEEDANCE_QC_MAX_ATTEMPTS attempts "
        "per request (default 3).",
    )


@dg.op(
    description="Sends the batch's requests in the chosen statuses back to pending as new "
    "attempts, in catalog order while their estimates fit the spend caps; the earlier attempt is "
    "kept in the state store's `attempts` table."
)
def retry_failed_requests(
    context: dg.OpExecutionContext, config: RetryConfig, seedance: SeedanceResource
) -> None:
    if config.qc_fail:
        report = qc_retry_requests(seedance.settings(), config.batch, run_id=context.run_id)
    else:
        try:
            statuses = parse_statuses(config.statuses)
        except ValueError as exc:
            raise dg.Failure(str(exc)) from None
        report = retry_requests(seedance.settings(), config.batch, statuses, run_id=context.run_id)
    for line in report.lines():
        context.log.info(line)
    context.log.info("the task sensor submits them, polls them and rewrites the ledger")


@dg.job(
    description=(
        "Retry a batch's failed or expired requests (launchpad: `batch`, `statuses`), or those whose "
        "video failed QC (`qc_fail`, a new seed each). Each is a new "
        "attempt of the same request: the ledger keeps one row per request, with `attempts` and "
        "`total_cost_usd` over every attempt. The task sensor submits and polls the retried "
        "requests and rewrites the batch's ledger."
    ),
    tags={"seedance/trigger": "retry"},
)
def retry_job() -> None:
    retry_failed_requests()
