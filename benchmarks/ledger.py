"""Ledger: writing a batch's ledger from the state store and reading it back, at a million rows."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import sqlalchemy as sa

from benchmarks.harness import Result, pipeline_settings
from benchmarks.steps import SUCCEEDED, RequestRecord, requests_table, write_batch_ledger


def run(scale: float, repeats: int, work: Path, state_url: str | None = None) -> Result:
    """From a SQLite state store, or from the one at `state_url` (PostgreSQL: `pg_ledger`)."""
    count = max(1000, int(1_000_000 * scale))
    settings = pipeline_settings(work / "ledger-data", work / "unused.csv", "", state_url=state_url)
    store = settings.store()
    request = {"prompt": "a slow pan over the sea", "image": "/data/images/i0.jpg", "resolution": "480p",
               "camera_fixed": False}  # fmt: skip
    # The store is filled a chunk at a time (setup, not timed) with finished rows, inserted as they
    # are: the lifecycle lets the catalog add only pending or rejected requests.
    for start in range(0, count, 50_000):
        with store.engine.begin() as conn:
            insert(conn, [
            RequestRecord(request_id=f"{n:032x}", batch="b", catalog_row=n, provider="modelark",
                          model="seedance-1-0-lite-i2v-250428", request=request | {"seed": n}, status=SUCCEEDED,
                          image_id=f"i{n}", task_id=f"cgt-{n}", tokens=40_500, cost_usd_estimated=0.0729,
                          cost_usd=0.0729, video_uri=f"/data/videos/b/{n:032x}.mp4", video_sha256="0" * 64,
                          video_bytes=9000, video_width=864, video_height=480, video_fps=24.0,
                          video_duration_s=5.042, submitted_at=1.7e9, completed_at=1.7e9 + 60, sandbox=True).to_row()
            for n in range(start, min(count, start + 50_000))
        ])  # fmt: skip
    writes, reads = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        ledger = write_batch_ledger(settings, "b")
        writes.append(time.perf_counter() - started)
        del ledger
        started = time.perf_counter()
        rows = pq.read_table(settings.ledger).num_rows
        reads.append(time.perf_counter() - started)
        assert rows == count, rows
    write_s, read_s = statistics.median(writes), statistics.median(reads)
    ok = write_s <= 10 and read_s <= 10
    case, kind = ("pg_ledger", "PostgreSQL") if state_url else ("ledger", "SQLite")
    return Result(case, f"write {write_s:.1f} s, read {read_s:.1f} s", "—", "—",
                  "≤ 10 s each, peak ≤ 2 GiB", ok,
                  notes=[f"{count:,} rows, written from the {kind} state store as the ledger asset does"])  # fmt: skip


def insert(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Setup rows inserted as they are; on PostgreSQL by COPY (a million rows in seconds)."""
    if conn.dialect.name != "postgresql":
        conn.execute(sa.insert(requests_table), rows)
        return
    names = list(rows[0])
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {requests_table.name} ({', '.join(names)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[name] for name in names])
