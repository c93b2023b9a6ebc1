"""A dataset export: the kept videos whose QC verdict is wanted (`pass` by default), copied beside a
manifest that any Parquet reader takes (pandas, DuckDB, Hugging Face `datasets`).

`<out>/videos/<request_id>.mp4` and `<out>/manifest.parquet`, on a local path or any fsspec URL.
The manifest has one row per exported video, plain types only (strings, integers, floats,
booleans), and `file_name`, the video's path relative to the manifest, as the Hugging Face
folder loaders name it. Each copy is checked against the sha256 recorded when the video was kept;
a video that no longer matches is left out and counted, never exported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from seedance_pipeline.ledger.rows import ledger_table
from seedance_pipeline.qc import QC_COLUMNS
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.storage import absolute, write_bytes_atomic

VERDICTS = ("pass", "warn", "fail")
# The manifest's columns beside `file_name`, as the ledger names and types them.
MANIFEST_COLUMNS = ("request_id", "batch", "image_id", "provider", "model", "prompt", "image",
                    "last_image", "resolution", "aspect_ratio", "duration_s", "seed", "seed_used",
                    "video_width", "video_height", "video_fps", "video_duration_s", "video_sha256",
                    "cost_usd", *QC_COLUMNS)  # fmt: skip


@dataclass(frozen=True)
class Export:
    manifest: str  # where the manifest went
    videos: int  # exported
    left_out: int  # kept videos whose verdict was not wanted
    mismatched: list[str]  # request ids whose copy no longer matches its sha256 (not exported)


def export_dataset(
    settings: PipelineSettings, out: str, verdicts: Sequence[str] = ("pass",)
) -> Export:
    """Copy every kept video whose `qc_status` is one of `verdicts` to `out`, with its manifest."""
    unknown = set(verdicts) - set(VERDICTS)
    if unknown:
        raise ValueError(f"QC verdicts are {', '.join(VERDICTS)}; not {', '.join(sorted(unknown))}")
    out = absolute(out)
    records = [
        r
        for r in settings.store().records(statuses=[RequestStatus.SUCCEEDED])
        if r.video_uri and r.error_kind is None
    ]
    ledger = ledger_table(records).add_column(0, "batch", pa.array([r.batch for r in records]))
    wanted = [i for i, r in enumerate(records) if r.qc_status in verdicts]
    rows = ledger.take(pa.array(wanted, pa.int64())) if wanted else ledger.slice(0, 0)
    names: list[str] = []
    keep: list[int] = []
    mismatched: list[str] = []
    for index, row in enumerate(
        rows.select(["request_id", "video_uri", "video_sha256"]).to_pylist()
    ):
        name = f"videos/{row['request_id']}.mp4"
        if _copy(str(row["video_uri"]), f"{out}/{name}") != row["video_sha256"]:
            mismatched.append(str(row["request_id"]))
            _remove(f"{out}/{name}")
            continue
        names.append(name)
        keep.append(index)
    manifest = rows.take(pa.array(keep, pa.int64())).select(list(MANIFEST_COLUMNS))
    manifest = manifest.add_column(0, "file_name", pa.array(names, pa.string()))
    sink = pa.BufferOutputStream()
    pq.write_table(manifest, sink)
    where = write_bytes_atomic(f"{out}/manifest.parquet", sink.getvalue().to_pybytes())
    return Export(where, len(keep), len(records) - len(wanted), mismatched)


def _copy(source: str, target: str) -> str | None:
    """Copy `source` to `target` (paths or fsspec URLs), hashing as it goes; the copy's sha256,
    or None (nothing left at `target`) when the source is gone."""
    digest = hashlib.sha256()
    try:
        with (
            fsspec.open(source, "rb") as reader,
            fsspec.open(target, "wb", auto_mkdir=True) as writer,
        ):
            for chunk in iter(lambda: reader.read(2**20), b""):
                digest.update(chunk)
                writer.write(chunk)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def _remove(target: str) -> None:
    fs, path = fsspec.core.url_to_fs(target)
    if fs.exists(path):
        fs.rm(path)
