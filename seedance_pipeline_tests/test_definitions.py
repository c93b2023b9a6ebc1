"""The code location loads the way `dagster dev` loads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from seedance_pipeline.definitions import build_definitions, defs
from seedance_pipeline.resources import PipelineResources, SeedanceResource

ROOT = Path(__file__).resolve().parents[1]


def test_dagster_definitions_validate_passes_from_the_repo_root() -> None:
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_definition_explains_itself_and_assets_carry_kinds_and_code_references(
    tmp_path: Path,
) -> None:
    defs = build_definitions(PipelineResources(SeedanceResource(data_dir=str(tmp_path))))
    missing: list[str] = []
    specs = defs.resolve_all_asset_specs()
    assert {s.key.to_user_string() for s in specs} >= {
        "image_catalog",
        "batch_ledger",
        "batch_report",
    }
    for spec in specs:
        name = spec.key.to_user_string()
        if not (spec.description or "").strip():
            missing.append(f"asset {name}: description")
        if not spec.kinds:
            missing.append(f"asset {name}: kinds")
        if not spec.tags:
            missing.append(f"asset {name}: tags")
        references = spec.metadata.get("dagster/code_references")
        if (
            not isinstance(references, dg.CodeReferencesMetadataValue)
            or not references.code_references
        ):
            missing.append(f"asset {name}: code references")
        else:
            for reference in references.code_references:
                assert isinstance(reference, dg.LocalFileCodeReference)
                assert Path(reference.file_path).is_file() and (reference.line_number or 0) > 0
    graph = defs.resolve_asset_graph()
    assert graph.asset_check_keys
    missing += [f"check {k.name}" for k in graph.asset_check_keys
                if not (graph.get_check_spec(k).description or "").strip()]  # fmt: skip
    jobs = [j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")]
    automation = [*jobs, *(defs.sensors or []), *(defs.schedules or [])]
    assert {d.name for d in automation} >= {"catalog_job", "ledger_job", "task_sensor",
                                            "daily_outstanding_batches"}  # fmt: skip
    missing += [f"{type(d).__name__} {d.name}" for d in automation
                if not (d.description or "").strip()]  # fmt: skip
    assert not missing, missing


LOCATION = [
    "data_dir",
    "state_url",
    "videos_url",
    "ledger_url",
    "sandbox_url",
    "stale_submission_s",
]
CATALOG = ["catalog", "default_provider", "default_model", "default_batch", "default_resolution",
           "default_duration"]  # fmt: skip
BUDGET = ["daily_budget_usd", "batch_budget_usd", "run_budget_usd"]
SUBMISSION = ["submission_stay_s", "poll_time_box_s", "run_label"]


@pytest.mark.parametrize(
    ("job", "offered"),
    [
        ("catalog_job", {"seedance": LOCATION, "seedance_catalog": CATALOG}),
        (
            "submit_batch_job",
            {"seedance": LOCATION, "seedance_budget": BUDGET, "seedance_submission": SUBMISSION},
        ),
        ("ledger_job", {"seedance": LOCATION, "seedance_ledger": ["max_failure_share"]}),
        ("retry_job", {"seedance": LOCATION, "seedance_budget": BUDGET}),
        ("set_budget_job", {"seedance": LOCATION}),
    ],
)
def test_each_jobs_launchpad_offers_only_the_settings_it_reads_each_described(
    job: str, offered: dict[str, list[str]]
) -> None:
    schema = defs.resolve_job_def(job).run_config_schema.config_type
    resources = schema.fields["resources"].config_type.fields
    ours = {key: field for key, field in resources.items() if key != "io_manager"}
    assert set(ours) == set(offered)
    described: dict[str, str] = {}
    for key, field in ours.items():
        settings = field.config_type.fields["config"].config_type.fields
        assert list(settings) == offered[key]
        described |= {f"{key}.{name}": settings[name].description or "" for name in settings}
    ops = schema.fields["ops"].config_type.fields
    for op, field in ops.items():
        config = field.config_type.fields.get("config")  # asset steps take none: Any
        for name, f in getattr(config.config_type, "fields", {}).items() if config else ():
            described[f"{op}.{name}"] = f.description or ""
    assert described and all(text.strip() for text in described.values()), described
