"""The real `dagster dev` (webserver and daemon) for end-to-end tests: started on a free loopback
port with its own DAGSTER_HOME and data directory, driven through its GraphQL API, and waited on
until the daemon's sensors have written a complete ledger. `SharedDagsterDev` runs the pipeline
once per state backend for every test that looks at the result: a start and a run through the
daemon's sensor intervals cost minutes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from seedance_pipeline.cli import prepare_dagster_home
from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer
from seedance_pipeline.settings import _STORES, PipelineSettings
from seedance_pipeline.state.lifecycle import OPEN
from seedance_pipeline.state.schema import default_state_url
from seedance_pipeline_tests.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))
# Novita's real key in the shared run: its rows go to the emulator as to the real provider, and the
# tests look for the key everywhere it must not be.
SECRET = "sk-live-e2e-NEVER-LOGGED-7777"
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    answer = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    answer.raise_for_status()
    return answer.json()  # type: ignore[no-any-return]


@dataclass
class DagsterDev:
    url: str
    proc: subprocess.Popen[Any]
    env: dict[str, str]
    home: Path
    data: Path
    log: Path

    def launch(self, job: str) -> str:
        """Launch `job` of the code location, as the UI's launchpad would; returns the run id."""
        params = {"selector": {"repositoryLocationName": "seedance_pipeline", "repositoryName": "__repository__",
                               "jobName": job}, "runConfigData": {}}  # fmt: skip
        launched = graphql(self.url, LAUNCH, {"params": params})["data"]["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return str(launched["run"]["runId"])

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def wait_for_ledger(self, batches: list[str], timeout_s: float = 300) -> pd.DataFrame:
        """Until no request is open and each of `batches` has a ledger partition with none open
        either (a ledger can be written before its batch finishes); returns the whole ledger."""
        state_url = self.env.get("SEEDANCE_STATE_URL") or default_state_url(self.data)
        store = PipelineSettings(data_dir=str(self.data), state_url=state_url).store()
        expected = sorted(f"batch={b}" for b in batches)
        deadline = time.monotonic() + timeout_s
        while True:
            records = store.records()  # on SQLite in the data dir, or on PostgreSQL
            ledger_files = sorted(
                p.parent.name for p in (self.data / "ledger").glob("batch=*/part-0.parquet")
            )
            settled = records and not any(r.status in OPEN for r in records)
            if settled and ledger_files == expected:
                ledger = pd.read_parquet(self.data / "ledger")
                if not ledger["status"].isin(OPEN).any():
                    return ledger
            assert self.proc.poll() is None, f"dagster dev stopped:\n{self.log_tail()}"
            assert time.monotonic() < deadline, (
                f"not complete: {[r.status for r in records]} {ledger_files}"
            )
            time.sleep(0.5)


@contextmanager
def dagster_dev(
    tmp_path: Path, catalog: Path, emulator: EmulatorServer, env: dict[str, str] | None = None
) -> Iterator[DagsterDev]:
    """`dagster dev` from the repo root (its `workspace.yaml`) with a fresh DAGSTER_HOME (the shipped
    `dagster.yaml`, as `seedance-pipeline dev` makes it) and data
    directory under `tmp_path`, providers without a key in `emulator`, no real key inherited, and
    `env` on top (SQLite in the data directory unless it sets SEEDANCE_STATE_URL); yields once
    GraphQL answers, and stops the whole process group afterwards."""
    home, data = (
        prepare_dagster_home(tmp_path / "dagster_home"),
        tmp_path / "data",
    )  # shipped limits
    port = free_port()
    full_env = {k: v for k, v in os.environ.items()
                if not k.endswith("_API_KEY") and k != "SEEDANCE_STATE_URL"}  # fmt: skip
    full_env |= {"DAGSTER_HOME": str(home), "SEEDANCE_DATA_DIR": str(data), "SEEDANCE_CATALOG": str(catalog),
                 "SEEDANCE_SANDBOX_URL": emulator.url, **(env or {})}  # fmt: skip
    log_path = tmp_path / "dagster_dev.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                                cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        dev = DagsterDev(f"http://127.0.0.1:{port}", proc, full_env, home, data, log_path)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, dev.log_tail()
                try:
                    if graphql(dev.url, "{ version }").get("data"):
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "dagster dev did not come up"
                time.sleep(0.5)
            yield dev
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def dispose_store(url: str) -> None:
    """Close the test process's pooled connections to a database about to be dropped."""
    store = _STORES.pop(url, None)
    if store is not None:
        store.engine.dispose()


@dataclass
class FinishedPipeline:
    """A `dagster dev` whose daemon has run the pipeline over `write_catalog`'s two batches to a
    complete ledger, with Novita's rows sent under the real key `SECRET`."""

    dev: DagsterDev
    emulator: EmulatorServer  # this run's own: its audit holds this run's tasks only
    ledger: pd.DataFrame


class SharedDagsterDev:
    """One `FinishedPipeline` per state backend, started on first use and stopped by `release` or
    at the end of the session. A start that failed is not tried again: its error is repeated."""

    def __init__(
        self, folders: Callable[[str], Path], write_catalog: Callable[[Path], Path]
    ) -> None:
        self._folders, self._write_catalog = folders, write_catalog
        self._runs: dict[str, tuple[ExitStack, FinishedPipeline]] = {}
        self._failed: dict[str, str] = {}

    def finished(self, backend: str, postgres: Callable[[], PostgresServer]) -> FinishedPipeline:
        if backend in self._failed:
            raise AssertionError(
                f"the shared dagster dev ({backend}) failed earlier: {self._failed[backend]}"
            )
        if backend not in self._runs:
            stack = ExitStack()
            try:
                self._runs[backend] = (stack, self._start(backend, postgres, stack))
            except BaseException as exc:
                self._failed[backend] = f"{type(exc).__name__}: {exc}"
                stack.close()
                raise
        return self._runs[backend][1]

    def _start(
        self, backend: str, postgres: Callable[[], PostgresServer], stack: ExitStack
    ) -> FinishedPipeline:
        folder = self._folders(f"dagster_dev_{backend}")
        emulator = stack.enter_context(EmulatorServer(EmulatorConfig(queued_s=0.1, running_s=0.3)))
        env = {"NOVITA_API_KEY": SECRET, "NOVITA_BASE_URL": emulator.base_url("novita")}
        if backend == "postgresql":
            server = postgres()
            url = server.url(stack.enter_context(server.database()))
            stack.callback(dispose_store, url)
            env["SEEDANCE_STATE_URL"] = url
        dev = stack.enter_context(dagster_dev(folder, self._write_catalog(folder), emulator, env))
        dev.launch("catalog_job")
        return FinishedPipeline(dev, emulator, dev.wait_for_ledger(["alpha", "beta"]))

    def release(self, keep: str | None = None) -> None:
        """Stop every started `dagster dev` but `keep`'s: an idle daemon still ticks its sensors."""
        for backend in [b for b in self._runs if b != keep]:
            self._runs.pop(backend)[0].close()
