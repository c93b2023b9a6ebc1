"""The batch's cost-and-status chart, drawn with Pillow: rows by status on the left, estimated and
actual cost per provider on the right, the totals and the budget left underneath."""

from __future__ import annotations

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from seedance_pipeline.ledger.summary import provider_summaries, status_counts
from seedance_pipeline.reports.contact_sheet import BACKGROUND, MUTED, TEXT, status_colour

WIDTH, HEIGHT = 800, 360
ESTIMATE = (110, 150, 210)
ACTUAL = (46, 160, 67)


def render_chart(ledger: pd.DataFrame, title: str, budget_left_usd: float | None) -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    big, small = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    draw.text((12, 8), title, fill=TEXT, font=big)
    top, bottom = 44, HEIGHT - 44
    half = WIDTH // 2

    # Left: one bar per status, longest = the most frequent.
    counts = status_counts(ledger)
    draw.text((12, top - 14), "rows by status", fill=MUTED, font=small)
    most = max(counts.values(), default=1)
    bar_h = min(28, (bottom - top) // max(1, len(counts)) - 6)
    label_w, right = 80, half - 60
    for i, (status, n) in enumerate(counts.items()):
        y = top + 6 + i * (bar_h + 6)
        length = int((right - 12 - label_w) * n / most)
        draw.text((12, y + bar_h // 2), status, fill=TEXT, font=small, anchor="lm")
        draw.rectangle((12 + label_w, y, 12 + label_w + max(2, length), y + bar_h),
                       fill=status_colour(status))  # fmt: skip
        draw.text((12 + label_w + max(2, length) + 6, y + bar_h // 2), str(n), fill=TEXT,
                  font=small, anchor="lm")  # fmt: skip

    # Right: estimated (outline) and actual (filled) cost per provider.
    providers = provider_summaries(ledger)
    draw.text((half + 12, top - 14), "cost by provider, USD (outline: estimated, filled: actual)",
              fill=MUTED, font=small)  # fmt: skip
    peak = max([p.cost_usd_estimated for p in providers] + [p.cost_usd for p in providers] + [1e-9])
    group_h = min(40, (bottom - top) // max(1, len(providers)) - 6)
    label_w, right = 80, WIDTH - 70
    for i, p in enumerate(providers):
        y = top + 6 + i * (group_h + 6)
        x0 = half + 12 + label_w
        scale = (right - x0) / peak
        mid = y + group_h // 2
        draw.text((half + 12, mid), p.provider, fill=TEXT, font=small, anchor="lm")
        draw.rectangle((x0, y, x0 + max(2, int(p.cost_usd_estimated * scale)), mid - 1),
                       outline=ESTIMATE, width=2)  # fmt: skip
        draw.rectangle(
            (x0, mid + 1, x0 + max(2, int(p.cost_usd * scale)), y + group_h), fill=ACTUAL
        )
        draw.text((x0 + max(2, int(max(p.cost_usd, p.cost_usd_estimated) * scale)) + 6, mid),
                  f"${p.cost_usd:.3f}", fill=TEXT, font=small, anchor="lm")  # fmt: skip

    actual = float(ledger["cost_usd"].fillna(0.0).sum())
    estimated = float(ledger["cost_usd_estimated"].fillna(0.0).sum())
    footer = f"actual ${actual:.4f} · estimated ${estimated:.4f}"
    if budget_left_usd is not None:
        footer += f" · budget left today ${budget_left_usd:.4f} (when the report was made)"
    draw.text((12, HEIGHT - 28), footer, fill=TEXT, font=small)
    return image
