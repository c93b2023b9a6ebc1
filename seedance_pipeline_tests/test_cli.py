"""`seedance-pipeline emulator` as a user starts it, probed like `curl` would; `bench` found in the
source checkout, or refused in one line without one."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import seedance_pipeline
from seedance_pipeline.cli import main
from seedance_pipeline.providers import provider_names
from seedance_pipeline_tests.conftest import ImageFactory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_emulator_command_serves_every_provider_on_loopback(make_image: ImageFactory) -> None:
    port = free_port()
    exe = Path(sys.executable).with_name("seedance-pipeline")
    proc = subprocess.Popen(
        [str(exe), "emulator", "--port", str(port), "--queued-s", "0.1", "--running-s", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "loopback only" in banner and "SANDBOX" in banner
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(f"{base}/_emulator/health")
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        image = "data:image/png;base64," + base64.b64encode(make_image().read_bytes()).decode()
        auth = {"Authorization": "Bearer k"}
        calls = {
            "novita": (f"{base}/novita/v3/async/seedance-v1-lite-i2v", {"image": image, "resolution": "480p"},
                       lambda j: (f"{base}/novita/v3/async/task-result", {"task_id": j["task_id"]}),
                       lambda j: j["task"]["status"] == "TASK_STATUS_SUCCEED"),
            "myrouter": (f"{base}/myrouter/v3/async/seedance-v1-lite-i2v", {"image": image, "resolution": "480p"},
                         lambda j: (f"{base}/myrouter/v3/async/task-result", {"task_id": j["task_id"]}),
                         lambda j: j["task"]["status"] == "TASK_STATUS_SUCCEED"),
            "aimlapi": (f"{base}/aimlapi/v2/generate/video/bytedance/generation",
                        {"model": "bytedance/seedance-1-0-lite-i2v", "image_url": image, "prompt": "p", "resolution": "480p"},
                        lambda j: (f"{base}/aimlapi/v2/generate/video/bytedance/generation", {"generation_id": j["id"]}),
                        lambda j: j["status"] == "completed"),
            "modelark": (f"{base}/modelark/contents/generations/tasks",
                         {"model": "seedance-1-0-lite-i2v-250428",
                          "content": [{"type": "text", "text": "p --rs 480p"},
                                      {"type": "image_url", "image_url": {"url": image}}]},
                         lambda j: (f"{base}/modelark/contents/generations/tasks/{j['id']}", {}),
                         lambda j: j["status"] == "succeeded"),
        }  # fmt: skip
        assert sorted([*calls, "segmind"]) == sorted(provider_names())  # segmind: below
        for name, (submit_url, body, status_of, done) in calls.items():
            created = httpx.post(submit_url, json=body, headers=auth)
            assert created.status_code == 200, (name, created.text)
            status_url, params = status_of(created.json())
            for _ in range(100):
                answer = httpx.get(status_url, params=params, headers=auth)
                assert answer.status_code == 200
                if done(answer.json()):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"{name} never finished")
        segmind = httpx.post(
            f"{base}/segmind/v1/seedance-v1-lite-image-to-video",
            headers={"x-api-key": "k"},
            json={"first_frame_url": image, "prompt": "p", "duration": 5, "resolution": "480p"},
            timeout=30,
        )
        assert segmind.status_code == 200 and segmind.content[4:8] == b"ftyp"
        assert len(httpx.get(f"{base}/_emulator/audit").json()) == len(provider_names())
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_emulator_command_refuses_a_public_address() -> None:
    exe = Path(sys.executable).with_name("seedance-pipeline")
    result = subprocess.run(
        [str(exe), "emulator", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "only listens on loopback" in result.stderr


def test_bench_is_loaded_from_the_source_checkout() -> None:
    exe = Path(sys.executable).with_name("seedance-pipeline")
    result = subprocess.run(
        [str(exe), "bench", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "is the pipeline ever the bottleneck?" in result.stdout
    assert all(option in result.stdout for option in ("--scale", "--repeats", "--only", "--smoke"))


def test_bench_without_a_source_checkout_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    installed = tmp_path / "site-packages" / "seedance_pipeline" / "__init__.py"
    monkeypatch.setattr(seedance_pipeline, "__file__", str(installed))
    assert main(["bench", "--smoke"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no benchmarks/" in error and "pip install -e ." in error
