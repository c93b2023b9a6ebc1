"""Sensor ticks say what they did: counts in the task sensor's skip reasons, batches or the reason
to skip in the catalog sensor's. Through the Dagster definitions, against the emulator over HTTP."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from seedance_pipeline.catalog.reading import CatalogError
from seedance_pipeline.catalog.refresh import refresh_catalog
from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer
from seedance_pipeline.jobs import PROVIDERS
from seedance_pipeline.resources import PipelineResources
from seedance_pipeline.state.store import StateStoreUnavailable
from seedance_pipeline.submission.batch import submission_outlook
from seedance_pipeline_tests.conftest import ImageFactory, pipeline_resources
from seedance_pipeline_tests.pipeline.conftest import Pipeline
from seedance_pipeline_tests.pipeline.test_assets_and_sensors import drive
from seedance_pipeline_tests.postgres import PostgresServer


def test_the_task_sensor_launches_each_ledger_once_then_says_it_has_nothing_to_do(
    pipeline: Pipeline,
) -> None:
    pipeline.run("catalog_job")
    drive(pipeline)
    sensor = pipeline.defs.resolve_sensor_def("task_sensor")
    context = dg.build_sensor_context(instance=pipeline.instance, resources=pipeline.resources.by_key())  # fmt: skip
    first = sensor(
        context
    )  # no cursor yet: every finished batch's ledger is asked for (by run key)
    assert isinstance(first, dg.SensorResult)
    assert sorted(r.partition_key or "" for r in first.run_requests or []) == ["alpha", "beta"]
    context = dg.build_sensor_context(instance=pipeline.instance, cursor=first.cursor,
                                      resources=pipeline.resources.by_key())  # fmt: skip
    second = sensor(context)
    assert isinstance(second, dg.SkipReason)
    message = second.skip_message or ""
    assert (
        message.startswith("polled 0, finished 0") and "submitted 0 since the last check" in message
    )
    assert "nothing to launch" in message and "next check in 15 s" in message


def test_the_task_sensor_skip_reason_counts_what_it_polled_and_what_went_out(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    make_image(1280, 720, "JPEG", name="wide.jpg")
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame(
        [{"image": "wide.jpg", "prompt": p, "batch": "slow", "provider": v, "resolution": "480p"}
         for p, v in (("waves", "novita"), ("rain", "aimlapi"), ("fog", "myrouter"))]
    ).to_csv(catalog, index=False)  # fmt: skip
    # Tasks that take a minute, and a submission run that does not stay for them: the tick below
    # sees them all in flight.
    with EmulatorServer(EmulatorConfig(queued_s=0.1, running_s=60)) as emulator:
        resources = pipeline_resources(data_dir=str(tmp_path / "data"), catalog=str(catalog),
                                       sandbox_url=emulator.url, poll_time_box_s=10,
                                       submission_stay_s=0)  # fmt: skip
        p = Pipeline(resources, build_definitions(resources), dg.DagsterInstance.ephemeral(),
                     emulator, catalog)  # fmt: skip
        p.run("catalog_job")
        p.run("submit_batch_job", "slow")
        result = p.sensor()
        assert isinstance(result, dg.SkipReason)
        message = result.skip_message or ""
        assert message.startswith("polled 3, finished 0")
        assert "submitted 3 since the last check" in message and "open batches: 1" in message
        assert "nothing to launch; no submission: nothing pending; next check in 15 s" in message


def test_the_catalog_sensor_names_the_batches_or_says_why_it_skipped(pipeline: Pipeline) -> None:
    sensor = pipeline.defs.resolve_sensor_def("catalog_sensor")
    first = sensor(dg.build_sensor_context(instance=pipeline.instance,
                                           resources=pipeline.resources.by_key()))  # fmt: skip
    assert isinstance(first, dg.SensorResult) and len(first.run_requests or []) == 1
    pipeline.run("catalog_job")
    unchanged = sensor(dg.build_sensor_context(instance=pipeline.instance, cursor=first.cursor,
                                               resources=pipeline.resources.by_key()))  # fmt: skip
    assert isinstance(unchanged, dg.SkipReason)
    assert "catalog unchanged" in (unchanged.skip_message or "")
    assert "2 batches registered: alpha, beta" in (unchanged.skip_message or "")

    # A catalog that cannot be read fails the tick (red in the UI) with the reason on one line.
    pipeline.catalog.write_text("picture,prompt\nwide.jpg,waves\n")
    with pytest.raises(CatalogError, match=r"cannot be read: .*'image' is missing") as broken:
        sensor(dg.build_sensor_context(instance=pipeline.instance, cursor=first.cursor,
                                       resources=pipeline.resources.by_key()))  # fmt: skip
    assert "\n" not in str(broken.value) and broken.value.__cause__ is None

    pipeline.catalog.unlink()
    with pytest.raises(CatalogError, match="no catalog at"):
        sensor(dg.build_sensor_context(instance=pipeline.instance, cursor=first.cursor,
                                       resources=pipeline.resources.by_key()))  # fmt: skip


def test_the_task_sensor_never_asks_for_a_batch_not_yet_registered(pipeline: Pipeline) -> None:
    # The catalog job records requests before it registers their batches; a tick in between
    # must not launch a run for a partition that does not exist yet (DagsterUnknownPartitionError).
    # gamma's only row is rejected: the batch is finished at once, so its ledger is due at once.
    catalog = pd.read_csv(pipeline.catalog)
    gamma = {"image": "tiny.png", "prompt": "too small", "batch": "gamma", "provider": "novita"}
    pd.concat([catalog, pd.DataFrame([gamma])]).to_csv(pipeline.catalog, index=False)
    refresh_catalog(pipeline.resources.settings())
    sensor = pipeline.defs.resolve_sensor_def("task_sensor")
    context = dg.build_sensor_context(instance=pipeline.instance, resources=pipeline.resources.by_key())  # fmt: skip
    early = sensor(context)
    assert isinstance(early, dg.SkipReason), early
    assert "not yet registered by catalog_job: alpha, beta, gamma" in (early.skip_message or "")
    pipeline.instance.add_dynamic_partitions("batches", ["alpha", "beta", "gamma"])
    # The next tick, with the cursor the first one left: gamma's ledger was not marked launched.
    context = dg.build_sensor_context(instance=pipeline.instance, cursor=context.cursor,
                                      resources=pipeline.resources.by_key())  # fmt: skip
    registered = sensor(context)
    assert isinstance(registered, dg.SensorResult)
    launched = {(r.job_name, r.partition_key) for r in registered.run_requests or []}
    assert launched == {("submit_batch_job", "alpha"), ("submit_batch_job", "beta"),
                        ("ledger_job", "gamma")}  # fmt: skip


def test_a_submission_run_that_sent_nothing_says_nothing_about_the_sandbox(
    pipeline: Pipeline,
) -> None:
    pipeline.run("catalog_job")
    first = pipeline.run("submit_batch_job", "alpha")
    again = pipeline.run("submit_batch_job", "alpha")  # a backfill: nothing left to send

    def sandbox_lines(run_id: str) -> list[str]:
        return [
            e.user_message
            for e in pipeline.instance.all_logs(run_id)
            if "SANDBOX" in e.user_message
        ]

    assert sandbox_lines(first.run_id) and all(
        "this run sent" in m for m in sandbox_lines(first.run_id)
    )
    assert sandbox_lines(again.run_id) == []


def test_every_skip_says_whether_the_budget_is_spent_nothing_is_pending_or_no_slot_is_free(
    pipeline: Pipeline,
) -> None:
    pipeline.run("catalog_job")
    schedule = pipeline.defs.resolve_schedule_def("daily_outstanding_batches")

    def skip_of(resources: PipelineResources) -> str:
        context = dg.build_schedule_context(instance=pipeline.instance, resources=resources.by_key(),
                                            scheduled_execution_time=datetime(2026, 11, 21, 6, tzinfo=UTC))  # fmt: skip
        result = schedule(context)
        assert isinstance(result, dg.SkipReason), result
        return result.skip_message or ""

    broke = pipeline_resources(pipeline.resources, daily_budget_usd=0.0)
    assert "today's budget of $0.00 is spent" in skip_of(broke)
    tick = Pipeline(
        broke, pipeline.defs, pipeline.instance, pipeline.emulator, pipeline.catalog
    ).sensor()
    assert isinstance(tick, dg.SkipReason)
    assert "no submission: today's budget of $0.00 is spent" in (tick.skip_message or "")

    full = submission_outlook(dataclasses.replace(pipeline.resources.settings(),
                                                  max_in_flight={p: 0 for p in PROVIDERS}))  # fmt: skip
    assert full.batches == [] and full.why_none.startswith("no free slot (in flight: aimlapi 0/0")

    drive(pipeline)  # everything submitted and finished
    assert skip_of(pipeline.resources) == "no batch to submit: nothing pending"


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_a_state_store_that_cannot_be_opened_fails_the_tick_with_the_reason(
    pipeline: Pipeline, postgres: PostgresServer, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = sa.make_url(state_url).set(password=f"wrong-{postgres.password_marker}")
    monkeypatch.setenv("SEEDANCE_STATE_URL", wrong.render_as_string(hide_password=False))
    with pytest.raises(StateStoreUnavailable) as raised:
        pipeline.sensor()
    message = str(raised.value)
    assert "password authentication failed" in message and "\n" not in message
    assert postgres.password_marker not in message
