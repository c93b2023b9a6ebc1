"""Catalog: reading and planning a catalog of a hundred thousand rows, within 1 GiB."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.harness import Result, write_catalog

# Not through `steps`: this case's peak memory must not count the rest of the pipeline.
from seedance_pipeline.catalog.planning import plan_catalog
from seedance_pipeline.catalog.reading import read_catalog
from seedance_pipeline.settings import CatalogDefaults


def run(scale: float, repeats: int, work: Path) -> Result:
    count = max(1000, int(100_000 * scale))
    catalog = write_catalog(work / "catalog", count, distinct_images=20)
    started = time.perf_counter()
    plan = plan_catalog(read_catalog(str(catalog)), CatalogDefaults(), catalog.parent)
    elapsed = time.perf_counter() - started
    return Result("catalog", f"{count:,} rows planned in {elapsed:.1f} s", "—", "—", "peak ≤ 1 GiB",
                  len(plan.records) == count, notes=[f"{count:,} rows over 20 images"])  # fmt: skip
