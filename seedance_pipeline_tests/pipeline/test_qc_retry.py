"""`seedance-pipeline retry --qc-fail` as a user runs it: a kept video that failed QC gets a new
attempt with a new seed, within the spend caps and the most attempts allowed, and the ledger keeps
the best attempt while counting every one."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.emulator import EmulatorServer
from seedance_pipeline.emulator.state import Faults
from seedance_pipeline.ledger.summary import cost_per_passing_clip
from seedance_pipeline.settings import settings_from
from seedance_pipeline_tests.conftest import pipeline_resources
from seedance_pipeline_tests.pipeline.test_retry import command, ledger
from seedance_pipeline_tests.pipeline.test_video_qc import textured


def qc_catalog(tmp_path: Path, rows: int = 1) -> Path:
    """Novita rows with a picture QC can compare its first frame with, each with its own seed."""
    textured(tmp_path / "pic.png", 1280, 720, 0.0)
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame([
        {"image": "pic.png", "prompt": f"waves {i}", "batch": "b", "provider": "novita",
         "seed": 7 + i, "resolution": "480p"} for i in range(rows)
    ]).to_csv(catalog, index=False)  # fmt: skip
    return catalog


def test_a_qc_retry_produces_a_passing_video_with_a_new_seed_and_counts_both_attempts(
    tmp_path: Path, emulator: EmulatorServer, state_backend: str
) -> None:
    catalog, data = qc_catalog(tmp_path), tmp_path / "data"
    env = {"SEEDANCE_SANDBOX_URL": emulator.url}
    emulator.state.set_faults("novita", Faults(bad_video="black"))
    command("run", catalog, data, env)
    first = ledger(data, "b").iloc[0]
    assert (first["status"], first["qc_status"], first["seed"]) == ("succeeded", "fail", 7)

    emulator.state.set_faults("novita", None)  # the provider delivers good videos again
    out = command("retry", catalog, data, env, "--qc-fail", "--batch", "b")
    assert "retried: 1 requests of b" in out
    novita = emulator.state.audit("novita")
    assert len(novita) == 2  # one new task

    rows = ledger(data, "b")
    assert len(rows) == 1  # one row per request
    row = rows.iloc[0]
    assert (row["qc_status"], row["attempts"], row["task_id"]) == ("pass", 2, novita[-1].task_id)
    assert row["seed"] != 7  # a new seed, recorded as asked
    (earlier,) = settings_from(data_dir=str(data)).store().attempts(str(row["request_id"]))
    assert (earlier["attempt"], earlier["qc_status"], earlier["seed"]) == (1, "fail", 7)
    assert earlier["video_uri"] and earlier["video_uri"] != row["video_uri"]
    assert earlier["cost_usd"] > 0
    assert row["total_cost_usd"] == earlier["cost_usd"] + row["cost_usd"]  # both attempts

    again = command("retry", catalog, data, env, "--qc-fail")
    assert "retried: 0 requests" in again and len(emulator.state.audit("novita")) == 2


def test_a_qc_retry_stops_at_the_most_attempts_allowed(
    tmp_path: Path, emulator: EmulatorServer, state_backend: str
) -> None:
    catalog, data = qc_catalog(tmp_path), tmp_path / "data"
    env = {"SEEDANCE_SANDBOX_URL": emulator.url, "SEEDANCE_QC_MAX_ATTEMPTS": "2"}
    emulator.state.set_faults("novita", Faults(bad_video="black"))  # every video stays black
    command("run", catalog, data, env)
    out = command("retry", catalog, data, env, "--qc-fail")
    assert "retried: 1 requests" in out
    out = command("retry", catalog, data, env, "--qc-fail")
    assert "retried: 0 requests" in out and "1 failed QC but reached the most attempts" in out
    assert len(emulator.state.audit("novita")) == 2
    row = ledger(data, "b").iloc[0]
    assert (row["qc_status"], row["attempts"]) == ("fail", 2)


def test_a_qc_retry_stays_within_the_daily_budget_counting_every_attempt(
    tmp_path: Path, emulator: EmulatorServer, state_backend: str
) -> None:
    catalog, data = qc_catalog(tmp_path, rows=3), tmp_path / "data"
    env = {"SEEDANCE_SANDBOX_URL": emulator.url}
    emulator.state.set_faults("novita", Faults(bad_video="black"))
    command("run", catalog, data, env)
    first = ledger(data, "b")
    assert (first["qc_status"] == "fail").all()
    spent, estimate = first["cost_usd"].sum(), float(first["cost_usd_estimated"].iloc[0])

    emulator.state.set_faults("novita", None)
    cap = f"{spent + 1.5 * estimate:.6f}"  # room for one new attempt today, not two
    out = command("retry", catalog, data, env, "--qc-fail", "--daily-budget-usd", cap)
    assert "retried: 1 requests" in out and "not retried: 2 would exceed a spend cap" in out
    assert len(emulator.state.audit("novita")) == 4
    rows = ledger(data, "b")
    assert sorted(rows["attempts"]) == [1, 1, 2]
    assert sorted(rows["qc_status"]) == ["fail", "fail", "pass"]


def test_the_ledger_keeps_the_best_attempt_when_the_qc_retry_is_worse(
    tmp_path: Path, emulator: EmulatorServer, state_backend: str
) -> None:
    catalog, data = qc_catalog(tmp_path), tmp_path / "data"
    env = {"SEEDANCE_SANDBOX_URL": emulator.url}
    emulator.state.set_faults("novita", Faults(bad_video="wrong_duration"))  # right picture
    command("run", catalog, data, env)
    first = ledger(data, "b").iloc[0]
    assert first["qc_status"] == "fail" and "duration" in first["qc_reasons"]

    emulator.state.set_faults("novita", Faults(bad_video="unrelated"))  # worse: wrong picture too
    out = command("retry", catalog, data, env, "--qc-fail")
    assert "retried: 1 requests" in out
    novita = emulator.state.audit("novita")
    assert len(novita) == 2

    row = ledger(data, "b").iloc[0]
    # The first attempt is back on the row, the worse one archived; both are counted and paid.
    assert (row["task_id"], row["seed"], row["video_uri"]) == (
        first["task_id"],
        7,
        first["video_uri"],
    )
    assert (
        row["qc_reasons"] == first["qc_reasons"] and row["qc_first_ssim"] == first["qc_first_ssim"]
    )
    assert row["attempts"] == 2
    (worse,) = settings_from(data_dir=str(data)).store().attempts(str(row["request_id"]))
    assert worse["task_id"] == novita[-1].task_id and worse["seed"] != 7
    assert "unlike the input image" in worse["qc_reasons"]
    assert Path(worse["video_uri"]).is_file() and Path(row["video_uri"]).is_file()
    assert row["total_cost_usd"] == row["cost_usd"] + worse["cost_usd"]


def test_the_cost_per_passing_clip_counts_the_failed_attempts_too() -> None:
    rows = pd.DataFrame({"qc_status": ["pass", "fail"], "cost_usd": [0.2, 0.2],
                         "total_cost_usd": [0.4, 0.2]})  # fmt: skip
    assert cost_per_passing_clip(rows) == 0.6


def test_retry_job_with_qc_fail_sends_the_failed_video_back_with_a_new_seed(
    tmp_path: Path, emulator: EmulatorServer, state_backend: str
) -> None:
    catalog, data = qc_catalog(tmp_path, rows=2), tmp_path / "data"
    env = {"SEEDANCE_SANDBOX_URL": emulator.url}
    emulator.state.set_faults("novita", Faults(bad_video="black", bad_video_rate=1.0))
    command("run", catalog, data, env)
    store = settings_from(data_dir=str(data)).store()
    failing = {r.request_id for r in store.qc_failures("b")}
    assert len(failing) == 2

    resources = pipeline_resources(
        data_dir=str(data), catalog=str(catalog), sandbox_url=emulator.url
    )
    result = build_definitions(resources).resolve_job_def("retry_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), resources=resources.by_key(),
        run_config={"ops": {"retry_failed_requests": {"config": {"batch": "b", "qc_fail": True}}}},
    )  # fmt: skip
    assert result.success
    records = store.records(batch="b")
    assert {r.status for r in records} == {"pending"}  # the task sensor sends them next
    assert all(r.request["seed"] not in (7, 8) and r.attempts_before == 1 for r in records)
    assert all(store.attempts(r.request_id)[0]["qc_status"] == "fail" for r in records)
