"""One meaning per setting in every entry point: the Dagster resource, the headless command and
the command line all go through `settings.settings_from`. -1 or an empty value is "no cap"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from seedance_pipeline.resources import BudgetResource, PipelineResources, SeedanceResource
from seedance_pipeline.settings import PipelineSettings, settings_from
from seedance_pipeline_tests.conftest import ImageFactory

DEFAULT_CAP = PipelineSettings().daily_budget_usd


@pytest.mark.parametrize(
    ("env", "given", "cap"),
    [
        ({}, None, DEFAULT_CAP),
        ({"SEEDANCE_DAILY_BUDGET_USD": "-1"}, None, None),
        ({"SEEDANCE_DAILY_BUDGET_USD": ""}, None, None),
        ({"SEEDANCE_DAILY_BUDGET_USD": " 3.5 "}, None, 3.5),
        ({"SEEDANCE_DAILY_BUDGET_USD": "0"}, None, 0.0),
        ({"SEEDANCE_DAILY_BUDGET_USD": "5"}, -1.0, None),  # given wins over the environment
        ({"SEEDANCE_DAILY_BUDGET_USD": "-1"}, 2.0, 2.0),
    ],
)
def test_a_cap_means_the_same_from_the_environment_and_when_given(
    env: dict[str, str], given: float | None, cap: float | None
) -> None:
    assert settings_from(env, daily_budget_usd=given).daily_budget_usd == cap


@pytest.mark.parametrize("raw", ["-2", "lots", "nan"])
def test_a_cap_that_cannot_be_meant_is_refused_naming_its_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="SEEDANCE_BATCH_BUDGET_USD"):
        settings_from({"SEEDANCE_BATCH_BUDGET_USD": raw})


def test_every_setting_with_a_variable_is_read_from_it_and_given_values_win(tmp_path: Path) -> None:
    env = {"SEEDANCE_DATA_DIR": str(tmp_path), "SEEDANCE_CATALOG": "s3://b/catalog.csv",
           "SEEDANCE_STALE_SUBMISSION_S": "60", "SEEDANCE_SANDBOX_URL": "http://127.0.0.1:1",
           "SEEDANCE_RUN_BUDGET_USD": "1", "SEEDANCE_LEDGER_URL": ""}  # fmt: skip
    settings = settings_from(env)
    assert (settings.data_dir, settings.catalog, settings.stale_submission_s) == (
        str(tmp_path), "s3://b/catalog.csv", 60.0)  # fmt: skip
    assert settings.sandbox_url == "http://127.0.0.1:1" and settings.run_budget_usd == 1.0
    assert settings.ledger == str(tmp_path / "ledger")  # empty: unset
    assert settings_from(env, data_dir="elsewhere").data_dir == "elsewhere"
    with pytest.raises(TypeError, match="not a setting"):
        settings_from(env, daily_budget=1)


def test_the_dagster_resource_reads_the_environment_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEEDANCE_DAILY_BUDGET_USD", "-1")
    assert PipelineResources().settings().daily_budget_usd is None
    assert SeedanceResource().settings(BudgetResource(daily_budget_usd=4)).daily_budget_usd == 4.0
    monkeypatch.setenv("SEEDANCE_DAILY_BUDGET_USD", "")
    assert PipelineResources().settings().daily_budget_usd is None
    monkeypatch.delenv("SEEDANCE_DAILY_BUDGET_USD")
    assert PipelineResources().settings().daily_budget_usd == DEFAULT_CAP


def _headless(tmp_path: Path, make_image: ImageFactory, env: dict[str, str], *flags: str) -> str:
    """`seedance-pipeline run` on a one-row catalog that validation rejects (fast, no provider),
    returning the summary, whose `budget:` line shows the daily cap in force."""
    make_image(120, 120, "PNG", name="tiny.png")
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame([{"image": "tiny.png", "prompt": "too small"}]).to_csv(catalog, index=False)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SEEDANCE_")}
    exe = str(Path(sys.executable).with_name("seedance-pipeline"))
    result = subprocess.run(
        [exe, "run", "--catalog", str(catalog), "--data-dir", str(tmp_path / "data"),
         "--no-progress", *flags],
        env=clean | env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "rejected   1" in result.stdout
    return result.stdout


@pytest.mark.parametrize(
    ("env", "flags", "budget_line"),
    [
        ({}, (), f"of ${DEFAULT_CAP:.2f}"),
        ({"SEEDANCE_DAILY_BUDGET_USD": "-1"}, (), None),
        ({"SEEDANCE_DAILY_BUDGET_USD": ""}, (), None),
        ({"SEEDANCE_DAILY_BUDGET_USD": "0.1"}, ("--daily-budget-usd", "-1"), None),
        ({"SEEDANCE_DAILY_BUDGET_USD": "-1"}, ("--daily-budget-usd", "3"), "of $3.00"),
    ],
)
def test_the_command_line_and_headless_run_take_caps_with_the_same_meaning(
    tmp_path: Path, make_image: ImageFactory, env: dict[str, str], flags: tuple[str, ...],
    budget_line: str | None,
) -> None:  # fmt: skip
    summary = _headless(tmp_path, make_image, env, *flags)
    budget = [line for line in summary.splitlines() if line.startswith("budget:")]
    if budget_line is None:
        assert not budget, summary
    else:
        assert budget and budget_line in budget[0], summary


def test_settings_never_show_the_state_store_password() -> None:
    settings = settings_from({"SEEDANCE_STATE_URL": "postgresql+psycopg://u:hunter2-secret@h/db"})
    assert settings.state_url is not None and "hunter2-secret" in settings.state_url
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in str(settings)
