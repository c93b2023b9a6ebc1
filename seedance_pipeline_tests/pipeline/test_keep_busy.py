"""A submission step keeps its provider busy: it stays, follows its own tasks and submits as they
free slots, each pass an observation on the batch's partition; and it ends when it can do nothing
more. Through the Dagster definitions, against the emulator over HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline_tests.conftest import ImageFactory, pipeline_resources
from seedance_pipeline_tests.pipeline.conftest import Pipeline

# AI/ML API: 10 tasks in flight (facts.toml), which the emulator holds it to as well.
LIMIT = 10
ASSET = dg.AssetKey("aimlapi_submissions")


def catalog(folder: Path, make_image: ImageFactory, rows: dict[str, int]) -> Path:
    make_image(1280, 720, "JPEG", name="wide.jpg")
    path = folder / "catalog.csv"
    pd.DataFrame(
        [{"image": "wide.jpg", "prompt": f"waves of {batch}", "batch": batch, "provider": "aimlapi",
          "resolution": "480p", "seed": seed}
         for batch, count in rows.items() for seed in range(count)]
    ).to_csv(path, index=False)  # fmt: skip
    return path


@contextmanager
def pipeline_with(
    tmp_path: Path,
    make_image: ImageFactory,
    rows: dict[str, int],
    running_s: float,
    **fields: Any,
) -> Iterator[Pipeline]:
    with EmulatorServer(EmulatorConfig(queued_s=0, running_s=running_s)) as emulator:
        path = catalog(tmp_path, make_image, rows)
        resources = pipeline_resources(data_dir=str(tmp_path / "data"), catalog=str(path),
                                       sandbox_url=emulator.url, poll_time_box_s=10, **fields)  # fmt: skip
        p = Pipeline(resources, build_definitions(resources), dg.DagsterInstance.ephemeral(),
                     emulator, path)  # fmt: skip
        p.run("catalog_job")
        yield p


def materialization(p: Pipeline, batch: str) -> dict[str, object]:
    event = p.instance.get_latest_materialization_event(ASSET)
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.partition == batch
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_one_submission_run_submits_as_its_own_tasks_free_slots_and_records_each_wave(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    with pipeline_with(tmp_path, make_image, {"waves": 25}, running_s=1.0) as p:
        p.run("submit_batch_job", "waves")  # no sensor tick in between

        store = p.resources.settings().store()
        assert {r.status for r in store.records(batch="waves")} == {RequestStatus.SUCCEEDED}
        audit = sorted(p.emulator.state.audit("aimlapi"), key=lambda r: r.created_at)
        assert len(audit) == 25  # each request once
        # Three waves of at most 10: the later ones went out as the first tasks finished.
        first = audit[0].created_at
        assert sum(r.created_at < first + 1.0 for r in audit) == LIMIT
        assert audit[-1].created_at >= first + 2.0

        observations = [
            r.asset_observation
            for r in p.instance.fetch_observations(ASSET, limit=100, ascending=True).records
        ]
        waves = [o for o in observations if o is not None and o.partition == "waves"]
        assert len(waves) == len(observations) >= 3
        submitted = [int(o.metadata["submitted"].value) for o in waves]  # type: ignore[arg-type]
        assert sum(submitted) == 25 and max(submitted) <= LIMIT
        assert int(waves[-1].metadata["pending"].value) == 0  # type: ignore[arg-type]
        done = materialization(p, "waves")
        assert done["submitted_now"] == 25 and done["waves"] == len(waves)
        assert done["ended"] == "nothing pending or in flight"


def test_a_submission_run_ends_at_once_when_other_batches_hold_every_slot(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    rows = {"first": LIMIT, "second": 3}
    with pipeline_with(tmp_path, make_image, rows, running_s=120, submission_stay_s=0) as p:
        p.run("submit_batch_job", "first")  # one pass: ten tasks of two minutes in flight
        staying = pipeline_resources(p.resources, submission_stay_s=600)
        started = time.monotonic()
        p.defs.resolve_job_def("submit_batch_job").execute_in_process(
            instance=p.instance, partition_key="second", resources=staying.by_key()
        )
        assert time.monotonic() - started < 30  # not the stay of ten minutes
        done = materialization(p, "second")
        assert done["submitted_now"] == 0 and done["pending"] == 3
        assert "3 pending wait (aimlapi has 10 tasks in flight" in str(done["ended"])
        assert len(p.emulator.state.audit()) == LIMIT


def test_a_submission_run_stays_no_longer_than_submission_stay_s(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    with pipeline_with(tmp_path, make_image, {"slow": 3}, running_s=120, submission_stay_s=3) as p:
        started = time.monotonic()
        p.run("submit_batch_job", "slow")
        assert time.monotonic() - started < 30
        done = materialization(p, "slow")
        assert done["submitted_now"] == 3 and done["in_flight"] == 3
        assert done["ended"] == "stayed 3 s (submission_stay_s)"


def test_the_task_sensor_launches_only_the_steps_of_providers_with_pending_requests(
    pipeline: Pipeline,
) -> None:
    pipeline.run("catalog_job")
    result = pipeline.sensor()
    assert isinstance(result, dg.SensorResult)
    selections = {
        r.partition_key: sorted(k.to_user_string() for k in r.asset_selection or [])
        for r in result.run_requests or []
        if r.job_name == "submit_batch_job"
    }
    assert selections == {
        "alpha": ["modelark_submissions", "novita_submissions", "segmind_submissions"],
        "beta": ["aimlapi_submissions", "myrouter_submissions"],  # its novita row is rejected
    }
