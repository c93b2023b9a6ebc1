"""End to end: the real `dagster dev` (webserver and daemon) on loopback, the pipeline launched
through the GraphQL API, the daemon's sensors doing the rest, until the ledger is complete."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from seedance_pipeline.emulator import EmulatorServer
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.store import OPEN
from seedance_pipeline_tests.conftest import ImageFactory
from seedance_pipeline_tests.pipeline.conftest import write_catalog

REPO = Path(__file__).resolve().parents[2]
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


@pytest.mark.timeout(420)
def test_dagster_dev_runs_the_pipeline_to_a_complete_ledger(tmp_path: Path, make_image: ImageFactory,
                                                            emulator: EmulatorServer, state_backend: str,
                                                            request: pytest.FixtureRequest) -> None:  # fmt: skip
    secrets = [SECRET]
    if not state_backend.startswith("sqlite"):  # SEEDANCE_STATE_URL's password: look for it too
        secrets.append(request.getfixturevalue("postgres").password_marker)
    catalog = write_catalog(tmp_path, make_image)
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {"DAGSTER_HOME": str(home), "SEEDANCE_DATA_DIR": str(data), "SEEDANCE_CATALOG": str(catalog),
            "SEEDANCE_SANDBOX_URL": emulator.url, "NOVITA_API_KEY": SECRET,
            "NOVITA_BASE_URL": emulator.base_url("novita")}  # fmt: skip
    log = (tmp_path / "dagster_dev.log").open("w")
    dagster = str(Path(sys.executable).with_name("dagster"))
    proc = subprocess.Popen([dagster, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "dagster_dev.log").read_text()[-3000:]
            try:
                if graphql(url, "{ version }").get("data"):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "dagster dev did not come up"
            time.sleep(1)

        params = {"selector": {"repositoryLocationName": "seedance_pipeline", "repositoryName": "__repository__",
                               "jobName": "catalog_job"}, "runConfigData": {}}  # fmt: skip
        launched = graphql(url, LAUNCH, {"params": params})["data"]["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched

        store = PipelineSettings(data_dir=str(data)).store()
        deadline = time.monotonic() + 300
        while True:
            records = store.records()  # on SQLite in the data dir, or on PostgreSQL
            ledger_files = sorted(
                p.parent.name for p in (data / "ledger").glob("batch=*/part-0.parquet")
            )
            settled = records and not any(r.status in OPEN for r in records)
            if settled and ledger_files == ["batch=alpha", "batch=beta"]:
                ledger = pd.read_parquet(data / "ledger")
                if len(ledger) == 6 and set(ledger["status"]) == {"succeeded", "rejected"}:
                    break
            assert proc.poll() is None, "dagster dev stopped"
            assert time.monotonic() < deadline, (
                f"not complete: {[r.status for r in records]} {ledger_files}"
            )
            time.sleep(2)
        assert len(emulator.state.audit()) == 5
        assert dict(ledger["status"].value_counts()) == {"succeeded": 5, "rejected": 1}
        runs = graphql(url, "{ runsOrError { ... on Runs { results { jobName status } } } }")
        jobs = {r["jobName"] for r in runs["data"]["runsOrError"]["results"]}
        assert {"catalog_job", "submit_batch_job", "ledger_job"} <= jobs

        # A backfill over every batch from the `dagster` CLI runs, and resubmits nothing.
        backfill = subprocess.run(
            [dagster, "job", "backfill", "-w", "workspace.yaml", "-j", "submit_batch_job",
             "--partitions", "alpha,beta", "--noprompt"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert backfill.returncode == 0, backfill.stdout + backfill.stderr
        query = "{ partitionBackfillsOrError { ... on PartitionBackfills { results { status numPartitions } } } }"
        deadline = time.monotonic() + 180
        while True:
            results = graphql(url, query)["data"]["partitionBackfillsOrError"]["results"]
            if results and results[0]["status"].startswith("COMPLETED"):
                break
            assert time.monotonic() < deadline, f"backfill not done: {results}"
            time.sleep(2)
        assert results[0]["numPartitions"] == 2 and results[0]["status"] != "COMPLETED_FAILED"
        query = "{ runsOrError { ... on Runs { results { jobName status tags { key value } } } } }"
        deadline = time.monotonic() + 180
        while True:
            runs = graphql(url, query)["data"]["runsOrError"]["results"]
            backfilled = [r for r in runs if any(t["key"] == "dagster/backfill" for t in r["tags"])]
            if len(backfilled) == 2 and {r["status"] for r in backfilled} <= {"SUCCESS", "FAILURE"}:
                break
            assert time.monotonic() < deadline, f"backfill runs not finished: {backfilled}"
            time.sleep(2)
        assert {r["status"] for r in backfilled} == {"SUCCESS"}
        assert len(emulator.state.audit()) == 5  # the backfill's runs submitted nothing twice

        # The real key went to its provider only, and is nowhere in Dagster's storage or our data.
        assert {r.key_fingerprint for r in emulator.state.audit("novita")} == {
            hashlib.sha256(SECRET.encode()).hexdigest()[:12]}  # fmt: skip
        assert not any(d["sent_credentials"] for d in emulator.state.video_downloads)
        for secret in secrets:
            for folder in (home, data):
                for path in folder.rglob("*"):
                    if path.is_file() and path.suffix != ".mp4":
                        assert secret.encode() not in path.read_bytes(), path
            assert secret not in (tmp_path / "dagster_dev.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
