"""What a data team expects of a Dagster code location: asset groups that follow the flow and an
owner; runs tagged with batch, providers and trigger whoever launched them; submission assets
materialised only where a provider has work; log lines that say what a run did; the contact sheet
at full size one click away. Through the Dagster definitions, against the emulator."""

from __future__ import annotations

import base64
import io
import re

import dagster as dg
from PIL import Image

from seedance_pipeline.jobs import LEDGER_ASSET, OWNERS, SUBMISSION_ASSETS
from seedance_pipeline_tests.pipeline.conftest import Pipeline
from seedance_pipeline_tests.pipeline.test_assets_and_sensors import drive

GROUPS = {"image_catalog": "catalog", "rejected_rows": "catalog", "batch_ledger": "ledger",
          "batch_report": "reports", **{name: "submission" for name in SUBMISSION_ASSETS}}  # fmt: skip


def test_asset_groups_follow_the_flow_and_every_asset_has_an_owner(pipeline: Pipeline) -> None:
    specs = {s.key.to_user_string(): s for s in pipeline.defs.resolve_all_asset_specs()}
    assert {name: spec.group_name for name, spec in specs.items()} == GROUPS
    assert all(list(spec.owners) == OWNERS for spec in specs.values())


def test_runs_are_tagged_with_batch_providers_and_trigger(pipeline: Pipeline) -> None:
    pipeline.run("catalog_job")
    tick = pipeline.sensor()
    assert isinstance(tick, dg.SensorResult)
    for request in tick.run_requests or []:
        assert request.tags["seedance/trigger"] == "sensor"
        assert request.tags["seedance/batch"] == request.partition_key

    manual = pipeline.run("submit_batch_job", "alpha")  # from the launchpad: no tags given
    tags = pipeline.instance.get_run_by_id(manual.run_id).tags  # type: ignore[union-attr]
    assert tags["seedance/trigger"] == "manual" and tags["seedance/batch"] == "alpha"
    assert tags["seedance/providers"] == "modelark,novita,segmind"  # alpha's providers

    backfill = pipeline.defs.resolve_job_def("submit_batch_job").execute_in_process(
        instance=pipeline.instance, partition_key="beta", resources=pipeline.resources.by_key(),
        tags={"dagster/backfill": "abcdefgh"},
    )  # fmt: skip
    tags = pipeline.instance.get_run_by_id(backfill.run_id).tags  # type: ignore[union-attr]
    assert (
        tags["seedance/trigger"] == "backfill"
        and tags["seedance/providers"] == "aimlapi,myrouter,novita"
    )


def test_submission_assets_are_materialised_only_for_providers_with_requests(
    pipeline: Pipeline,
) -> None:
    pipeline.run("catalog_job")
    result = pipeline.run("submit_batch_job", "alpha")
    materialised = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()
                    for m in [m.event_specific_data.materialization]}  # type: ignore[union-attr]  # fmt: skip
    assert materialised == {"novita_submissions", "modelark_submissions", "segmind_submissions"}
    logs = [r.user_message for r in pipeline.instance.all_logs(result.run_id)]
    assert "alpha has no aimlapi requests: nothing to submit, not materialised" in logs
    assert any(re.match(r"novita in alpha: submitted 1, .* of 1$", m) for m in logs), logs

    # The ledger still follows (its own run), and a run that writes the ledger too is not skipped.
    drive(pipeline)
    assert pipeline.run("ledger_job", "alpha").success
    everything = dg.materialize(
        list(pipeline.defs.assets or []),  # type: ignore[arg-type]
        selection=[*SUBMISSION_ASSETS, LEDGER_ASSET], partition_key="beta",
        instance=pipeline.instance, resources=pipeline.resources.by_key(),
    )  # fmt: skip
    done = {m.asset_key.to_user_string() for m in everything.get_asset_materialization_events()
            for m in [m.event_specific_data.materialization]}  # type: ignore[union-attr]  # fmt: skip
    assert LEDGER_ASSET in done and set(SUBMISSION_ASSETS) <= done


def test_the_ledger_and_report_runs_say_what_they_did_and_show_the_sheet_at_full_size(
    pipeline: Pipeline,
) -> None:
    pipeline.run("catalog_job")
    drive(pipeline)
    result = pipeline.run("ledger_job", "alpha")
    logs = [r.user_message for r in pipeline.instance.all_logs(result.run_id)]
    assert any(
        re.match(r"wrote 3 rows of alpha to .*\(succeeded 3\); cost \$\d+\.\d{4}$", m) for m in logs
    ), logs
    assert any(m.startswith("contact sheet of alpha: 3 tiles (3 videos) at ") for m in logs), logs

    meta = result.asset_materializations_for_node("batch_report")[0].metadata
    full = str(meta["contact_sheet_full_size"].value)
    encoded = re.fullmatch(r"!\[[^]]*\]\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)", full)
    assert encoded is not None, full[:200]
    shown = Image.open(io.BytesIO(base64.b64decode(encoded.group(1))))
    sheet = Image.open(str(meta["contact_sheet"].value))
    assert shown.size == sheet.size  # every pixel of the sheet, not the shrunk preview
