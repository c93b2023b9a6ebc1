"""The contact sheet: one tile per ledger row, the video's first and last frame side by side and a
label (image id, provider, status). Rows without a kept video (rejected, failed, lost, still
pending) get a placeholder in their status colour, so every request of the batch is on the sheet.
A kept video that fails QC is framed in red and stamped `QC FAIL`, its first reason under it
(amber and `QC warn` for a warning); the header gives the verdicts and the cost per passing clip.

Size is bounded whatever the batch: tiles have a fixed size (two 144 px frames), at most
`MAX_COLUMNS` per line and at most `MAX_TILES` per sheet (8 × 15 tiles: about 2,400 × 3,100 px,
a few MB). A larger batch shows every problem row first and then successes evenly spaced over the
catalog, and the sheet's header says so; the ledger has every row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from seedance_pipeline.ledger.summary import (
    cost_per_passing_clip,
    problem_rows,
    qc_counts,
    status_counts,
)
from seedance_pipeline.reports.frames import FramesUnreadable

BOX = 144  # each frame is shrunk to fit a BOX × BOX square, letterboxed
PAD = 6
GAP = 4
LABEL_H = 46  # three lines of text
HEADER_H = 44  # the sheet's title and what it shows
MAX_COLUMNS = 8
MAX_TILES = 120
TILE_W = PAD + BOX + GAP + BOX + PAD
TILE_H = PAD + BOX + LABEL_H + PAD

BACKGROUND = (24, 24, 28)
LETTERBOX = (0, 0, 0)
TEXT = (235, 235, 235)
MUTED = (160, 160, 168)
STATUS_COLOURS = {
    "succeeded": (46, 160, 67),
    "failed": (207, 62, 62),
    "rejected": (140, 140, 150),
    "expired": (214, 133, 34),
    "cancelled": (150, 100, 200),
    "unknown": (222, 184, 40),
    "pending": (70, 130, 200),
}
OTHER_COLOUR = (200, 200, 200)
QC_COLOURS = {"fail": (235, 40, 40), "warn": (240, 170, 30)}  # a tile's frame, by QC verdict
QC_BORDER = 4

FrameSource = Callable[[str], tuple[Image.Image, Image.Image]]


def status_colour(status: str) -> tuple[int, int, int]:
    return STATUS_COLOURS.get(status, OTHER_COLOUR)


def placeholder_colour(status: str) -> tuple[int, int, int]:
    """The fill of a tile that has no frames to show: its status colour, darkened."""
    r, g, b = status_colour(status)
    return (r * 2 // 5, g * 2 // 5, b * 2 // 5)


@dataclass(frozen=True)
class ContactSheet:
    image: Image.Image
    rows: int  # in the ledger
    tiles: int  # on the sheet
    video_tiles: int  # tiles showing decoded frames
    note: str  # what the sheet shows, e.g. "all 6 rows"


def select_rows(ledger: pd.DataFrame, cap: int = MAX_TILES) -> tuple[pd.DataFrame, str]:
    """The rows to draw, in catalog order, and a note saying which ones they are."""
    rows = ledger.sort_values("catalog_row", kind="stable")
    if len(rows) <= cap:
        return rows, f"all {len(rows)} rows"
    problem = problem_rows(rows) | (_qc(rows) == "fail")
    problems, successes = rows[problem], rows[~problem]
    if len(problems) >= cap:
        return problems.head(cap), (
            f"{cap} of {len(rows):,} rows: the first {cap} of {len(problems):,} problem rows; "
            "the ledger has every row"
        )
    room = cap - len(problems)
    step = len(successes) / room
    sampled = successes.iloc[[int(i * step) for i in range(room)]]
    chosen = pd.concat([problems, sampled]).sort_values("catalog_row", kind="stable")
    return chosen, (
        f"{cap} of {len(rows):,} rows: all {len(problems):,} problem rows and {room} of "
        f"{len(successes):,} successes, evenly spaced; the ledger has every row"
    )


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _qc(ledger: pd.DataFrame) -> pd.Series:
    """Each row's QC verdict (None where there is none, or no such column in an older ledger)."""
    if "qc_status" in ledger:
        return ledger["qc_status"]
    return pd.Series(None, index=ledger.index, dtype=object)


def _qc_label(row: pd.Series) -> str | None:
    verdict = row.get("qc_status")
    return verdict if verdict in QC_COLOURS else None


def _has_video(row: pd.Series) -> bool:
    return bool(
        row["status"] == "succeeded"
        and isinstance(row["video_uri"], str)
        and row["video_uri"]
        and pd.isna(row["error_kind"])
    )


def _detail(row: pd.Series) -> str:
    verdict = _qc_label(row)
    if verdict is not None:
        reasons = row.get("qc_reasons")
        first = str(reasons).split("; ")[0] if isinstance(reasons, str) else ""
        return f"QC {'FAIL' if verdict == 'fail' else 'warn'}: {first}"
    if row["status"] == "succeeded" and pd.isna(row["error_kind"]):
        parts = []
        if pd.notna(row["video_duration_s"]):
            parts.append(f"{float(row['video_duration_s']):.1f} s")
        if pd.notna(row["video_width"]) and pd.notna(row["video_height"]):
            parts.append(f"{int(row['video_width'])}x{int(row['video_height'])}")
        return " · ".join(parts)
    return "" if pd.isna(row["error_kind"]) else str(row["error_kind"])


def render_contact_sheet(
    ledger: pd.DataFrame,
    title: str,
    frames: FrameSource,
    workers: int = 2,
    stills: Callable[[str], Image.Image] | None = None,
) -> ContactSheet:
    """`stills` reads a kept image: the provider's last frame (`last_frame_uri`) is shown in place
    of the one decoded from the video, where a row asked for it."""
    chosen, note = select_rows(ledger)
    records = [row for _, row in chosen.iterrows()]

    def load(row: pd.Series) -> tuple[Image.Image, Image.Image] | str:
        if not _has_video(row):
            return "VIDEO LOST" if row["status"] == "succeeded" else str(row["status"]).upper()
        try:
            first, last = frames(str(row["video_uri"]))
        except FramesUnreadable:
            return "UNREADABLE"
        frame_uri = row.get("last_frame_uri")
        if stills is not None and isinstance(frame_uri, str) and frame_uri:
            with contextlib.suppress(FramesUnreadable):  # else the decoded frame stands in
                last = stills(frame_uri)
        return first, last

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PyAV decodes without the GIL
        contents = list(pool.map(load, records))

    columns = max(1, min(MAX_COLUMNS, len(records)))
    lines = max(1, -(-len(records) // columns))
    sheet = Image.new("RGB", (columns * TILE_W, HEADER_H + lines * TILE_H), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    big, small = _font(15), _font(12)
    counts = ", ".join(f"{s} {n}" for s, n in status_counts(ledger).items()) or "no rows"
    if "qc_status" in ledger:
        verdicts = ", ".join(f"{s} {n}" for s, n in qc_counts(ledger).items())
        per_clip = cost_per_passing_clip(ledger)
        per_clip_text = (
            f"${per_clip:.4f} per passing clip" if per_clip is not None else "no clip passes"
        )
        counts += f" · QC: {verdicts or 'none'} · {per_clip_text}"
    draw.text((PAD, 6), _fit_text(draw, f"{title} · {counts}", big, sheet.width - 2 * PAD),
              fill=TEXT, font=big)  # fmt: skip
    draw.text((PAD, 26), _fit_text(draw, f"showing {note}", small, sheet.width - 2 * PAD),
              fill=MUTED, font=small)  # fmt: skip

    video_tiles = 0
    for index, (row, content) in enumerate(zip(records, contents, strict=True)):
        x = (index % columns) * TILE_W
        y = HEADER_H + (index // columns) * TILE_H
        status = str(row["status"])
        if isinstance(content, tuple):
            video_tiles += 1
            for n, frame in enumerate(content):
                left = x + PAD + n * (BOX + GAP)
                draw.rectangle((left, y + PAD, left + BOX - 1, y + PAD + BOX - 1), fill=LETTERBOX)
                sheet.paste(
                    frame, (left + (BOX - frame.width) // 2, y + PAD + (BOX - frame.height) // 2)
                )
            verdict = _qc_label(row)
            if verdict is not None:  # framed, and stamped over the first frame
                area = (x + 2, y + 2, x + TILE_W - 3, y + PAD + BOX + 3)
                draw.rectangle(area, outline=QC_COLOURS[verdict], width=QC_BORDER)
                stamp = "QC FAIL" if verdict == "fail" else "QC warn"
                draw.text((x + PAD + 4, y + PAD + 4), stamp, fill=QC_COLOURS[verdict], font=big,
                          stroke_width=2, stroke_fill=(0, 0, 0))  # fmt: skip
        else:
            area = (x + PAD, y + PAD, x + PAD + 2 * BOX + GAP - 1, y + PAD + BOX - 1)
            draw.rectangle(area, fill=placeholder_colour(status))
            centre = ((area[0] + area[2]) // 2, (area[1] + area[3]) // 2)
            draw.text(centre, content, fill=status_colour(status), font=big, anchor="mm")
        text_y = y + PAD + BOX + 4
        width = TILE_W - 2 * PAD
        image_id = "" if pd.isna(row["image_id"]) else str(row["image_id"])
        draw.text((x + PAD, text_y), _fit_text(draw, image_id, small, width), fill=TEXT, font=small)
        draw.text((x + PAD, text_y + 14), _fit_text(draw, f"{row['provider']} · {status}", small, width),
                  fill=status_colour(status), font=small)  # fmt: skip
        verdict = _qc_label(row)
        draw.text((x + PAD, text_y + 28), _fit_text(draw, _detail(row), small, width),
                  fill=QC_COLOURS[verdict] if verdict else MUTED, font=small)  # fmt: skip
    return ContactSheet(sheet, len(ledger), len(records), video_tiles, note)
