"""Sensor ticks say what they did: counts in the task sensor's skip reasons, batches or the reason
to skip in the catalog sensor's. Through the Dagster definitions, against the emulator over HTTP."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd

from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer
from seedance_pipeline.resources import SeedanceResource
from seedance_pipeline_tests.conftest import ImageFactory
from seedance_pipeline_tests.pipeline.conftest import Pipeline
from seedance_pipeline_tests.pipeline.test_assets_and_sensors import drive


def test_the_task_sensor_launches_each_ledger_once_then_says_it_has_nothing_to_do(
    pipeline: Pipeline,
) -> None:
    pipeline.run("catalog_job")
    drive(pipeline)
    sensor = pipeline.defs.resolve_sensor_def("task_sensor")
    context = dg.build_sensor_context(instance=pipeline.instance, resources={"seedance": pipeline.resource})  # fmt: skip
    first = sensor(
        context
    )  # no cursor yet: every finished batch's ledger is asked for (by run key)
    assert isinstance(first, dg.SensorResult)
    assert sorted(r.partition_key or "" for r in first.run_requests or []) == ["alpha", "beta"]
    context = dg.build_sensor_context(instance=pipeline.instance, cursor=first.cursor,
                                      resources={"seedance": pipeline.resource})  # fmt: skip
    second = sensor(context)
    assert isinstance(second, dg.SkipReason)
    message = second.skip_message or ""
    assert (
        message.startswith("polled 0, finished 0") and "submitted 0 since the last check" in message
    )
    assert "nothing to launch" in message and "next check in 15 s" in message


def test_the_task_sensor_skip_reason_counts_what_it_polled_and_what_went_out(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    make_image(1280, 720, "JPEG", name="wide.jpg")
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame(
        [{"image": "wide.jpg", "prompt": p, "batch": "slow", "provider": v, "resolution": "480p"}
         for p, v in (("waves", "novita"), ("rain", "aimlapi"), ("fog", "myrouter"))]
    ).to_csv(catalog, index=False)  # fmt: skip
    # Tasks that take a minute: the tick below sees them all in flight.
    with EmulatorServer(EmulatorConfig(queued_s=0.1, running_s=60)) as emulator:
        resource = SeedanceResource(data_dir=str(tmp_path / "data"), catalog=str(catalog),
                                    sandbox_url=emulator.url, poll_time_box_s=10)  # fmt: skip
        p = Pipeline(resource, build_definitions(resource), dg.DagsterInstance.ephemeral(),
                     emulator, catalog)  # fmt: skip
        p.run("catalog_job")
        p.run("submit_batch_job", "slow")
        result = p.sensor()
        assert isinstance(result, dg.SkipReason)
        message = result.skip_message or ""
        assert message.startswith("polled 3, finished 0")
        assert "submitted 3 since the last check" in message and "open batches: 1" in message
        assert "nothing to launch; next check in 15 s" in message


def test_the_catalog_sensor_names_the_batches_or_says_why_it_skipped(pipeline: Pipeline) -> None:
    sensor = pipeline.defs.resolve_sensor_def("catalog_sensor")
    first = sensor(dg.build_sensor_context(instance=pipeline.instance,
                                           resources={"seedance": pipeline.resource}))  # fmt: skip
    assert isinstance(first, dg.SensorResult) and len(first.run_requests or []) == 1
    pipeline.run("catalog_job")
    unchanged = sensor(dg.build_sensor_context(instance=pipeline.instance, cursor=first.cursor,
                                               resources={"seedance": pipeline.resource}))  # fmt: skip
    assert isinstance(unchanged, dg.SkipReason)
    assert "catalog unchanged" in (unchanged.skip_message or "")
    assert "2 batches registered: alpha, beta" in (unchanged.skip_message or "")

    pipeline.catalog.write_text("picture,prompt\nwide.jpg,waves\n")
    broken = sensor(dg.build_sensor_context(instance=pipeline.instance, cursor=first.cursor,
                                            resources={"seedance": pipeline.resource}))  # fmt: skip
    assert isinstance(broken, dg.SkipReason)
    assert "cannot be read" in (broken.skip_message or "")
    assert "'image' is missing" in (broken.skip_message or "")

    pipeline.catalog.unlink()
    missing = sensor(dg.build_sensor_context(instance=pipeline.instance, cursor=first.cursor,
                                             resources={"seedance": pipeline.resource}))  # fmt: skip
    assert isinstance(missing, dg.SkipReason) and "no catalog at" in (missing.skip_message or "")
