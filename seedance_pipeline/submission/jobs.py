"""`set_budget_job`: change the spend caps from the Dagster UI. The caps go to the state store, where
every run, sensor tick and schedule reads them, so a cap typed in the launchpad applies at once and
to every later submission, not only to the run it was typed into."""

import dagster as dg
from pydantic import Field

from seedance_pipeline.resources import SeedanceResource
from seedance_pipeline.submission.budget import set_ui_caps

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
