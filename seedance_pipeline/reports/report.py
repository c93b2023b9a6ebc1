"""A batch's report, drawn from its ledger partition: a contact sheet and a chart, written beside
the ledger (`settings.reports_url`)."""

from __future__ import annotations

from dataclasses import dataclass

import PIL.Image

from seedance_pipeline.ledger.summary import cost_per_passing_clip, qc_counts
from seedance_pipeline.ledger.write import read_batch_ledger
from seedance_pipeline.reports.chart import render_chart
from seedance_pipeline.reports.contact_sheet import BOX, ContactSheet, render_contact_sheet
from seedance_pipeline.reports.frames import first_and_last_frames, still_image
from seedance_pipeline.reports.publish import write_png
from seedance_pipeline.settings import PipelineSettings, ReportUrls


@dataclass(frozen=True)
class BatchReport:
    urls: ReportUrls
    sheet: ContactSheet
    chart: PIL.Image.Image
    sheet_bytes: int
    qc: dict[str, int]  # kept videos by QC verdict
    cost_per_passing_clip_usd: float | None  # None when no clip passes QC


def write_batch_report(settings: PipelineSettings, batch: str) -> BatchReport:
    """The batch's contact sheet and chart, from its ledger partition, written under
    `settings.reports_url`."""
    ledger = read_batch_ledger(settings, batch)
    sheet = render_contact_sheet(
        ledger,
        f"batch {batch}",
        lambda uri: first_and_last_frames(uri, BOX),
        stills=lambda uri: still_image(uri, BOX),
    )
    budget_left = settings.budget_metadata(settings.store(), batch).get("budget_left_today_usd")
    chart = render_chart(ledger, f"batch {batch}: {len(ledger)} rows", budget_left)
    urls = settings.report_urls(batch)
    sheet_bytes = write_png(sheet.image, urls.contact_sheet)
    write_png(chart, urls.chart)
    return BatchReport(
        urls, sheet, chart, sheet_bytes, qc_counts(ledger), cost_per_passing_clip(ledger)
    )
