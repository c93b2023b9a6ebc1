"""`deploy/dagster.yaml`, the README's deployment example, is a real Dagster instance configuration:
Dagster's own loader accepts it, its run launcher section fits K8sRunLauncher's schema, and an
instance started from it stores runs, partitions and pool limits in PostgreSQL while the pipeline's
state store sits in another database of the same server."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher

from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.emulator import EmulatorServer
from seedance_pipeline.polling.poll import poll_once
from seedance_pipeline.providers import provider_names
from seedance_pipeline.submission.assets import submission_assets
from seedance_pipeline_tests.conftest import ImageFactory, pipeline_resources
from seedance_pipeline_tests.pipeline.conftest import write_catalog
from seedance_pipeline_tests.postgres import PostgresServer

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


@pytest.fixture
def dagster_home(
    tmp_path: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A DAGSTER_HOME holding the example unchanged, its environment variables pointing at a fresh
    database of the test server."""
    with postgres.database() as database:
        u = postgres.admin_url
        env = {"DAGSTER_PG_HOST": u.host, "DAGSTER_PG_PORT": str(u.port), "DAGSTER_PG_DB": database,
               "DAGSTER_PG_USER": u.username, "DAGSTER_PG_PASSWORD": postgres.password,
               "DAGSTER_K8S_NAMESPACE": "seedance", "SEEDANCE_IMAGE": "registry.example/seedance:1"}  # fmt: skip
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(EXAMPLE, home / "dagster.yaml")
        yield home


def test_dagster_accepts_the_example_and_its_run_launcher_config_fits_k8s(
    dagster_home: Path,
) -> None:
    config, _ = dagster_instance_config(str(dagster_home))  # Dagster's schema check, or it raises
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s.launcher", "K8sRunLauncher")
    checked = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert checked.success, checked.errors
    assert checked.value["job_namespace"] == "seedance"  # read from the environment


def test_the_example_pools_are_the_pools_of_the_code() -> None:
    raw = EXAMPLE.read_text()
    pools = {asset.op.pool for asset in submission_assets(poll_once)}
    assert pools == {f"seedance_{provider}" for provider in provider_names()}
    assert all(provider in raw for provider in provider_names())  # the comment names them all
    assert "pools" in yaml.safe_load(raw)["concurrency"]


def test_an_instance_started_from_the_example_keeps_its_storage_in_postgres(
    dagster_home: Path, postgres: PostgresServer, postgres_url: str, tmp_path: Path,
    make_image: ImageFactory, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("SEEDANCE_STATE_URL", postgres_url)  # the state store: another database
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = instance.get_concurrency_config()
        assert limits.pool_config.default_pool_limit == 1
        assert limits.run_queue_config is not None
        assert limits.run_queue_config.max_concurrent_runs == 20
        # a pool set apart, as the README says, is stored for every machine to see
        instance.event_log_storage.set_concurrency_slots("seedance_segmind", 2)

        resources = pipeline_resources(data_dir=str(tmp_path / "data"), sandbox_url=emulator.url,
                                       catalog=str(write_catalog(tmp_path, make_image)))  # fmt: skip
        result = (
            build_definitions(resources)
            .resolve_job_def("catalog_job")
            .execute_in_process(instance=instance, resources=resources.by_key())
        )
        assert result.success
        run_id = result.run_id

    # Another process (another machine) opening the same configuration sees it all.
    with dg.DagsterInstance.from_config(str(dagster_home)) as other:
        run = other.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert other.get_dynamic_partitions("batches") == ["alpha", "beta"]
        assert other.event_log_storage.get_concurrency_info("seedance_segmind").slot_count == 2
    assert resources.settings().store().counts()["pending"] == 5  # the state store, on PostgreSQL
