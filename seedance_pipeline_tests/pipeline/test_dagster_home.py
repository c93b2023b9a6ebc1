"""The local Dagster home of `seedance-pipeline dev`: the shipped `dagster.yaml` gives one machine
its pool limits and run queue, and a home that persists keeps runs, partitions and run keys, so a
restarted `dagster dev` does not write a current ledger again."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from seedance_pipeline.cli import INSTANCE_CONFIG, main
from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.polling.poll import poll_once
from seedance_pipeline.providers import provider_names
from seedance_pipeline.submission.assets import submission_assets
from seedance_pipeline_tests.pipeline.conftest import Pipeline
from seedance_pipeline_tests.pipeline.test_assets_and_sensors import drive

RUN_KEY = "dagster/run_key"


def test_dev_makes_a_home_whose_instance_applies_the_pool_and_run_queue_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    assert main(["dev", "--home", str(home), "--prepare-only"]) == 0
    assert f"DAGSTER_HOME={home}" in capsys.readouterr().out
    dagster_instance_config(str(home))  # Dagster's own schema check, or it raises
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = instance.get_concurrency_config()
        assert limits.pool_config.default_pool_limit == 1
        assert limits.run_queue_config is not None
        assert limits.run_queue_config.max_concurrent_runs == 3
        per_batch = [t for t in limits.run_queue_config.tag_concurrency_limits
                     if t["key"] == "dagster/partition"]  # fmt: skip
        assert per_batch and per_batch[0]["limit"] == 1
        assert Path(instance.root_directory) == home.resolve()  # history lives in the home


def test_the_shipped_pools_are_the_pools_of_the_code() -> None:
    raw = INSTANCE_CONFIG.read_text()
    assert {asset.op.pool for asset in submission_assets(poll_once)} == {
        f"seedance_{provider}" for provider in provider_names()
    }
    assert all(provider in raw for provider in provider_names())  # the comment names them all
    assert yaml.safe_load(raw)["concurrency"]["pools"]["default_limit"] == 1


def test_dev_keeps_a_dagster_yaml_already_in_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("concurrency:\n  runs:\n    max_concurrent_runs: 7\n")
    assert main(["dev", "--home", str(home), "--prepare-only"]) == 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 7


def test_a_restart_keeps_the_runs_and_a_current_ledger_is_not_launched_again(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    main(["dev", "--home", str(home), "--prepare-only"])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        p = Pipeline(
            pipeline.resources, pipeline.defs, instance, pipeline.emulator, pipeline.catalog
        )
        p.run("catalog_job")
        drive(p)
        first = p.sensor()  # what the daemon would launch: each finished batch's ledger, by run key
        assert isinstance(first, dg.SensorResult)
        for request in first.run_requests or []:
            assert request.job_name == "ledger_job" and request.run_key
            build_definitions(p.resources).resolve_job_def("ledger_job").execute_in_process(
                instance=instance, partition_key=request.partition_key,
                resources=p.resources.by_key(), tags={RUN_KEY: request.run_key},
            )  # fmt: skip
        asked = {r.run_key for r in first.run_requests or []}
        assert len(asked) == 2

    # `dagster dev` restarted on the same home: the runs are there, and even with its cursor lost
    # the sensor asks only for run keys already used, which the daemon does not launch again.
    with dg.DagsterInstance.from_config(str(home)) as restarted:
        kept = {r.tags.get(RUN_KEY) for r in restarted.get_runs()}
        assert asked <= kept
        assert sorted(restarted.get_dynamic_partitions("batches")) == ["alpha", "beta"]
        p = Pipeline(
            pipeline.resources, pipeline.defs, restarted, pipeline.emulator, pipeline.catalog
        )
        again = p.sensor()
        assert isinstance(again, dg.SensorResult)
        assert {r.run_key for r in again.run_requests or []} <= kept
