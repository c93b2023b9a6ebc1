"""A small catalog, a data directory and Dagster definitions pointed at the test's emulator; every
pipeline test runs on both state-store backends. The tests that look at a real `dagster dev` share
one per backend (`finished_dagster_dev`), run first and one after another: they are the longest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.emulator import EmulatorServer
from seedance_pipeline.resources import PipelineResources
from seedance_pipeline_tests.conftest import ImageFactory, image_factory, pipeline_resources
from seedance_pipeline_tests.pipeline.dagster_dev import FinishedPipeline, SharedDagsterDev

SHARED_DEV = pytest.StashKey[SharedDagsterDev]()


@dataclass
class Pipeline:
    resources: PipelineResources
    defs: dg.Definitions
    instance: dg.DagsterInstance
    emulator: EmulatorServer
    catalog: Path

    def run(self, job: str, partition_key: str | None = None) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance,
            partition_key=partition_key,
            resources=self.resources.by_key(),
        )

    def sensor(self, name: str = "task_sensor") -> dg.SensorResult | dg.SkipReason:
        context = dg.build_sensor_context(instance=self.instance, resources=self.resources.by_key(),
                                          definitions=self.defs)  # fmt: skip
        return self.defs.resolve_sensor_def(name)(context)  # type: ignore[no-any-return]


def write_catalog(tmp_path: Path, make_image: ImageFactory) -> Path:
    make_image(1280, 720, "JPEG", name="wide.jpg")
    make_image(720, 1280, "PNG", name="tall.png")
    make_image(800, 800, "WEBP", name="square.webp")
    make_image(120, 120, "PNG", name="tiny.png")
    rows = [
        {"image": "wide.jpg", "prompt": "waves", "batch": "alpha", "provider": "novita", "seed": 1},
        {"image": "tall.png", "prompt": "trees", "batch": "alpha", "provider": "modelark"},
        {"image": "square.webp", "prompt": "city", "batch": "alpha", "provider": "segmind"},
        {
            "image": "wide.jpg",
            "prompt": "waves",
            "batch": "alpha",
            "provider": "novita",
            "seed": 1,
        },  # duplicate
        {"image": "square.webp", "prompt": "rain", "batch": "beta", "provider": "aimlapi"},
        {"image": "tall.png", "prompt": "fog", "batch": "beta", "provider": "myrouter"},
        {"image": "tiny.png", "prompt": "too small", "batch": "beta", "provider": "novita"},
    ]
    path = tmp_path / "catalog.csv"
    pd.DataFrame(rows).assign(resolution="480p").to_csv(path, index=False)
    return path


@pytest.fixture(autouse=True)
def state_backend(
    state_url: str, monkeypatch: pytest.MonkeyPatch, pipeline_environment: None
) -> str:
    """SQLite in the data directory (the default), or PostgreSQL through SEEDANCE_STATE_URL, as a
    deployment sets it (runs, sensors and the commands the tests start all read it)."""
    if not state_url.startswith("sqlite"):
        monkeypatch.setenv("SEEDANCE_STATE_URL", state_url)
    return state_url


@pytest.fixture
def pipeline(tmp_path: Path, emulator: EmulatorServer, make_image: ImageFactory) -> Pipeline:
    catalog = write_catalog(tmp_path, make_image)
    resources = pipeline_resources(data_dir=str(tmp_path / "data"), catalog=str(catalog),
                                   sandbox_url=emulator.url, poll_time_box_s=10)  # fmt: skip
    return Pipeline(
        resources, build_definitions(resources), dg.DagsterInstance.ephemeral(), emulator, catalog
    )


def backend_of(item: pytest.Item) -> str | None:
    """The state backend of a test that uses the shared `dagster dev`, else None."""
    if "finished_dagster_dev" not in getattr(item, "fixturenames", ()):
        return None
    callspec = getattr(item, "callspec", None)
    return str(callspec.params["state_url"]) if callspec else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The shared `dagster dev` tests first, SQLite's before PostgreSQL's: the longest work starts
    at once on its (xdist) worker, and each backend's instance can stop when its tests are done."""
    order = {"sqlite": 0, "postgresql": 1}
    items.sort(key=lambda item: order.get(backend_of(item) or "", 2))


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop each shared `dagster dev` as soon as this worker's next test does not use it."""
    shared = item.config.stash.get(SHARED_DEV, None)
    if shared is not None and backend_of(item) is not None:
        shared.release(keep=backend_of(nextitem) if nextitem is not None else None)


@pytest.fixture(scope="session")
def shared_dagster_dev(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedDagsterDev]:
    """This worker's shared `dagster dev` runs, known to the teardown hook through the stash."""

    def write_shared_catalog(folder: Path) -> Path:
        return write_catalog(folder, image_factory(folder))

    shared = SharedDagsterDev(tmp_path_factory.mktemp, write_shared_catalog)
    request.config.stash[SHARED_DEV] = shared
    try:
        yield shared
    finally:
        shared.release()
        del request.config.stash[SHARED_DEV]


@pytest.fixture
def finished_dagster_dev(
    shared_dagster_dev: SharedDagsterDev, request: pytest.FixtureRequest
) -> FinishedPipeline:
    """The real `dagster dev` of this test's state backend, after its daemon has run the pipeline
    over `write_catalog` to a complete ledger; shared by the tests of that backend."""
    backend = backend_of(request.node)
    assert backend is not None, "finished_dagster_dev needs the state_url parameter"
    return shared_dagster_dev.finished(backend, lambda: request.getfixturevalue("postgres"))
