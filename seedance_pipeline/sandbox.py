"""The zero-configuration sandbox: providers without an API key are served by the local emulator.

Dagster runs each run in its own process and polls from the daemon, and provider tasks outlive runs,
so the sandbox emulator must outlive them too: it is started once per data directory as a small
background process on a free loopback port (recorded in `<data_dir>/sandbox/emulator.json`), shared
by every run, sensor and headless command, and it exits by itself after an hour without calls.
`SEEDANCE_SANDBOX_URL` (or the `sandbox_url` setting) points at an emulator you run yourself.
"""

from __future__ import annotations

import fcntl
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

IDLE_EXIT_S = 3600


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_emulator/health", timeout=2).json().get("sandbox") is True
    except (httpx.HTTPError, ValueError):
        return False


def ensure_sandbox(data_dir: str | Path, queued_s: float = 1.0, running_s: float = 4.0) -> str:
    """The URL of this data directory's sandbox emulator, starting it if it is not running."""
    folder = Path(data_dir).resolve() / "sandbox"
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / "emulator.json"
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter at a time, across processes
        if info.exists():
            url = json.loads(info.read_text())["url"]
            if _healthy(url):
                return str(url)
        info.unlink(missing_ok=True)
        command = [
            sys.executable, "-m", "seedance_pipeline.cli", "emulator", "--port", "0",
            "--port-file", str(info), "--idle-exit-s", str(IDLE_EXIT_S),
            "--queued-s", str(queued_s), "--running-s", str(running_s),
        ]  # fmt: skip
        with (folder / "emulator.log").open("ab") as out:
            subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if info.exists():
                url = json.loads(info.read_text())["url"]
                if _healthy(url):
                    log.warning(
                        "SANDBOX: started the local provider emulator at %s (no API key set)", url
                    )
                    return str(url)
            time.sleep(0.1)
    raise RuntimeError(f"the sandbox emulator did not start; see {folder / 'emulator.log'}")
