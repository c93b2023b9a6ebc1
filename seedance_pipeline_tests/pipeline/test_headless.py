"""`seedance-pipeline run` as a user runs it; the emulator's audit proves what it really created."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd

from seedance_pipeline.emulator import EmulatorServer
from seedance_pipeline.headless import Progress
from seedance_pipeline_tests.conftest import ImageFactory
from seedance_pipeline_tests.pipeline.conftest import write_catalog

EXE = str(Path(sys.executable).with_name("seedance-pipeline"))


def run(
    catalog: Path, data_dir: Path, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_BASE_URL"))
        and (not k.startswith("SEEDANCE_") or k == "SEEDANCE_STATE_URL")
    }
    return subprocess.run([EXE, "run", "--catalog", str(catalog), "--data-dir", str(data_dir), "--no-progress", *extra],
                          env=clean | env, capture_output=True, text=True, timeout=300)  # fmt: skip


def test_running_twice_creates_each_task_once(
    tmp_path: Path, make_image: ImageFactory, emulator: EmulatorServer
) -> None:
    catalog = write_catalog(tmp_path, make_image)
    env = {"SEEDANCE_SANDBOX_URL": emulator.url}
    first = run(catalog, tmp_path / "data", env)
    assert first.returncode == 0, first.stderr
    assert "succeeded  5" in first.stdout and "rejected   1" in first.stdout
    assert "tasks created by this run: 5" in first.stdout and "SANDBOX: 5 rows" in first.stdout
    assert "QC: pass 5; $" in first.stdout and "per passing clip" in first.stdout
    assert len(emulator.state.audit()) == 5

    second = run(catalog, tmp_path / "data", env)
    assert second.returncode == 0, second.stderr
    assert "tasks created by this run: 0" in second.stdout
    assert len(emulator.state.audit()) == 5  # the provider saw no new task

    ledger = pd.read_parquet(tmp_path / "data" / "ledger")
    audited = {r.task_id for r in emulator.state.audit() if not r.task_id.startswith("segmind-")}
    assert set(ledger["task_id"].dropna()) == audited
    assert sorted(ledger["batch"].astype(str).unique()) == ["alpha", "beta"]


def test_a_provider_key_sends_its_rows_for_real_and_never_leaks(tmp_path: Path, make_image: ImageFactory,
                                                                 emulator: EmulatorServer) -> None:  # fmt: skip
    catalog = write_catalog(tmp_path, make_image)
    secret = "sk-live-DO-NOT-LEAK-4242"
    env = {"SEEDANCE_SANDBOX_URL": emulator.url, "NOVITA_API_KEY": secret,
           "NOVITA_BASE_URL": emulator.base_url("novita")}  # fmt: skip
    result = run(catalog, tmp_path / "data", env)
    assert result.returncode == 0, result.stderr
    ledger = pd.read_parquet(tmp_path / "data" / "ledger")
    done = ledger[ledger["status"] == "succeeded"]
    assert dict(zip(done["provider"], done["sandbox"], strict=True))["novita"] == False  # noqa: E712
    assert done[done["provider"] != "novita"]["sandbox"].all()
    assert "SANDBOX: 4 rows" in result.stdout
    (novita_task,) = emulator.state.audit("novita")
    assert (
        novita_task.key_fingerprint == hashlib.sha256(secret.encode()).hexdigest()[:12]
    )  # our real key
    everything = result.stdout + result.stderr
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file() and path.suffix != ".mp4":
            everything += path.read_bytes().decode("latin-1")
    assert secret not in everything


def test_it_stops_with_a_clear_message_when_it_cannot_proceed(tmp_path: Path, make_image: ImageFactory,
                                                              emulator: EmulatorServer) -> None:  # fmt: skip
    missing = run(tmp_path / "nope.csv", tmp_path / "data", {"SEEDANCE_SANDBOX_URL": emulator.url})
    assert missing.returncode == 1 and "file not found" in missing.stderr

    catalog = write_catalog(tmp_path, make_image)
    broke = run(
        catalog,
        tmp_path / "data2",
        {"SEEDANCE_SANDBOX_URL": emulator.url},
        "--daily-budget-usd",
        "0.1",
    )
    assert broke.returncode == 1
    assert "cannot be submitted now" in broke.stderr and "budget" in broke.stderr

    emulator.state.set_faults("novita", None)
    from seedance_pipeline.emulator import Faults

    for provider in ("novita", "modelark", "segmind", "aimlapi", "myrouter"):
        emulator.state.set_faults(provider, Faults(insufficient_credit=True))
    no_credit = run(catalog, tmp_path / "data3", {"SEEDANCE_SANDBOX_URL": emulator.url})
    assert no_credit.returncode == 1 and "insufficient_credit" in no_credit.stderr


def test_zero_configuration_starts_a_shared_sandbox_emulator(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    catalog = write_catalog(tmp_path, make_image)
    data = tmp_path / "data"
    try:
        result = run(catalog, data, {})
        assert result.returncode == 0, result.stderr
        info = json.loads((data / "sandbox" / "emulator.json").read_text())
        assert info["url"].startswith("http://127.0.0.1:")
        ledger = pd.read_parquet(data / "ledger")
        assert ledger[ledger["status"] == "succeeded"]["sandbox"].all()
        assert "SANDBOX" in result.stdout
    finally:
        info_file = data / "sandbox" / "emulator.json"
        if info_file.exists():
            os.kill(json.loads(info_file.read_text())["pid"], signal.SIGTERM)


def test_resolve_unknown_needs_an_explicit_decision(tmp_path: Path) -> None:
    from seedance_pipeline.settings import settings_from
    from seedance_pipeline.state.lifecycle import RequestStatus
    from seedance_pipeline.state.store import RequestRecord
    from seedance_pipeline_tests.state.stored import insert_as_is

    store = settings_from(data_dir=str(tmp_path)).store()  # where the command looks for it
    insert_as_is(store, [RequestRecord(request_id=rid, batch="b", catalog_row=i, provider=p, model="m", request={},
                                 status=RequestStatus.UNKNOWN) for i, (rid, p) in enumerate([("r1", "novita"), ("r2", "segmind")])])  # fmt: skip
    listed = subprocess.run(
        [EXE, "resolve-unknown", "--data-dir", str(tmp_path)], capture_output=True, text=True
    )
    assert "r1" in listed.stdout and "r2" in listed.stdout
    vague = subprocess.run(
        [EXE, "resolve-unknown", "--data-dir", str(tmp_path), "r1"], capture_output=True, text=True
    )
    assert vague.returncode == 2 and "say what to do" in vague.stderr
    no_tasks = subprocess.run([EXE, "resolve-unknown", "--data-dir", str(tmp_path), "r2", "--task-id", "t"],
                              capture_output=True, text=True)  # fmt: skip
    assert no_tasks.returncode == 2 and "has no tasks to adopt" in no_tasks.stderr
    assert {r.status for r in store.records()} == {RequestStatus.UNKNOWN}
    resubmit = subprocess.run([EXE, "resolve-unknown", "--data-dir", str(tmp_path), "r2", "--resubmit"],
                              capture_output=True, text=True)  # fmt: skip
    assert resubmit.returncode == 0 and store.get("r2").status == "pending"  # type: ignore[union-attr]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_one_bar_updated_in_place_with_each_message_once() -> None:
    screen = _Terminal()
    progress = Progress(total=4, enabled=True, stream=screen)
    for done in (0, 1, 2, 4):
        progress.update(done)
        logging.getLogger("seedance_pipeline.test").warning("SANDBOX: novita has no API key")
    progress.close()
    text = screen.getvalue()
    assert text.count("SANDBOX: novita has no API key") == 1
    assert "\r" in text and "4/4" in text  # redrawn in place, not one line per update
    assert text.count("\n") <= 3  # the message, and the finished bar


def test_progress_without_a_terminal_is_plain_periodic_lines(tmp_path: Path, make_image: ImageFactory,
                                                             emulator: EmulatorServer) -> None:  # fmt: skip
    catalog = write_catalog(tmp_path, make_image)
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SEEDANCE_") and not k.endswith("_API_KEY")
    }
    result = subprocess.run([EXE, "run", "--catalog", str(catalog), "--data-dir", str(tmp_path / "data")],
                            env=clean | {"SEEDANCE_SANDBOX_URL": emulator.url}, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "\r" not in result.stderr and lines, result.stderr
    assert lines[-1] == lines[-1].strip() and lines[-1].startswith("requests done: 6/6 after ")
    assert all(lines.count(line) == 1 for line in lines)  # nothing said twice
    assert not any(" - dagster - " in line for line in lines)  # no run or tick log interleaved
