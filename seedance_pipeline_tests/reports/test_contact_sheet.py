"""The contact sheet stays a sensible size whatever the batch, and keeps every problem row."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from PIL import Image

from seedance_pipeline.ledger.summary import failures_by_kind, provider_summaries
from seedance_pipeline.reports.contact_sheet import (
    HEADER_H,
    MAX_COLUMNS,
    MAX_TILES,
    TILE_H,
    TILE_W,
    render_contact_sheet,
    select_rows,
)
from seedance_pipeline.reports.frames import FramesUnreadable


def synthetic_ledger(rows: int, failed_every: int, rejected_every: int) -> pd.DataFrame:
    records = []
    for i in range(rows):
        status = ("failed" if i % failed_every == 0 else
                  "rejected" if i % rejected_every == 0 else "succeeded")  # fmt: skip
        records.append({
            "catalog_row": i, "image_id": f"img-{i}", "provider": ("novita", "modelark")[i % 2],
            "status": status,
            "error_kind": {"failed": "task_failed", "rejected": "invalid_request"}.get(status),
            "error_message": None if status == "succeeded" else f"reason {i}",
            "video_uri": f"/videos/{i}.mp4" if status == "succeeded" else None,
            "video_duration_s": 5.04, "video_width": 864, "video_height": 480,
            "cost_usd": 0.1 if status == "succeeded" else 0.0, "cost_usd_estimated": 0.1,
        })  # fmt: skip
    return pd.DataFrame(records)


def test_a_5000_row_batch_makes_a_bounded_sheet_with_every_problem_row() -> None:
    ledger = synthetic_ledger(5000, failed_every=250, rejected_every=333)
    problems = int((ledger["status"] != "succeeded").sum())
    assert 0 < problems < MAX_TILES
    decoded: list[str] = []

    def frames(uri: str) -> tuple[Image.Image, Image.Image]:
        decoded.append(uri)
        if uri.endswith("/1.mp4"):
            raise FramesUnreadable("truncated")
        tile = Image.new("RGB", (144, 80), (30, 120, 200))
        return tile, tile

    started = time.perf_counter()
    sheet = render_contact_sheet(ledger, "batch big", frames)
    elapsed = time.perf_counter() - started
    assert sheet.tiles == MAX_TILES and sheet.rows == 5000
    assert sheet.image.size == (
        MAX_COLUMNS * TILE_W,
        HEADER_H + (MAX_TILES // MAX_COLUMNS) * TILE_H,
    )
    assert len(decoded) == MAX_TILES - problems  # only the shown successes are decoded
    assert sheet.video_tiles == len(decoded) - (
        1 if any(u.endswith("/1.mp4") for u in decoded) else 0
    )
    assert f"all {problems} problem rows" in sheet.note and "5,000" in sheet.note
    chosen, _ = select_rows(ledger)
    assert list(chosen["catalog_row"]) == sorted(chosen["catalog_row"])
    assert set(ledger.loc[ledger["status"] != "succeeded", "catalog_row"]) <= set(
        chosen["catalog_row"]
    )
    assert elapsed < 30


def test_small_batches_show_every_row_in_one_line_up_to_eight() -> None:
    ledger = synthetic_ledger(5, failed_every=2, rejected_every=3)
    sheet = render_contact_sheet(ledger, "batch small", lambda uri: (Image.new("RGB", (9, 9)),) * 2)
    assert sheet.tiles == 5 and sheet.note == "all 5 rows"
    assert sheet.image.size == (5 * TILE_W, HEADER_H + TILE_H)


def test_summaries_count_per_provider_and_group_failures_with_one_example() -> None:
    ledger = synthetic_ledger(12, failed_every=4, rejected_every=5)  # failed 0,4,8; rejected 5,10
    by_provider = {p.provider: p for p in provider_summaries(ledger)}
    assert (by_provider["novita"].rows, by_provider["novita"].failed) == (6, 3)
    assert (by_provider["modelark"].rejected, by_provider["modelark"].succeeded) == (1, 5)
    assert by_provider["modelark"].cost_usd == pytest.approx(0.5)
    kinds = {f.error_kind: f for f in failures_by_kind(ledger)}
    assert (kinds["task_failed"].rows, kinds["task_failed"].example_message) == (3, "reason 0")
    assert (kinds["invalid_request"].rows, kinds["invalid_request"].example_image_id) == (
        2,
        "img-5",
    )


def test_the_providers_last_frame_replaces_the_decoded_one_where_a_row_has_it() -> None:
    ledger = synthetic_ledger(3, failed_every=100, rejected_every=100).iloc[1:]  # two successes
    ledger = ledger.assign(last_frame_uri=["/videos/1.last.png", None])
    blue, red = Image.new("RGB", (40, 40), (30, 120, 200)), Image.new("RGB", (40, 40), (255, 0, 0))
    asked: list[str] = []

    def stills(uri: str) -> Image.Image:
        asked.append(uri)
        return red

    sheet = render_contact_sheet(ledger, "batch chained", lambda uri: (blue, blue), stills=stills)
    assert asked == ["/videos/1.last.png"] and sheet.video_tiles == 2
    colours = {colour for _, colour in sheet.image.getcolors(maxcolors=2**20) or []}
    assert (255, 0, 0) in colours
    without = render_contact_sheet(ledger, "batch chained", lambda uri: (blue, blue))
    assert (255, 0, 0) not in {c for _, c in without.image.getcolors(maxcolors=2**20) or []}
