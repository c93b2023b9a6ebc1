"""Spend caps changed from the UI: `set_budget_job` stores them in the state store, and the task
sensor, the daily schedule and later runs apply them at once. A cap set there wins over the
environment variable; a value given to a run in its resource config wins for that run. On SQLite
and PostgreSQL, through the Dagster definitions."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest

from seedance_pipeline.resources import PipelineResources
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.state.store import RequestRecord
from seedance_pipeline_tests.conftest import pipeline_resources
from seedance_pipeline_tests.pipeline.conftest import Pipeline
from seedance_pipeline_tests.pipeline.test_assets_and_sensors import drive
from seedance_pipeline_tests.state.stored import insert_as_is


def set_budget(pipeline: Pipeline, **config: Any) -> dg.ExecuteInProcessResult:
    return pipeline.defs.resolve_job_def("set_budget_job").execute_in_process(
        instance=pipeline.instance,
        resources=pipeline.resources.by_key(),
        run_config={"ops": {"set_budget": {"config": config}}},
    )


def submissions_launched(
    pipeline: Pipeline, resources: PipelineResources | None = None
) -> tuple[set[str | None], str]:
    """(batches the task sensor launches `submit_batch_job` for, the daily schedule's skip or '')."""
    resources = resources or pipeline.resources
    tick = Pipeline(
        resources, pipeline.defs, pipeline.instance, pipeline.emulator, pipeline.catalog
    ).sensor()
    submits = {r.partition_key for r in getattr(tick, "run_requests", None) or []
               if r.job_name == "submit_batch_job"}  # fmt: skip
    context = dg.build_schedule_context(instance=pipeline.instance, resources=resources.by_key(),
                                        scheduled_execution_time=datetime(2026, 11, 25, 6, tzinfo=UTC))  # fmt: skip
    scheduled = pipeline.defs.resolve_schedule_def("daily_outstanding_batches")(context)
    return submits, scheduled.skip_message or "" if isinstance(scheduled, dg.SkipReason) else ""


def test_a_cap_set_in_the_ui_applies_at_once_to_the_sensor_and_the_schedule(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEEDANCE_DAILY_BUDGET_USD", "100")
    pipeline.run("catalog_job")
    settings = pipeline.resources.settings()
    spent = RequestRecord(request_id="spent", batch="earlier", catalog_row=0, provider="novita",
                          model="m", request={}, status=RequestStatus.SUCCEEDED, cost_usd=30.0,
                          cost_usd_estimated=30.0, submitted_at=time.time())  # fmt: skip
    insert_as_is(settings.store(), [spent])  # $30 spent today: under the environment's $100
    assert submissions_launched(pipeline)[0] == {"alpha", "beta"}

    result = set_budget(pipeline, daily_budget_usd=20.0)  # in the UI: below what is spent
    assert result.success
    logged = [r.user_message for r in pipeline.instance.all_logs(result.run_id)
              if "set daily" in r.user_message]  # fmt: skip
    assert logged and "now daily $20.0000 (set in the UI" in logged[0]
    submits, skip = submissions_launched(pipeline)
    assert submits == set() and "today's budget of $20.00 is spent" in skip

    # A value given to a run explicitly wins for that run; the UI's cap still holds for the rest.
    given = pipeline_resources(pipeline.resources, daily_budget_usd=200.0)
    assert submissions_launched(pipeline, given)[0] == {"alpha", "beta"}

    set_budget(pipeline, daily_budget_usd=-1)  # no cap, from the UI
    assert submissions_launched(pipeline)[0] == {"alpha", "beta"}
    assert pipeline.resources.settings().daily_budget_usd is None

    set_budget(pipeline, forget=True)  # back to the environment's $100
    assert pipeline.resources.settings().daily_budget_usd == 100.0
    assert (
        pipeline.resources.settings().cap_sources["daily_budget_usd"]
        == "$SEEDANCE_DAILY_BUDGET_USD"
    )


def test_a_batch_cap_set_in_the_ui_holds_submissions_back(pipeline: Pipeline) -> None:
    pipeline.run("catalog_job")
    set_budget(pipeline, batch_budget_usd=0.0)
    result = pipeline.run("submit_batch_job", "alpha")
    assert result.success
    store = pipeline.resources.settings().store()
    assert store.counts("alpha").get(RequestStatus.PENDING, 0) == 3  # nothing went out
    assert pipeline.emulator.state.audit() == []


def test_the_ledger_shows_the_caps_in_force_and_todays_spend(pipeline: Pipeline) -> None:
    pipeline.run("catalog_job")
    drive(pipeline)
    set_budget(pipeline, daily_budget_usd=50.0, batch_budget_usd=-1)
    result = pipeline.run("ledger_job", "alpha")
    meta = result.asset_materializations_for_node("batch_ledger")[0].metadata
    caps = str(meta["budget_caps"].value)
    assert (
        caps.startswith("daily $50.0000 (set in the UI ") and "batch none (set in the UI " in caps
    )
    assert meta["daily_budget_usd"].value == 50.0
    spent = pipeline.resources.settings().store().spend()
    assert meta["spent_today_usd"].value == pytest.approx(spent, abs=1e-4) and spent > 0
    assert meta["budget_left_today_usd"].value == pytest.approx(50.0 - spent, abs=1e-4)


def test_the_budget_launchpad_offers_only_the_caps_with_descriptions(pipeline: Pipeline) -> None:
    job = pipeline.defs.resolve_job_def("set_budget_job")
    fields = job.graph.node_defs[0].config_schema.config_type.fields  # type: ignore[union-attr]
    assert set(fields) == {"daily_budget_usd", "batch_budget_usd", "forget"}
    assert all(field.description for field in fields.values())
    assert "-1 for no cap" in (fields["daily_budget_usd"].description or "")
