"""Submission: requests submitted per second through the pipeline (state store included) against
bare concurrent POSTs of the same bodies to the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import Emulator, Result, median_time, pipeline_settings, write_catalog
from benchmarks.steps import refresh_catalog, submit_batch
from seedance_pipeline.providers import GenerationRequest, adapter_for


def run(scale: float, repeats: int, work: Path, server: Any = None) -> Result:
    """With `server` (a PostgreSQL cluster, `harness.postgres_server`), each repeat's state store
    is a fresh database on it; else a SQLite file."""
    count = max(40, int(500 * scale))
    emulator = Emulator("--queued-s", "0", "--running-s", "3600", "--max-in-flight", "1000000")
    try:
        catalog = write_catalog(work / "submission", count)
        adapter = adapter_for("modelark")
        model = adapter.spec.default_model
        bodies = [adapter.build_submit(GenerationRequest("modelark", model, str(work / "submission" / "i0.jpg"),
                                                         prompt="a slow pan over the sea", resolution="480p",
                                                         seed=n)).json for n in range(count)]  # fmt: skip
        concurrency = 8

        async def bare() -> None:
            gate = asyncio.Semaphore(concurrency)
            async with httpx.AsyncClient(base_url=f"{emulator.url}/modelark",
                                         headers={"Authorization": "Bearer bench"}) as client:  # fmt: skip

                async def one(body: Any) -> None:
                    async with gate:
                        (
                            await client.post("/contents/generations/tasks", json=body)
                        ).raise_for_status()

                await asyncio.gather(*(one(b) for b in bodies))

        runs: list[tuple[float, float]] = []
        for attempt in range(repeats):
            with contextlib.ExitStack() as stack:
                state_url = server.url(stack.enter_context(server.database())) if server else None
                settings = pipeline_settings(work / f"submission-data-{attempt}", catalog, emulator.url, state_url=state_url,
                                             max_in_flight={"modelark": 10**9}, submit_concurrency=concurrency)  # fmt: skip
                refresh_catalog(settings)
                base = median_time(lambda: asyncio.run(bare()), 1)
                started = time.perf_counter()
                submit_batch(settings, "default", ["modelark"])
                ours = time.perf_counter() - started
                store = settings.store()
                assert store.counts().get("in_flight") == count, store.counts()
                store.engine.dispose()
            runs.append((base, ours))
        base = statistics.median(r[0] for r in runs)
        ours = statistics.median(r[1] for r in runs)
        ratio = base / ours
        case, kind = ("pg_submission", "PostgreSQL") if server else ("submission", "SQLite")
        return Result(case, f"{count / ours:,.0f} req/s", f"{count / base:,.0f} req/s", f"{ratio:.2f}",
                      "≥ 0.5 of baseline", ratio >= 0.5,
                      notes=[f"{count} requests, {concurrency} concurrent, state store ({kind}) included"])  # fmt: skip
    finally:
        emulator.close()
