"""The code location loads the way `dagster dev` loads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg

from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.resources import SeedanceResource

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
    defs = build_definitions(SeedanceResource(data_dir=str(tmp_path)))
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
