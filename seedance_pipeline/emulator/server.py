"""Serving the emulator: in a background thread on a free loopback port (tests, and the pipeline's
zero-configuration sandbox), or in the foreground from `seedance-pipeline emulator`."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path

import uvicorn

from seedance_pipeline.emulator.app import build_app
from seedance_pipeline.emulator.state import EmulatorConfig, EmulatorState
from seedance_pipeline.providers.facts import load_facts

log = logging.getLogger(__name__)


class _HideEmulatedDrops(logging.Filter):
    """uvicorn logs an error when a handler hangs up mid-answer; for the emulator that is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


def check_loopback(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"the emulator only listens on loopback (127.0.0.1, ::1, localhost), not {host!r}"
        )


def _uvicorn_config(state: EmulatorState, log_level: str) -> uvicorn.Config:
    logging.getLogger("uvicorn.error").addFilter(_HideEmulatedDrops())
    return uvicorn.Config(
        build_app(state),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        backlog=4096,
    )


class EmulatorServer:
    """The emulator in a daemon thread. Use as a context manager, or `start()` / `stop()`."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
    ) -> None:
        check_loopback(host)
        self.state = EmulatorState(config)
        self._socket = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
        )
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = host, self._socket.getsockname()[1]
        self._server = uvicorn.Server(_uvicorn_config(self.state, log_level))
        self._thread = threading.Thread(
            target=self._run, name=f"seedance-emulator-{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def base_url(self, provider: str) -> str:
        """The base URL to give a provider's adapter (`<PREFIX>_BASE_URL`)."""
        return f"{self.url}/{provider}"

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self) -> EmulatorServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.01)
        return self

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str,
    port: int,
    config: EmulatorConfig | None = None,
    port_file: str | None = None,
    idle_exit_s: float | None = None,
) -> None:
    """Run in the foreground until interrupted (or, with `idle_exit_s`, until no call came for that
    long). Port 0 picks a free port; `port_file` receives `{"url", "pid"}` once listening."""
    check_loopback(host)
    server = EmulatorServer(config, host=host, port=port, log_level="info")
    print(
        f"seedance emulator (SANDBOX: no real provider is called) listening on {server.url} — loopback only",
        flush=True,
    )
    for name in load_facts().providers:
        print(f"  {name:9s} base URL {server.base_url(name)}", flush=True)
    server.start()
    if port_file:
        Path(port_file).write_text(json.dumps({"url": server.url, "pid": os.getpid()}))
    try:
        while server.is_alive():
            if idle_exit_s is not None and time.time() - server.state.last_call_at > idle_exit_s:
                print(f"no call for {idle_exit_s:.0f} s: exiting", flush=True)
                break
            time.sleep(1)
    finally:
        server.stop()
