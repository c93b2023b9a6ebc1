"""A data team's retry, seen and done in the Dagster UI of a real `dagster dev`, in headless Chromium:
a task fails at the provider (the emulator's fault injection, through its admin API), the batch's
`no_failed_rows` check warns with the row in the `failures` table, a retry is launched from
`retry_job`'s launchpad, and the row succeeds with `attempts` = 2, still one ledger row. The
screenshots are the README's pictures (docs/ui_retry_*.png)."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer
from seedance_pipeline_tests.conftest import image_factory
from seedance_pipeline_tests.pipeline.dagster_dev import dagster_dev
from seedance_pipeline_tests.pipeline.test_ui_browser import artifacts, page  # noqa: F401

BATCH = "alpha"
RETRY_CONFIG = "ops: {retry_failed_requests: {config: {batch: alpha, statuses: [failed, expired]}}}"


def write_catalog(folder: Path) -> Path:
    make_image = image_factory(folder)
    make_image(1280, 720, "JPEG", name="wide.jpg")
    make_image(720, 1280, "PNG", name="tall.png")
    rows = [{"image": "wide.jpg", "prompt": "waves", "batch": BATCH, "provider": "novita", "seed": 1},
            {"image": "tall.png", "prompt": "trees", "batch": BATCH, "provider": "modelark", "seed": 2}]  # fmt: skip
    path = folder / "catalog.csv"
    pd.DataFrame(rows).assign(resolution="480p").to_csv(path, index=False)
    return path


def wait_for_row(data: Path, done: Any, timeout_s: float = 300) -> pd.DataFrame:
    """The batch's ledger once `done(ledger)` holds."""
    path = data / "ledger" / f"batch={BATCH}" / "part-0.parquet"
    deadline = time.monotonic() + timeout_s
    while True:
        if path.is_file():
            with contextlib.suppress(Exception):  # a partition being replaced
                ledger = pd.read_parquet(path)
                if done(ledger):
                    return ledger
        assert time.monotonic() < deadline, f"the ledger never got there: {path}"
        time.sleep(1)


def skip_community_modal(ui: Any) -> None:
    """Dagster's "join the community" pop-up (localhost only) covers the page until skipped."""
    with contextlib.suppress(Exception):
        ui.get_by_role("button", name="Skip").click(timeout=5_000)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)  # the UI does not depend on it
@pytest.mark.xdist_group("dagster_dev")
def test_a_failed_row_is_seen_in_the_ui_retried_from_the_launchpad_and_succeeds_once(
    tmp_path: Path,
    page: Any,  # noqa: F811
    artifacts: Path,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    with EmulatorServer(EmulatorConfig(queued_s=0.1, running_s=0.3)) as emulator:
        faults = f"{emulator.url}/_emulator/faults/novita"
        httpx.put(faults, json={"fail_rate": 1.0}, timeout=10).raise_for_status()
        # One failed row of two is a warning under a failure share of 0.5 (above it: an error).
        env = {"SEEDANCE_MAX_FAILURE_SHARE": "0.5"}
        with dagster_dev(tmp_path, write_catalog(tmp_path), emulator, env) as dev:
            try:
                dev.launch("catalog_job")
                failed = wait_for_row(
                    dev.data, lambda t: set(t["status"]) == {"failed", "succeeded"}
                )
                wide = failed.set_index("image_id").loc["wide"]
                assert (wide["status"], wide["attempts"]) == ("failed", 1)

                # The check warns, and the failure table names the row, its kind and message.
                page.goto(f"{dev.url}/assets/batch_ledger?view=partitions&partition={BATCH}")
                skip_community_modal(page)
                expect(page.get_by_text("Latest materialization")).to_be_visible()

                def cell(text: str) -> Any:
                    return page.get_by_role("cell", name=text, exact=True)

                # The innermost row of the `failures` table (it sits inside the metadata table).
                row = (page.get_by_role("row").filter(has=cell("wide")).filter(has=cell("novita"))
                       .filter(has=cell("task_failed")).last)  # fmt: skip
                expect(row).to_be_visible()
                expect(row).to_contain_text("the generation failed")
                row.scroll_into_view_if_needed()
                page.screenshot(path=artifacts / "ui_retry_failure_table.png")

                page.goto(f"{dev.url}/assets/batch_ledger?view=checks")
                skip_community_modal(page)
                page.get_by_text("no_failed_rows", exact=True).first.click()
                expect(page.get_by_text("Latest execution")).to_be_visible()
                # A WARN-severity failure: the warning icon, not the red error one.
                result = page.get_by_text("Evaluation result").locator("..")
                expect(result.get_by_role("img", name="warning")).to_be_visible()
                page.screenshot(path=artifacts / "ui_retry_check_warns.png")

                # The provider works again; a retry is launched from retry_job's launchpad.
                httpx.delete(faults, timeout=10).raise_for_status()
                tasks_before = len(emulator.state.audit("novita"))
                page.goto(f"{dev.url}/locations/seedance_pipeline/jobs/retry_job/playground")
                skip_community_modal(page)
                editor = page.locator(".CodeMirror").first
                editor.click()
                page.keyboard.press("Control+A")
                page.keyboard.press("Delete")
                page.keyboard.insert_text(RETRY_CONFIG)
                launch = page.get_by_role("button", name="Launch Run")
                expect(launch).to_be_enabled()
                page.screenshot(path=artifacts / "ui_retry_launch.png")
                launch.click()

                done = wait_for_row(
                    dev.data,
                    lambda t: set(t["status"]) == {"succeeded"} and t["attempts"].max() == 2,
                )
                assert len(done) == 2 and done["request_id"].is_unique  # one row per request
                wide = done.set_index("image_id").loc["wide"]
                assert (wide["status"], wide["attempts"]) == ("succeeded", 2)
                assert wide["total_cost_usd"] == wide["cost_usd"] > 0
                assert len(emulator.state.audit("novita")) == tasks_before + 1
                assert done.set_index("image_id").loc["tall", "attempts"] == 1

                page.goto(f"{dev.url}/assets/batch_ledger?view=partitions&partition={BATCH}")
                skip_community_modal(page)
                expect(page.get_by_text("No failed rows.")).to_be_visible()
                retried = page.get_by_role("row").filter(
                    has=page.get_by_role("cell", name="retried_rows", exact=True)
                )
                expect(retried.get_by_role("cell").nth(1)).to_have_text("1")
                page.screenshot(path=artifacts / "ui_retry_succeeded.png")
            except BaseException:
                shutil.copy(dev.log, artifacts / "ui_retry_dagster_dev.log")
                with contextlib.suppress(Exception):
                    page.screenshot(path=artifacts / "ui_retry_failure.png")
                raise
