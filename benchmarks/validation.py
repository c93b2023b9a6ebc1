"""Validation: images validated per second against a bare read of their headers with Pillow."""

from __future__ import annotations

import statistics
from pathlib import Path

from PIL import Image

from benchmarks.harness import Result, median_time, write_images
from seedance_pipeline.providers import GenerationRequest, adapter_for


def run(scale: float, repeats: int, work: Path) -> Result:
    paths = write_images(work / "images", max(60, int(5000 * scale)))
    adapter = adapter_for("novita")

    def baseline() -> None:
        for path in paths:
            with Image.open(path) as img:
                _ = img.size

    def pipeline() -> None:
        for path in paths:
            adapter.validate(
                GenerationRequest("novita", "seedance-v1-lite-i2v", str(path), prompt="p")
            )

    pairs = [(median_time(baseline, 1), median_time(pipeline, 1)) for _ in range(repeats)]
    base = statistics.median(p[0] for p in pairs)
    ours = statistics.median(p[1] for p in pairs)
    ratio = base / ours  # rates: (n/ours) / (n/base)
    return Result("validation", f"{len(paths) / ours:,.0f} images/s", f"{len(paths) / base:,.0f} images/s",
                  f"{ratio:.2f}", "≥ 0.5 of baseline", ratio >= 0.5, notes=[f"{len(paths)} images"])  # fmt: skip
