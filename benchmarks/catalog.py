"""Catalog: reading, validating and planning a catalog of a million rows, as CSV and as Parquet,
streamed a chunk at a time (as `refresh_catalog` does), within 60 s each and 1 GiB."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from PIL import Image

from benchmarks.harness import Result

# Not through `steps`: this case's peak memory must not count the rest of the pipeline.
from seedance_pipeline.catalog.planning import CatalogPlanner
from seedance_pipeline.catalog.reading import iter_catalog
from seedance_pipeline.settings import CatalogDefaults

DISTINCT_IMAGES = 20


def run(scale: float, repeats: int, work: Path) -> Result:
    count = max(1000, int(1_000_000 * scale))
    folder = work / "catalog"
    csv_path, parquet_path = write_catalogs(folder, count)
    times: dict[str, float] = {}
    cpu: dict[
        str, float
    ] = {}  # this process's CPU time: what the wall time would be on an idle core
    for path in (csv_path, parquet_path):
        started, cpu_started = time.perf_counter(), time.process_time()
        planner = plan(path)
        times[path.suffix] = time.perf_counter() - started
        cpu[path.suffix] = time.process_time() - cpu_started
        assert planner.plan.rows == count and planner.plan.valid == count, planner.plan
    ok = all(t <= 60 for t in times.values())
    return Result("catalog", f"{count:,} rows planned: CSV {times['.csv']:.1f} s, Parquet {times['.parquet']:.1f} s",
                  "—", "—", "≤ 60 s each, peak ≤ 1 GiB", ok,
                  notes=[f"{count:,} rows over {DISTINCT_IMAGES} images, streamed {50_000:,} rows at a time",
                         f"CPU time CSV {cpu['.csv']:.1f} s, Parquet {cpu['.parquet']:.1f} s"])  # fmt: skip


def plan(path: Path) -> CatalogPlanner:
    """Read, validated and planned a chunk at a time, each chunk's records then dropped (the
    catalog job records them in the store instead)."""
    planner: CatalogPlanner | None = None
    for chunk in iter_catalog(str(path)):
        if planner is None:
            planner = CatalogPlanner(list(chunk.columns), CatalogDefaults(), path.parent)
        planner.add(chunk)
    assert planner is not None
    return planner


def write_catalogs(folder: Path, rows: int) -> tuple[Path, Path]:
    """The same rows as CSV and as Parquet, written 100,000 at a time (setup, not timed, and not
    held whole: the case's peak memory is the planner's)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(DISTINCT_IMAGES):
        Image.new("RGB", (640, 360), (i * 7 % 255, 120, 200)).save(folder / f"i{i}.jpg")
    csv_path, parquet_path = folder / "catalog.csv", folder / "catalog.parquet"
    schema = pa.schema(
        [(name, pa.string()) for name in ("image", "prompt", "provider", "resolution", "seed")]
    )
    with (
        pacsv.CSVWriter(csv_path, schema) as csv_out,
        pq.ParquetWriter(parquet_path, schema) as pq_out,
    ):
        for start in range(0, rows, 100_000):
            numbers = range(start, min(rows, start + 100_000))
            part = pa.record_batch([
                [f"i{n % DISTINCT_IMAGES}.jpg" for n in numbers],
                ["a slow pan over the sea"] * len(numbers),
                ["modelark"] * len(numbers),
                ["480p"] * len(numbers),
                [str(n) for n in numbers],
            ], schema=schema)  # fmt: skip
            csv_out.write_batch(part)
            pq_out.write_batch(part)
    return csv_path, parquet_path
