"""The ledger: one row per catalog request, built from the state store, written as Parquet.

`<ledger>/batch=<batch>/part-0.parquet`, hive-partitioned, so `pandas.read_parquet("<ledger>")` reads
every batch. `<ledger>` is `<data dir>/ledger` or any fsspec URL (`s3://bucket/seedance/ledger`).
A partition is replaced atomically, so a crash mid-write leaves the previous version: locally it is
written to a temporary name and renamed over the old one; on an object store it goes up in one PUT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from seedance_pipeline.providers import adapter_for
from seedance_pipeline.providers.facts import load_facts
from seedance_pipeline.state.store import OPEN, RequestRecord
from seedance_pipeline.storage import absolute, is_local, local_path, replacing, write_bytes_atomic

SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("catalog_row", pa.int64()),
        ("image_id", pa.string()),
        ("provider", pa.string()),
        ("model", pa.string()),
        ("prompt", pa.string()),
        ("image", pa.string()),
        ("image_sha256", pa.string()),
        ("last_image", pa.string()),
        ("resolution", pa.string()),
        ("aspect_ratio", pa.string()),
        ("duration_s", pa.int64()),
        ("seed", pa.int64()),
        ("seed_used", pa.int64()),
        ("camera_fixed", pa.bool_()),
        ("task_id", pa.string()),
        ("status", pa.string()),
        ("error_kind", pa.string()),
        ("error_message", pa.string()),
        ("tokens", pa.int64()),
        ("cost_usd_estimated", pa.float64()),
        ("cost_usd", pa.float64()),
        ("video_url", pa.string()),
        ("video_uri", pa.string()),
        ("video_sha256", pa.string()),
        ("video_bytes", pa.int64()),
        ("video_width", pa.int64()),
        ("video_height", pa.int64()),
        ("video_fps", pa.float64()),
        ("video_duration_s", pa.float64()),
        ("submitted_at", pa.timestamp("us", tz="UTC")),
        ("completed_at", pa.timestamp("us", tz="UTC")),
        ("sandbox", pa.bool_()),
    ]
)
COLUMNS = ["batch", *SCHEMA.names]


def ledger_row(record: RequestRecord) -> dict[str, object]:
    """A request record as the ledger shows it: requested values resolved to the model's defaults."""
    request = record.request
    model = None
    if (
        record.provider in load_facts().providers
        and record.model in adapter_for(record.provider).spec.models
    ):
        model = adapter_for(record.provider).spec.models[record.model]
    return {
        "request_id": record.request_id,
        "catalog_row": record.catalog_row,
        "image_id": record.image_id,
        "provider": record.provider,
        "model": record.model,
        "prompt": request.get("prompt"),
        "image": request.get("image"),
        "image_sha256": record.image_sha256,
        "last_image": request.get("last_image"),
        "resolution": request.get("resolution") or (model.default_resolution if model else None),
        "aspect_ratio": request.get("aspect_ratio")
        or (model.default_aspect_ratio if model else None),
        "duration_s": request.get("duration") or (model.default_duration if model else None),
        "seed": request.get("seed"),
        "seed_used": record.seed_used,
        "camera_fixed": request.get("camera_fixed"),
        "task_id": record.task_id,
        "status": "pending" if record.status in OPEN else record.status,
        "error_kind": record.error_kind,
        "error_message": record.error_message,
        "tokens": record.tokens,
        "cost_usd_estimated": record.cost_usd_estimated,
        "cost_usd": record.cost_usd if record.cost_usd is not None else 0.0,
        "video_url": record.video_url,
        "video_uri": record.video_uri,
        "video_sha256": record.video_sha256,
        "video_bytes": record.video_bytes,
        "video_width": record.video_width,
        "video_height": record.video_height,
        "video_fps": record.video_fps,
        "video_duration_s": record.video_duration_s,
        "submitted_at": _micros(record.submitted_at),
        "completed_at": _micros(record.completed_at),
        "sandbox": record.sandbox,
    }


def _micros(epoch: float | None) -> int | None:
    return None if epoch is None else int(epoch * 1_000_000)


def ledger_table(records: Sequence[RequestRecord]) -> pa.Table:
    rows = [ledger_row(r) for r in records]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def partition_path(ledger: str | Path, batch: str) -> str:
    """The partition file of `batch` under `ledger` (a path or an fsspec URL)."""
    return f"{absolute(str(ledger))}/batch={batch}/part-0.parquet"


def write_partition(ledger: str | Path, batch: str, table: pa.Table) -> str:
    """Write one batch's partition atomically; returns its path or URL."""
    target = partition_path(ledger, batch)
    if is_local(target):  # streamed to a temporary file: no second copy in memory
        with replacing(local_path(target)) as temporary:
            pq.write_table(table, temporary)
        return target
    sink = pa.BufferOutputStream()  # whole before it leaves: a failure cannot upload half a file
    pq.write_table(table, sink)
    return write_bytes_atomic(target, sink.getvalue().to_pybytes())


def read_partition(path: str | Path) -> pa.Table:
    """A partition file read back, from a path or any fsspec URL."""
    with fsspec.open(str(path), "rb") as f:
        return pq.read_table(f)
