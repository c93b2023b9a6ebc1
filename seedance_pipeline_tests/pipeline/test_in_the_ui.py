"""What a person sees of a batch in the Dagster UI: the ledger's metadata and the batch report.
Through the Dagster definitions, against the emulator over HTTP."""

from __future__ import annotations

from pathlib import Path

import av
import dagster as dg
import numpy as np
import pandas as pd
from PIL import Image

from seedance_pipeline.emulator import Faults
from seedance_pipeline.reports.contact_sheet import (
    BOX,
    GAP,
    HEADER_H,
    PAD,
    TILE_H,
    TILE_W,
    placeholder_colour,
    status_colour,
)
from seedance_pipeline_tests.pipeline.conftest import Pipeline
from seedance_pipeline_tests.pipeline.test_assets_and_sensors import drive


def frame_centre(uri: str, which: int) -> np.ndarray:
    """Mean colour of the central 8×8 pixels of a video's first (0) or last (-1) frame."""
    with av.open(uri) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    frame = frames[which]
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    return frame[h - 4 : h + 4, w - 4 : w + 4].reshape(-1, 3).mean(axis=0)


def box_centre(sheet: np.ndarray, tile: int, which: int) -> np.ndarray:
    """Mean colour of the central 8×8 pixels of a tile's first (0) or second (1) frame box (tiles
    in one line, as in a sheet of fewer than eight rows)."""
    x = tile * TILE_W + PAD + which * (BOX + GAP) + BOX // 2
    y = HEADER_H + PAD + BOX // 2
    return sheet[y - 4 : y + 4, x - 4 : x + 4].reshape(-1, 3).mean(axis=0)


def test_ledger_metadata_and_batch_report_show_the_batch(pipeline: Pipeline) -> None:
    pipeline.emulator.state.set_faults("novita", Faults(fail_rate=1.0))  # alpha's novita row fails
    pipeline.run("catalog_job")
    launched = drive(pipeline)
    assert "ledger_job:alpha" in launched and "ledger_job:beta" in launched
    reports = Path(pipeline.resources.settings().reports_url)
    # The runs the task sensor launched for the ledger drew the report too.
    for batch in ("alpha", "beta"):
        assert (reports / f"batch={batch}" / "contact_sheet.png").is_file()
        assert (reports / f"batch={batch}" / "chart.png").is_file()

    result = pipeline.run("ledger_job", "alpha")
    ledger = pd.read_parquet(
        f"{pipeline.resources.seedance.data_dir}/ledger/batch=alpha"
    ).sort_values("catalog_row")
    meta = result.asset_materializations_for_node("batch_ledger")[0].metadata
    assert meta["by_status"].value == {"succeeded": 2, "failed": 1}
    assert (meta["status_succeeded"].value, meta["status_failed"].value) == (2, 1)
    assert (
        meta["cost_usd"].value == round(ledger["cost_usd"].sum(), 4)  # $0.1739: no float noise
        and meta["cost_usd"].value > 0
    )
    assert meta["cost_usd_estimated"].value > meta["cost_usd"].value  # the failed task cost nothing
    assert 0 < meta["budget_left_today_usd"].value < 25.0

    providers = {r.data["provider"]: r.data for r in meta["providers"].value.records}
    assert [c.name for c in meta["providers"].value.schema.columns][:4] == [
        "provider", "rows", "succeeded", "failed"]  # fmt: skip
    assert set(providers) == {"novita", "modelark", "segmind"}
    assert (providers["novita"]["rows"], providers["novita"]["failed"]) == (1, 1)
    assert providers["novita"]["cost_usd"] == 0.0
    for name in ("modelark", "segmind"):
        assert (providers[name]["succeeded"], providers[name]["failed"]) == (1, 0)
        assert providers[name]["cost_usd"] == round(
            ledger.loc[ledger["provider"] == name, "cost_usd"].sum(), 4
        )

    failed = ledger[ledger["status"] == "failed"].iloc[0]
    failures = meta["failures_by_kind"].value.records
    assert len(failures) == 1
    assert failures[0].data["error_kind"] == failed["error_kind"] and failures[0].data["rows"] == 1
    assert failures[0].data["example_image_id"] == "wide"
    assert failures[0].data["example_message"] == failed["error_message"] != ""

    sheet_path = reports / "batch=alpha" / "contact_sheet.png"
    assert meta["batch_report"].value == dg.MetadataValue.path(str(sheet_path)).value
    report = result.asset_materializations_for_node("batch_report")[0].metadata
    assert report["contact_sheet"].value == str(sheet_path)
    assert (report["tiles"].value, report["video_tiles"].value) == (3, 2)
    assert "data:image/jpeg;base64," in report["preview"].value

    # One tile per ledger row, in catalog order: frames for the videos, a placeholder for the failure.
    with Image.open(sheet_path) as opened:
        assert opened.format == "PNG"
        sheet = np.asarray(opened.convert("RGB")).astype(float)
    assert sheet.shape[:2] == (HEADER_H + TILE_H, 3 * TILE_W)
    for tile, row in enumerate(ledger.itertuples()):
        for which, frame in ((0, 0), (1, -1)):
            seen = box_centre(sheet, tile, which)
            if row.status == "failed":
                assert np.abs(seen - placeholder_colour("failed")).max() < 1
            else:
                assert np.abs(seen - frame_centre(str(row.video_uri), frame)).max() < 12
                assert np.abs(seen - placeholder_colour(row.status)).max() > 40
    with Image.open(reports / "batch=alpha" / "chart.png") as opened:
        assert opened.format == "PNG"
        chart = np.asarray(opened.convert("RGB"))
    for status in ("succeeded", "failed"):  # one bar each
        assert (chart == status_colour(status)).all(axis=-1).sum() > 100

    # Rejected rows are on the sheet too, and among the failures with their reasons.
    beta = pipeline.run("ledger_job", "beta")
    failures = beta.asset_materializations_for_node("batch_ledger")[0].metadata["failures_by_kind"]
    (rejected,) = failures.value.records
    assert (
        rejected.data["error_kind"] == "invalid_request" and rejected.data["statuses"] == "rejected"
    )
    assert "short side 120 px" in rejected.data["example_message"]
    beta_ledger = pd.read_parquet(f"{pipeline.resources.seedance.data_dir}/ledger/batch=beta")
    with Image.open(reports / "batch=beta" / "contact_sheet.png") as opened:
        sheet = np.asarray(opened.convert("RGB")).astype(float)
    assert sheet.shape[:2] == (HEADER_H + TILE_H, 3 * TILE_W)
    statuses = list(beta_ledger.sort_values("catalog_row")["status"])
    tile = statuses.index("rejected")
    assert np.abs(box_centre(sheet, tile, 0) - placeholder_colour("rejected")).max() < 1
