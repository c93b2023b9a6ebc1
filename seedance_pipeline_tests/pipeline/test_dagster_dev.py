"""End to end: the real `dagster dev` (webserver and daemon) on loopback, the pipeline launched
through the GraphQL API, the daemon's sensors doing the rest, until the ledger is complete (the
shared run of `finished_dagster_dev`, which the UI test looks at too)."""

from __future__ import annotations

import hashlib
import subprocess
import time

import pytest

from seedance_pipeline_tests.pipeline.dagster_dev import (
    DAGSTER,
    REPO,
    SECRET,
    FinishedPipeline,
    graphql,
)

# One after another on one xdist worker: each `dagster dev` starts several processes, and the UI
# test shares the SQLite one.
pytestmark = pytest.mark.xdist_group("dagster_dev")


@pytest.mark.timeout(420)
def test_dagster_dev_runs_the_pipeline_to_a_complete_ledger(finished_dagster_dev: FinishedPipeline,
                                                            state_backend: str,
                                                            request: pytest.FixtureRequest) -> None:  # fmt: skip
    secrets = [SECRET]
    if not state_backend.startswith("sqlite"):  # SEEDANCE_STATE_URL's password: look for it too
        secrets.append(request.getfixturevalue("postgres").password_marker)
    dev, emulator = finished_dagster_dev.dev, finished_dagster_dev.emulator
    url, env, home, data = dev.url, dev.env, dev.home, dev.data
    ledger = dev.wait_for_ledger(["alpha", "beta"])
    assert len(ledger) == 6
    # The ledger runs the sensor launched also drew each batch's report.
    deadline = time.monotonic() + 120
    while sorted(p.parent.name for p in (data / "reports").glob("batch=*/contact_sheet.png")) != [
        "batch=alpha",
        "batch=beta",
    ]:
        assert time.monotonic() < deadline, "the ledger runs drew no batch reports"
        time.sleep(0.5)
    assert len(emulator.state.audit()) == 5
    assert dict(ledger["status"].value_counts()) == {"succeeded": 5, "rejected": 1}
    runs = graphql(url, "{ runsOrError { ... on Runs { results { jobName status } } } }")
    jobs = {r["jobName"] for r in runs["data"]["runsOrError"]["results"]}
    assert {"catalog_job", "submit_batch_job", "ledger_job"} <= jobs

    # A backfill over every batch from the `dagster` CLI runs, and resubmits nothing.
    backfill = subprocess.run(
        [DAGSTER, "job", "backfill", "-w", "workspace.yaml", "-j", "submit_batch_job",
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
        time.sleep(0.5)
    assert results[0]["numPartitions"] == 2 and results[0]["status"] != "COMPLETED_FAILED"
    query = "{ runsOrError { ... on Runs { results { jobName status tags { key value } } } } }"
    deadline = time.monotonic() + 180
    while True:
        runs = graphql(url, query)["data"]["runsOrError"]["results"]
        backfilled = [r for r in runs if any(t["key"] == "dagster/backfill" for t in r["tags"])]
        if len(backfilled) == 2 and {r["status"] for r in backfilled} <= {"SUCCESS", "FAILURE"}:
            break
        assert time.monotonic() < deadline, f"backfill runs not finished: {backfilled}"
        time.sleep(0.5)
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
        assert secret not in dev.log.read_text()


LAUNCHPAD = """{ runConfigSchemaOrError(selector: {repositoryLocationName: "seedance_pipeline",
  repositoryName: "__repository__", pipelineName: "submit_batch_job"}) { ... on RunConfigSchema {
  rootConfigType { key } allConfigTypes { key ... on CompositeConfigType {
  fields { name description configTypeKey } } } } } }"""


@pytest.mark.timeout(420)
def test_the_ui_launchpad_of_submit_batch_job_offers_only_its_own_described_settings(
    finished_dagster_dev: FinishedPipeline,
) -> None:
    schema = graphql(finished_dagster_dev.dev.url, LAUNCHPAD)["data"]["runConfigSchemaOrError"]
    types = {
        t["key"]: {f["name"]: f for f in t.get("fields") or []} for t in schema["allConfigTypes"]
    }
    resources = types[types[schema["rootConfigType"]["key"]]["resources"]["configTypeKey"]]
    offered = {key: types[types[field["configTypeKey"]]["config"]["configTypeKey"]]
               for key, field in resources.items() if key != "io_manager"}  # fmt: skip
    assert set(offered) == {"seedance", "seedance_budget", "seedance_submission"}
    names = {name for fields in offered.values() for name in fields}
    assert {"daily_budget_usd", "submission_stay_s"} <= names
    assert not names & {"catalog", "default_provider", "max_failure_share"}
    assert all(f["description"] for fields in offered.values() for f in fields.values())
