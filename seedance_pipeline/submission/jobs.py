"""The jobs an operator launches from the UI, beside the asset jobs:

- `retry_job`: new attempts of a batch's failed or expired requests. The job only sends them back to
  pending (within the spend caps); the task sensor then submits them like any pending request,
  polls them, and rewrites the batch's ledger once nothing is in flight.
- `set_budget_job`: change the spend caps. The caps go to the state store, where every run, sensor
  tick and schedule reads them, so a cap typed in the launchpad applies at once and to every later
  submission, not only to the run it was typed into."""

import dagster as dg
from pydantic import Field

from seedance_pipeline.resources import BudgetResource, SeedanceResource
from seedance_pipeline.submission.budget import set_ui_caps
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
    context: dg.OpExecutionContext,
    config: RetryConfig,
    seedance: SeedanceResource,
    seedance_budget: BudgetResource,
) -> None:
    settings = seedance.settings(seedance_budget)
    if config.qc_fail:
        report = qc_retry_requests(settings, config.batch, run_id=context.run_id)
    else:
        try:
            statuses = parse_statuses(config.statuses)
        except ValueError as exc:
            raise dg.Failure(str(exc)) from None
        report = retry_requests(settings, config.batch, statuses, run_id=context.run_id)
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


_CAP = (
    "dollars; -1 for no cap; leave empty to keep the cap as it is. A cap set here wins over "
    "the environment variable ({env}) and the default; a value given to one run in its resource "
    "config still wins for that run."
)


class BudgetConfig(dg.Config):
    """The caps to set; what is left empty stays as it is."""

    daily_budget_usd: float | None = Field(
        default=None,
        description="Spend cap per UTC day, in " + _CAP.format(env="SEEDANCE_DAILY_BUDGET_USD"),
    )
    batch_budget_usd: float | None = Field(
        default=None,
        description="Spend cap per batch (all time), in "
        + _CAP.format(env="SEEDANCE_BATCH_BUDGET_USD"),
    )
    forget: bool = Field(
        default=False,
        description="Forget the caps set here before, so the environment variables (or the "
        "defaults) apply again; then set the caps given above, if any.",
    )


@dg.op(
    description=(
        "Stores the daily and batch spend caps in the state store; the task sensor, the daily "
        "schedule and every later run read them at once."
    ),
    tags={"seedance/stage": "submission"},
)
def set_budget(
    context: dg.OpExecutionContext, config: BudgetConfig, seedance: SeedanceResource
) -> None:
    caps = {
        "daily_budget_usd": config.daily_budget_usd,
        "batch_budget_usd": config.batch_budget_usd,
    }
    context.log.info(set_ui_caps(seedance.settings(), caps, config.forget, context.run_id))


@dg.job(
    description=(
        "Change the spend caps from the UI: open the launchpad, give `daily_budget_usd` and/or "
        "`batch_budget_usd` (dollars, -1 for no cap), launch. Sensors and the schedule apply them "
        "from their next tick; the ledger's metadata shows the caps in force and where they came "
        "from."
    ),
    tags={"seedance/trigger": "manual"},
)
def set_budget_job() -> None:
    set_budget()
