"""What the cases share: the emulator in its own process, image folders and catalogs to feed the
pipeline, settings, timing, and the `Result` row of the table.

Each case runs in its own process and its peak memory is reported, so imports of the heavy
libraries stay inside the functions that need them: a case loads only what it uses.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Result:
    case: str
    measured: str
    baseline: str
    ratio: str
    target: str
    ok: bool
    peak_mib: float = 0.0
    notes: list[str] = field(default_factory=list)
    skipped: bool = False


def write_images(folder: Path, count: int) -> list[Path]:
    """`count` image paths of mixed formats and sizes: 24 distinct files, hard-linked to the rest
    (validation reads each path; the page cache serves baseline and pipeline alike)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    formats = [
        ("JPEG", "jpg"),
        ("PNG", "png"),
        ("WEBP", "webp"),
        ("BMP", "bmp"),
        ("TIFF", "tiff"),
        ("GIF", "gif"),
    ]
    sizes = [(640, 360), (1280, 720), (900, 1600), (2000, 1500)]
    originals = []
    for i in range(24):
        fmt, ext = formats[i % len(formats)]
        width, height = sizes[i % len(sizes)]
        path = folder / f"orig{i}.{ext}"
        Image.new("RGB", (width, height), (i * 10 % 255, 90, 160)).save(path, fmt)
        originals.append(path)
    paths = []
    for n in range(count):
        source = originals[n % len(originals)]
        path = folder / f"img{n}{source.suffix}"
        if not path.exists():
            os.link(source, path)
        paths.append(path)
    return paths


class Emulator:
    """The emulator in its own process, so it does not share the benchmark's interpreter."""

    def __init__(self, *args: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="seedance-bench-emulator-"))
        info = self.folder / "emulator.json"
        command = [
            sys.executable,
            "-m",
            "seedance_pipeline.cli",
            "emulator",
            "--port",
            "0",
            "--port-file",
            str(info),
            *args,
        ]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while not info.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.05)
        self.url = json.loads(info.read_text())["url"]

    def faults(self, provider: str, **settings: Any) -> None:
        import httpx

        httpx.put(f"{self.url}/_emulator/faults/{provider}", json=settings).raise_for_status()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def pipeline_settings(data: Path, catalog: Path, sandbox: str, **kw: Any) -> Any:
    from seedance_pipeline.settings import PipelineSettings

    return PipelineSettings(
        data_dir=str(data), catalog=str(catalog), sandbox_url=sandbox, daily_budget_usd=None, **kw
    )


def write_catalog(
    folder: Path, rows: int, provider: str = "modelark", distinct_images: int = 1
) -> Path:
    import pandas as pd
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(distinct_images):
        Image.new("RGB", (640, 360), (i * 7 % 255, 120, 200)).save(folder / f"i{i}.jpg")
    frame = pd.DataFrame({
        "image": [f"i{n % distinct_images}.jpg" for n in range(rows)],
        "prompt": "a slow pan over the sea",
        "provider": provider,
        "resolution": "480p",
        "seed": range(rows),
    })  # fmt: skip
    path = folder / "catalog.csv"
    frame.to_csv(path, index=False)
    return path


def median_time(function: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class Skipped(Exception):
    """The case cannot run on this machine; the message says why and what to install."""


@contextmanager
def postgres_server() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster on 127.0.0.1, started the way the tests start theirs (initdb
    and pg_ctl from PATH or /usr/lib/postgresql/*/bin), stopped and removed afterwards; its
    `database()` gives a fresh database and `url(name)` a state-store URL for it."""
    from seedance_pipeline_tests.postgres import local_cluster, server_binaries

    bin_dir = server_binaries()
    if bin_dir is None:
        raise Skipped("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
                      "/usr/lib/postgresql/*/bin; install them (`apt-get install postgresql`)")  # fmt: skip
    with local_cluster(bin_dir) as server:
        yield server
