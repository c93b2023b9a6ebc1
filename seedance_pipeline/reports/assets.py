"""The batch report asset: a contact sheet and a chart per batch, beside the ledger."""

import dagster as dg

from seedance_pipeline.jobs import LEDGER_ASSET, OWNERS, REPORT_ASSET
from seedance_pipeline.metadata import link, tag_run
from seedance_pipeline.partitions import batches
from seedance_pipeline.reports.contact_sheet import MAX_TILES
from seedance_pipeline.reports.publish import full_size_image, inline_image
from seedance_pipeline.reports.report import write_batch_report
from seedance_pipeline.resources import SeedanceResource


@dg.asset(
    name=REPORT_ASSET,
    deps=[LEDGER_ASSET],
    partitions_def=batches,
    kinds={"png", "pillow"},
    tags={"seedance/stage": "report"},
    group_name="reports",
    owners=OWNERS,
    description=(
        "A look at the batch without opening the ledger: `contact_sheet.png` shows, for every "
        "request, the first and the last frame of its kept video (decoded with PyAV) labelled with "
        "image id, provider and status (kept videos that fail QC framed in red, with their reason; the "
        "header gives the QC verdicts and the cost per passing clip, as does `cost_per_passing_clip_usd`); rejected, failed and lost rows appear as placeholders in "
        f"their status colour. Batches over {MAX_TILES} rows show every problem row and an even "
        "sample of successes. `chart.png` shows rows by status and estimated against actual cost "
        "per provider. Both are at `<reports_url>/batch=<batch>/` (default `<data dir>/reports`), "
        "made from the ledger partition in the same run as the ledger."
    ),
)
def batch_report(
    context: dg.AssetExecutionContext, seedance: SeedanceResource
) -> dg.MaterializeResult:
    tag_run(context)
    report = write_batch_report(seedance.settings(), context.partition_key)
    sheet = report.sheet
    context.log.info(
        f"contact sheet of {context.partition_key}: {sheet.tiles} tiles ({sheet.video_tiles} videos) "
        f"at {report.urls.contact_sheet}; chart at {report.urls.chart}"
    )
    previews = [
        inline_image(report.chart, 800, "cost and status chart"),
        inline_image(sheet.image, 900, "contact sheet"),
    ]
    preview = "\n\n".join(p for p in previews if p) or "(too large to preview: open the files)"
    return dg.MaterializeResult(
        metadata={
            "contact_sheet": link(report.urls.contact_sheet),
            "chart": link(report.urls.chart),
            "rows": sheet.rows,
            "tiles": sheet.tiles,
            "video_tiles": sheet.video_tiles,
            "placeholder_tiles": sheet.tiles - sheet.video_tiles,
            "shows": sheet.note,
            "sheet_px": f"{sheet.image.width}×{sheet.image.height}",
            "sheet_bytes": report.sheet_bytes,
            "qc": dg.MetadataValue.json(report.qc),
            "cost_per_passing_clip_usd": (
                report.cost_per_passing_clip_usd
                if report.cost_per_passing_clip_usd is not None
                else dg.MetadataValue.text("no clip passes QC")
            ),
            "preview": dg.MetadataValue.md(preview),
            # Every tile at full size, one click away ("Show Markdown"), wherever the file lives.
            "contact_sheet_full_size": dg.MetadataValue.md(
                full_size_image(sheet.image, f"contact sheet of {context.partition_key}, full size")
                or f"too large to show inline: open {report.urls.contact_sheet}"
            ),
        }
    )
