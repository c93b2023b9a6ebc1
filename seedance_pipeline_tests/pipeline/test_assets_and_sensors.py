"""The Dagster layer with Dagster's testing APIs, against the emulator over HTTP."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from dagster._serdes import serialize_value

from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.state.store import RequestRecord
from seedance_pipeline_tests.conftest import pipeline_resources
from seedance_pipeline_tests.pipeline.conftest import Pipeline
from seedance_pipeline_tests.postgres import PostgresServer
from seedance_pipeline_tests.state.stored import insert_as_is


def drive(pipeline: Pipeline, timeout_s: float = 60) -> list[str]:
    """Evaluate the task sensor and execute what it asks for, until it has nothing to launch."""
    launched = []
    seen: set[str | None] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = pipeline.sensor()
        fresh = (
            [r for r in (result.run_requests or []) if r.run_key is None or r.run_key not in seen]
            if isinstance(result, dg.SensorResult)
            else []
        )
        for request in fresh:
            seen.add(request.run_key)
            pipeline.run(request.job_name or "", request.partition_key)
            launched.append(f"{request.job_name}:{request.partition_key}")
        store = pipeline.resources.settings().store()
        if not fresh and not store.open_batches():
            return launched
        time.sleep(0.2)
    raise AssertionError("the pipeline did not settle")


def test_catalog_asset_records_requests_and_registers_batches(pipeline: Pipeline) -> None:
    result = pipeline.run("catalog_job")
    meta = result.asset_materializations_for_node("image_catalog")[0].metadata
    assert (meta["rows"].value, meta["requests"].value, meta["duplicate_rows_collapsed"].value) == (
        7,
        6,
        1,
    )
    assert (meta["valid"].value, meta["rejected"].value) == (5, 1)
    assert pipeline.instance.get_dynamic_partitions("batches") == ["alpha", "beta"]
    rejects = pd.read_parquet(f"{pipeline.resources.seedance.data_dir}/rejected_rows.parquet")
    assert list(rejects["image_id"]) == ["tiny"] and "short side 120 px" in rejects["reasons"][0]


def test_catalog_sensor_launches_once_per_catalog_version(pipeline: Pipeline) -> None:
    first = pipeline.sensor("catalog_sensor")
    assert isinstance(first, dg.SensorResult) and len(first.run_requests or []) == 1
    context = dg.build_sensor_context(instance=pipeline.instance, cursor=first.cursor,
                                      resources=pipeline.resources.by_key())  # fmt: skip
    assert isinstance(pipeline.defs.resolve_sensor_def("catalog_sensor")(context), dg.SkipReason)
    pipeline.catalog.write_text(pipeline.catalog.read_text() + "wide.jpg,new,gamma,novita,2,480p\n")
    context = dg.build_sensor_context(instance=pipeline.instance, cursor=first.cursor,
                                      resources=pipeline.resources.by_key())  # fmt: skip
    changed = pipeline.defs.resolve_sensor_def("catalog_sensor")(context)
    assert isinstance(changed, dg.SensorResult) and changed.cursor != first.cursor


def test_submission_asset_submits_once_even_when_rerun_or_backfilled(pipeline: Pipeline) -> None:
    pipeline.run("catalog_job")
    for _ in range(3):  # a rerun and a backfill over the same partition
        pipeline.run("submit_batch_job", "alpha")
    audit = pipeline.emulator.state.audit()
    assert sorted(r.provider for r in audit) == ["modelark", "novita", "segmind"]
    store = pipeline.resources.settings().store()
    by_provider = {r.provider: r.status for r in store.records(batch="alpha")}
    assert (
        by_provider["segmind"] == RequestStatus.SUCCEEDED
    )  # synchronous: the video came with the answer
    # Each step stayed, following its own tasks, until they were done.
    assert by_provider["novita"] == by_provider["modelark"] == RequestStatus.SUCCEEDED
    assert all(
        r.status == RequestStatus.PENDING
        for r in store.records(batch="beta")
        if r.status != RequestStatus.REJECTED
    )


def test_the_sensor_finishes_every_batch_and_the_ledger_is_exact(pipeline: Pipeline) -> None:
    pipeline.run("catalog_job")
    launched = drive(pipeline)
    assert "submit_batch_job:alpha" in launched and "ledger_job:beta" in launched
    ledger = pd.read_parquet(f"{pipeline.resources.seedance.data_dir}/ledger")
    assert len(ledger) == 6 and ledger["request_id"].is_unique
    assert dict(ledger["status"].value_counts()) == {"succeeded": 5, "rejected": 1}
    audit = {r.task_id for r in pipeline.emulator.state.audit()}
    assert set(ledger["task_id"].dropna()) == audit - {t for t in audit if t.startswith("segmind-")}
    assert len(pipeline.emulator.state.audit()) == 5  # one task per valid request
    done = ledger[ledger["status"] == "succeeded"]
    assert (
        done["sandbox"].all()
        and (done["video_fps"] == 24).all()
        and (done["video_duration_s"] > 5).all()
    )
    assert (done["cost_usd"] > 0).all() and done["video_sha256"].str.len().eq(64).all()
    assert str(ledger["submitted_at"].dtype) == "datetime64[us, UTC]"
    wide = done[done["image_id"] == "wide"].iloc[0]
    assert (wide["video_width"], wide["video_height"], wide["seed"]) == (864, 480, 1)
    assert wide["seed_used"] == 1 or pd.isna(
        wide["seed_used"]
    )  # Novita sometimes answers `extra: {}`
    tall = done[done["provider"] == "modelark"].iloc[0]
    assert (tall["video_width"], tall["video_height"]) == (480, 864) and tall["seed_used"] > 0


def test_ledger_materialisations_carry_metadata_and_pass_their_checks(pipeline: Pipeline) -> None:
    pipeline.run("catalog_job")
    drive(pipeline)
    result = pipeline.run("ledger_job", "alpha")
    meta = result.asset_materializations_for_node("batch_ledger")[0].metadata
    assert meta["rows"].value == 3 and meta["status_succeeded"].value == 3
    assert meta["sandbox_rows"].value == 3 and meta["cost_usd"].value > 0
    spent = pipeline.resources.settings().store().spend()  # both batches, all today
    assert meta["spent_today_usd"].value == round(spent, 4) and spent > meta["cost_usd"].value
    assert meta["budget_left_today_usd"].value == pytest.approx(
        25.0 - meta["spent_today_usd"].value
    )
    checks = result.get_asset_check_evaluations()
    assert {c.check_name: c.passed for c in checks} == {
        "one_row_per_request": True, "succeeded_rows_have_verified_videos": True, "paid_videos_kept": True,
        "costs_add_up": True, "no_secrets": True, "videos_pass_qc": True, "no_failed_rows": True,
    }  # fmt: skip


def test_a_tampered_video_fails_its_check(pipeline: Pipeline) -> None:
    pipeline.run("catalog_job")
    drive(pipeline)
    ledger = pd.read_parquet(f"{pipeline.resources.seedance.data_dir}/ledger/batch=alpha")
    with open(ledger["video_uri"].dropna().iloc[0], "ab") as video:
        video.write(b"tampered")
    checks = pipeline.run("ledger_job", "alpha").get_asset_check_evaluations()
    assert {c.check_name: c.passed for c in checks}["succeeded_rows_have_verified_videos"] is False


def test_the_sensor_skips_with_what_it_did_when_idle(pipeline: Pipeline) -> None:
    result = pipeline.sensor()
    assert isinstance(result, dg.SkipReason) and "polled 0" in (result.skip_message or "")


def test_the_daily_schedule_submits_outstanding_batches_within_the_cap(pipeline: Pipeline) -> None:
    pipeline.run("catalog_job")
    schedule = pipeline.defs.resolve_schedule_def("daily_outstanding_batches")
    when = datetime(2026, 11, 21, 6, tzinfo=UTC)
    context = dg.build_schedule_context(instance=pipeline.instance, resources=pipeline.resources.by_key(),
                                        scheduled_execution_time=when)  # fmt: skip
    requests = schedule(context)
    assert sorted(r.partition_key or "" for r in requests) == ["alpha", "beta"]
    broke = pipeline_resources(pipeline.resources, daily_budget_usd=0.0)
    context = dg.build_schedule_context(instance=pipeline.instance, resources=broke.by_key(),
                                        scheduled_execution_time=when)  # fmt: skip
    assert isinstance(schedule(context), dg.SkipReason)


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)  # SQLite has no password
def test_the_state_store_password_never_reaches_dagster(
    pipeline: Pipeline, postgres: PostgresServer, state_url: str, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    pipeline.run("catalog_job")
    drive(pipeline)  # submissions, polls and ledgers, all on PostgreSQL
    # a run given a wrong password fails, and says why, without showing it either
    wrong = sa.make_url(state_url).set(password=f"wrong-{postgres.password_marker}")
    monkeypatch.setenv("SEEDANCE_STATE_URL", wrong.render_as_string(hide_password=False))
    failed = pipeline.defs.resolve_job_def("catalog_job").execute_in_process(
        instance=pipeline.instance, resources=pipeline.resources.by_key(), raise_on_error=False
    )
    assert not failed.success
    runs = pipeline.instance.get_runs()
    recorded = [serialize_value(run) for run in runs]
    recorded += [
        serialize_value(entry) for run in runs for entry in pipeline.instance.all_logs(run.run_id)
    ]
    recorded += [record.getMessage() for record in caplog.records]
    everything = "\n".join(recorded)
    assert len(runs) >= 4 and "password authentication failed" in everything
    assert postgres.password_marker not in everything


def test_no_daily_cap_from_the_environment_lets_the_sensor_and_schedule_submit(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `SEEDANCE_DAILY_BUDGET_USD=-1` once meant a cap of -1 dollars: nothing was ever launched.
    pipeline.run("catalog_job")
    settings = pipeline.resources.settings()
    spent = RequestRecord(request_id="spent", batch="earlier", catalog_row=0, provider="novita",
                          model="m", request={}, status=RequestStatus.SUCCEEDED, cost_usd=30.0,
                          cost_usd_estimated=30.0, submitted_at=time.time())  # fmt: skip
    insert_as_is(settings.store(), [spent])  # more than the default cap, spent today
    schedule = pipeline.defs.resolve_schedule_def("daily_outstanding_batches")

    def launched() -> tuple[set[str | None], object]:
        tick = pipeline.sensor()
        submits = {r.partition_key for r in getattr(tick, "run_requests", None) or []
                   if r.job_name == "submit_batch_job"}  # fmt: skip
        context = dg.build_schedule_context(instance=pipeline.instance, resources=pipeline.resources.by_key(),
                                            scheduled_execution_time=datetime(2026, 11, 21, 6, tzinfo=UTC))  # fmt: skip
        return submits, schedule(context)

    for no_cap in ("-1", ""):
        monkeypatch.setenv("SEEDANCE_DAILY_BUDGET_USD", no_cap)
        submits, scheduled = launched()
        assert submits == {"alpha", "beta"}, no_cap
        assert isinstance(scheduled, list)
        assert sorted(r.partition_key or "" for r in scheduled) == ["alpha", "beta"]
    for capped in ("25", None):  # a cap, given or the default: today's $30 has spent it
        if capped is None:
            monkeypatch.delenv("SEEDANCE_DAILY_BUDGET_USD")
        else:
            monkeypatch.setenv("SEEDANCE_DAILY_BUDGET_USD", capped)
        submits, scheduled = launched()
        assert submits == set() and isinstance(scheduled, dg.SkipReason), capped
        assert "today's budget of $25.00 is spent" in (scheduled.skip_message or "")
