"""`seedance-pipeline retry` as a user runs it: the emulator's audit counts the tasks it really made."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pandas as pd

from seedance_pipeline.emulator import EmulatorServer
from seedance_pipeline.emulator.state import Faults
from seedance_pipeline.providers import ErrorKind
from seedance_pipeline.settings import settings_from
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.state.store import RequestRecord
from seedance_pipeline_tests.conftest import ImageFactory
from seedance_pipeline_tests.pipeline.conftest import write_catalog
from seedance_pipeline_tests.pipeline.test_headless import EXE
from seedance_pipeline_tests.state.stored import insert_as_is


def command(name: str, catalog: Path, data_dir: Path, env: dict[str, str], *extra: str) -> str:
    """`seedance-pipeline <name>` with only the test's settings; it must succeed."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_BASE_URL"))
        and (not k.startswith("SEEDANCE_") or k == "SEEDANCE_STATE_URL")
    }
    result = subprocess.run(
        [EXE, name, "--catalog", str(catalog), "--data-dir", str(data_dir), "--no-progress", *extra],
        env=clean | env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def ledger(data_dir: Path, batch: str) -> pd.DataFrame:
    return pd.read_parquet(data_dir / "ledger" / f"batch={batch}")


def test_a_retry_makes_one_new_task_per_failed_request_and_keeps_one_ledger_row(
    tmp_path: Path, make_image: ImageFactory, emulator: EmulatorServer
) -> None:
    catalog = write_catalog(tmp_path, make_image)
    data = tmp_path / "data"
    env = {"SEEDANCE_SANDBOX_URL": emulator.url}
    emulator.state.set_faults("novita", Faults(fail_rate=1.0))
    first = command("run", catalog, data, env)
    assert "failed     1" in first
    assert len(emulator.state.audit()) == 5
    failed = ledger(data, "alpha").set_index("image_id").loc["wide"]
    assert (failed["status"], failed["attempts"]) == ("failed", 1)

    # An unknown outcome, and one an operator abandoned after it: neither may be sent again.
    store = settings_from(data_dir=str(data)).store()
    now = time.time()
    insert_as_is(store, [
        RequestRecord("unknown-1", "alpha", 90, "novita", "seedance-v1-lite-i2v", {"image": "x"},
                      RequestStatus.UNKNOWN, image_id="lost-answer", submitted_at=now,
                      error_kind=ErrorKind.OUTCOME_UNKNOWN, cost_usd_estimated=0.1),
        RequestRecord("abandoned-1", "alpha", 91, "novita", "seedance-v1-lite-i2v", {"image": "x"},
                      RequestStatus.FAILED, image_id="given-up", submitted_at=now, cost_usd=0.0,
                      error_kind=ErrorKind.OUTCOME_UNKNOWN, cost_usd_estimated=0.1),
    ])  # fmt: skip

    emulator.state.set_faults("novita", None)  # the provider works again
    out = command("retry", catalog, data, env, "--batch", "alpha")
    assert "retried: 1 requests of alpha" in out
    assert "not retried: 1 with an unknown outcome" in out and "1 abandoned by an operator" in out
    assert "tasks created by this run: 1" in out
    novita = emulator.state.audit("novita")
    assert len(emulator.state.audit()) == 6 and len(novita) == 2  # one new task, for that row only

    alpha = ledger(data, "alpha")
    assert alpha["request_id"].is_unique and len(alpha) == 5  # one row per request
    row = alpha.set_index("image_id").loc["wide"]
    assert (row["status"], row["attempts"], row["task_id"]) == ("succeeded", 2, novita[-1].task_id)
    assert row["total_cost_usd"] == row["cost_usd"] > 0  # the failed attempt cost nothing
    others = alpha[alpha["image_id"].isin(["tall", "square"])]
    assert (others["attempts"] == 1).all()  # succeeded rows were not sent again
    assert set(alpha.set_index("image_id").loc[["lost-answer", "given-up"], "attempts"]) == {1}
    (earlier,) = store.attempts(str(row["request_id"]))
    assert (earlier["status"], earlier["attempt"]) == ("failed", 1)
    assert earlier["task_id"] == novita[0].task_id and earlier["error_kind"] == "task_failed"

    again = command("retry", catalog, data, env, "--batch", "alpha")
    assert "retried: 0 requests" in again and len(emulator.state.audit()) == 6


def test_a_retry_stays_within_the_daily_budget_counting_every_attempt(
    tmp_path: Path, make_image: ImageFactory, emulator: EmulatorServer
) -> None:
    make_image(1280, 720, "JPEG", name="wide.jpg")
    rows = [{"image": "wide.jpg", "prompt": f"waves {i}", "batch": "b", "provider": "novita",
             "seed": i + 1, "resolution": "480p"} for i in range(3)]  # fmt: skip
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame(rows).to_csv(catalog, index=False)
    data = tmp_path / "data"
    env = {"SEEDANCE_SANDBOX_URL": emulator.url}
    emulator.state.set_faults("novita", Faults(fail_rate=1.0))
    command("run", catalog, data, env)
    assert len(emulator.state.audit()) == 3
    estimate = float(ledger(data, "b")["cost_usd_estimated"].iloc[0])

    emulator.state.set_faults("novita", None)
    cap = f"{1.5 * estimate:.6f}"  # room for one retry today, not two
    out = command("retry", catalog, data, env, "--daily-budget-usd", cap)
    assert "retried: 1 requests of b" in out and "not retried: 2 would exceed a spend cap" in out
    assert len(emulator.state.audit()) == 4
    after = ledger(data, "b")
    assert sorted(after["status"]) == ["failed", "failed", "succeeded"]
    assert sorted(after["attempts"]) == [1, 1, 2]

    # The paid attempt counts against today's cap: nothing more fits.
    spent = float(after["total_cost_usd"].sum())
    out = command(
        "retry", catalog, data, env, "--daily-budget-usd", f"{spent + 0.5 * estimate:.6f}"
    )
    assert "retried: 0 requests" in out and "not retried: 2 would exceed" in out
    assert len(emulator.state.audit()) == 4


def test_a_retry_refuses_unknown_outcomes_as_a_status(tmp_path: Path) -> None:
    result = subprocess.run([EXE, "retry", "--data-dir", str(tmp_path), "--status", "unknown"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert "not unknown" in result.stderr and "resolve-unknown" in result.stderr
