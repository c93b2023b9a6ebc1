"""Seen as a person sees it: the Dagster UI of a real `dagster dev` that has run the pipeline (the
run `test_dagster_dev` checks, shared through `finished_dagster_dev`), opened in headless Chromium. Screenshots go to `SEEDANCE_TEST_ARTIFACTS` (a pytest temporary folder when
unset), and one more on failure, with the `dagster dev` log beside it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from seedance_pipeline.definitions import defs
from seedance_pipeline_tests.pipeline.dagster_dev import FinishedPipeline, graphql

CHROMIUM = Path(os.environ.get("SEEDANCE_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags, Chromium's own calls home are refused by the closed
# network of CI machines and slow every page down; a small /dev/shm in containers crashes it.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]  # fmt: skip
# Tall enough that the graph's own zoom-to-fit shows every node at a readable size.
VIEWPORT = {"width": 1920, "height": 1300}  # wide enough for full asset names at the fitted zoom
# A loaded machine (2 cores shared by several test runs) renders slowly; waits are generous.
UI_TIMEOUT_MS = 90_000

# What a person looks for on a finished batch's ledger materialisation. The report link joins
# this list when `batch_report` lands.
LEDGER_METADATA = ["path", "rows", "by_status", "cost_usd", "cost_usd_estimated", "sandbox_rows",
                   "SANDBOX", "providers", "failures_by_kind", "batch_report"]  # fmt: skip
BATCH = "beta"  # of `write_catalog`: two videos made, one image refused
# The run of the latest materialisation, which the UI must be showing.
LATEST_LEDGER = """
query Latest($partitions: [String!]) {
  assetOrError(assetKey: {path: ["batch_ledger"]}) {
    ... on Asset { assetMaterializations(partitions: $partitions, limit: 1) { runId } }
  }
}"""


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def missing(reason: str) -> None:
    """In CI a missing browser is a broken setup, not a reason to skip."""
    if running_in_ci():
        pytest.fail(f"{reason} (CI=true: .ci/run installs it)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("SEEDANCE_TEST_ARTIFACTS")
    path = Path(folder).resolve() if folder else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def page() -> Iterator[Any]:
    """A page of headless Debian Chromium, driven by Playwright (whose own browser download does
    not work on a closed network), with a fresh profile."""
    if not CHROMIUM.exists():
        missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set SEEDANCE_CHROMIUM)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        missing("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def metadata_value(page: Any, label: str) -> str:
    """The value cell beside `label` in the materialisation's metadata table."""
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=label, exact=True))
    return str(row.get_by_role("cell").nth(1).inner_text()).strip()


@pytest.mark.timeout(600)
# What the UI shows does not depend on the state store: one backend is enough (a dagster dev run
# costs minutes).
@pytest.mark.parametrize("state_url", ["sqlite"], indirect=True)
@pytest.mark.xdist_group("dagster_dev")  # on the worker of test_dagster_dev, whose run it shares
def test_the_ui_shows_every_asset_and_a_finished_batchs_ledger_metadata(
    finished_dagster_dev: FinishedPipeline, page: Any, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    asset_names = sorted(key.to_user_string() for key in defs.resolve_all_asset_keys())
    dev = finished_dagster_dev.dev
    try:
        # What clicking "Skip" on the community pop-up (shown on localhost only) records.
        graphql(dev.url, "mutation { setNuxSeen }")

        # The global lineage graph: a node per asset, every one inside the window, each
        # with its live state loaded.
        page.set_viewport_size({"width": 1920, "height": 2100})  # the unfolded groups, all in view
        page.goto(f"{dev.url}/asset-groups")
        nodes = page.locator("foreignObject")  # the graph's nodes, not the sidebar's list
        # Assets are in groups that follow the flow; the graph shows them folded: unfold them all
        # (the UI's "Expand all groups", ⌥E).
        for group in ("catalog", "submission", "ledger", "reports"):
            expect(nodes.get_by_text(group, exact=True).first).to_be_visible()
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("Alt+KeyE")
        expect(nodes.get_by_text("batch_report", exact=True)).to_be_visible()
        page.reload()  # the unfolded groups are remembered; a fresh page fits the graph in view
        for name in asset_names:
            expect(nodes.get_by_text(name, exact=True)).to_be_in_viewport()
        expect(nodes.get_by_text("Loading...")).to_have_count(0)
        ledger_node = nodes.filter(has=page.get_by_text("batch_ledger", exact=True))
        expect(ledger_node.get_by_text("100% filled")).to_be_visible()
        page.screenshot(path=artifacts / "ui_asset_graph.png")
        page.set_viewport_size({"width": 1920, "height": 1300})

        # The ledger asset's page for the finished batch: its latest materialisation and
        # what its metadata says, against the ledger file itself.
        latest = graphql(dev.url, LATEST_LEDGER, {"partitions": [BATCH]})
        run_id = latest["data"]["assetOrError"]["assetMaterializations"][0]["runId"]
        page.goto(f"{dev.url}/assets/batch_ledger?view=partitions&partition={BATCH}")
        expect(page.get_by_text("Latest materialization")).to_be_visible()
        expect(page.get_by_text(run_id[:8], exact=True)).to_be_visible()
        for label in LEDGER_METADATA:
            expect(page.get_by_role("cell", name=label, exact=True)).to_be_visible()
            assert metadata_value(page, label), f"{label} is shown without a value"
        page.screenshot(path=artifacts / "ui_batch_ledger.png")

        path = dev.data / "ledger" / f"batch={BATCH}" / "part-0.parquet"
        assert metadata_value(page, "path") == str(path)
        written = pd.read_parquet(path)
        assert int(metadata_value(page, "rows")) == len(written) == 3
        assert json.loads(metadata_value(page, "by_status")) == dict(
            written["status"].value_counts()
        ) == {"succeeded": 2, "rejected": 1}  # fmt: skip
        # shown to the hundredth of a cent, e.g. 0.1739; the ledger keeps full precision
        assert metadata_value(page, "cost_usd") == str(
            round(written["cost_usd"].fillna(0).sum(), 4)
        )
        assert float(metadata_value(page, "cost_usd")) > 0
        sheet = dev.data / "reports" / f"batch={BATCH}" / "contact_sheet.png"
        assert metadata_value(page, "batch_report") == str(sheet)
        # The link is written with the ledger; the report is drawn later in the same run.
        deadline = time.monotonic() + 120
        while not sheet.is_file():
            assert time.monotonic() < deadline, f"no batch report at {sheet}"
            time.sleep(1)
    except BaseException:
        shutil.copy(dev.log, artifacts / "ui_dagster_dev.log")
        with contextlib.suppress(Exception):  # a dead browser must not hide the failure
            page.screenshot(path=artifacts / "ui_failure.png")
        raise
