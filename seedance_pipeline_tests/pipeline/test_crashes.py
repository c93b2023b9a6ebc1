"""Killing a real run (SIGKILL) mid-submission and mid-poll loses no task id and pays nothing twice:
the emulator's audit is compared with the ledger after a rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer, Faults
from seedance_pipeline.settings import settings_from
from seedance_pipeline_tests.conftest import ImageFactory

EXE = str(Path(sys.executable).with_name("seedance-pipeline"))


def start(
    catalog: Path, data: Path, emulator: EmulatorServer, *extra: str
) -> subprocess.Popen[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY")
        and (not k.startswith("SEEDANCE_") or k == "SEEDANCE_STATE_URL")
    }
    env["SEEDANCE_SANDBOX_URL"] = emulator.url
    return subprocess.Popen([EXE, "run", "--catalog", str(catalog), "--data-dir", str(data), "--no-progress",
                             "--stale-submission-s", "2", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_until(condition, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def make_catalog(tmp_path: Path, make_image: ImageFactory, providers: tuple[str, ...]) -> Path:
    make_image(1280, 720, "JPEG", name="wide.jpg")
    rows = [{"image": "wide.jpg", "prompt": "p", "resolution": "480p", "provider": p, "seed": 10 * i + j}
            for i, p in enumerate(providers) for j in range(4)]  # fmt: skip
    path = tmp_path / "catalog.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def kill_mid_submission(
    tmp_path: Path, make_image: ImageFactory, emulator: EmulatorServer, provider: str
) -> Path:
    """Start a run whose create answers never come back, SIGKILL it once the provider has made all
    four tasks, and check that the intent to submit was recorded before every call."""
    catalog, data = make_catalog(tmp_path, make_image, (provider,)), tmp_path / "data"
    emulator.state.set_faults(provider, Faults(answer_delay_s=60, apply_to=("submit",)))
    run = start(catalog, data, emulator)
    wait_until(lambda: len(emulator.state.audit(provider)) == 4)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    assert settings_from(data_dir=str(data)).store().counts() == {"submitting": 4}
    emulator.state.set_faults(provider, None)
    time.sleep(2.5)  # past --stale-submission-s: the dead run's calls are now known to be orphaned
    return catalog


def test_sigkill_mid_submission_where_the_provider_lists_its_tasks(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    with EmulatorServer(EmulatorConfig(queued_s=0.1, running_s=0.3)) as emulator:
        catalog = kill_mid_submission(tmp_path, make_image, emulator, "modelark")
        rerun = start(catalog, tmp_path / "data", emulator)
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        assert len(emulator.state.audit()) == 4  # the rerun created nothing: nothing paid twice
        ledger = pd.read_parquet(tmp_path / "data" / "ledger")
        # ModelArk lists its tasks: each lost answer was found again (by model, window and seed).
        assert set(ledger["status"]) == {"succeeded"} and ledger["video_uri"].notna().all()
        assert set(ledger["task_id"]) == {r.task_id for r in emulator.state.audit()}
        for row in ledger.itertuples():
            assert row.seed_used == row.seed  # each request got its own task back


def test_sigkill_mid_submission_elsewhere_leaves_unknowns_for_an_operator(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    with EmulatorServer(EmulatorConfig(queued_s=0.1, running_s=0.3)) as emulator:
        catalog = kill_mid_submission(tmp_path, make_image, emulator, "novita")
        data = tmp_path / "data"
        rerun = start(catalog, data, emulator)
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        assert len(emulator.state.audit()) == 4  # never resubmitted
        ledger = pd.read_parquet(data / "ledger")
        assert (
            set(ledger["status"]) == {"unknown"}
            and (ledger["error_kind"] == "outcome_unknown").all()
        )

        # The documented operator action adopts a task found at the provider; polling resumes.
        request_id, task_id = ledger["request_id"].iloc[0], emulator.state.audit()[0].task_id
        adopt = subprocess.run([EXE, "resolve-unknown", "--data-dir", str(data), request_id, "--task-id", task_id],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert adopt.returncode == 0, adopt.stderr
        final = start(catalog, data, emulator)
        final.communicate(timeout=120)
        ledger = pd.read_parquet(data / "ledger").set_index("request_id")
        assert (
            ledger.loc[request_id, "status"] == "succeeded"
            and ledger.loc[request_id, "task_id"] == task_id
        )
        assert len(emulator.state.audit()) == 4


def test_sigkill_mid_poll_then_rerun(tmp_path: Path, make_image: ImageFactory) -> None:
    with EmulatorServer(EmulatorConfig(queued_s=0.1, running_s=0.3)) as emulator:
        catalog, data = (
            make_catalog(tmp_path, make_image, ("modelark", "novita")),
            tmp_path / "data",
        )
        for provider in ("modelark", "novita"):
            emulator.state.set_faults(provider, Faults(answer_delay_s=60, apply_to=("poll",)))
        run = start(catalog, data, emulator)
        wait_until(
            lambda: (
                emulator.state.calls[("novita", "poll")] > 0
                and emulator.state.calls[("modelark", "poll")] > 0
            )
        )
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)
        store = settings_from(data_dir=str(data)).store()
        assert store.counts() == {"in_flight": 8}  # every task id was kept
        for provider in ("modelark", "novita"):
            emulator.state.set_faults(provider, None)

        rerun = start(catalog, data, emulator)
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        ledger = pd.read_parquet(data / "ledger")
        assert set(ledger["status"]) == {"succeeded"} and len(ledger) == 8
        assert sorted(ledger["task_id"]) == sorted(r.task_id for r in emulator.state.audit())
