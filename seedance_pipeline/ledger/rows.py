"""The ledger: one row per catalog request, built from the state store, written as Parquet.

`<ledger>/batch=<batch>/part-0.parquet`, hive-partitioned, so `pandas.read_parquet("<ledger>")` reads
every batch. `<ledger>` is `<data dir>/ledger` or any fsspec URL (`s3://bucket/seedance/ledger`).
A partition is replaced atomically, so a crash mid-write leaves the previous version: locally it is
written to a temporary name and renamed over the old one; on an object store it goes up in one PUT.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from seedance_pipeline.providers.facts import load_facts
from seedance_pipeline.state.store import OPEN, RequestRecord, StateStore
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


# Ledger columns taken from the stored neutral request (column: request field), parsed by Arrow's
# JSON reader with the ledger's own types.
_FROM_REQUEST = {"prompt": "prompt", "image": "image", "last_image": "last_image",
                 "resolution": "resolution", "aspect_ratio": "aspect_ratio", "duration_s": "duration",
                 "seed": "seed", "camera_fixed": "camera_fixed"}  # fmt: skip
REQUEST_FIELDS = pa.schema(
    [(field, SCHEMA.field(column).type) for column, field in _FROM_REQUEST.items()]
)
_TIMESTAMPS = ("submitted_at", "completed_at")
# What the ledger reads from the store: its own columns that are not part of the request, and the
# request itself.
STORED_COLUMNS = [n for n in SCHEMA.names if n not in _FROM_REQUEST] + ["request_json"]


def ledger_table(records: Sequence[RequestRecord]) -> pa.Table:
    """The ledger rows of records held in memory."""
    if not records:
        return SCHEMA.empty_table()
    rows = [r.to_row() for r in records]
    return ledger_chunk(list(rows[0]), [tuple(row.values()) for row in rows])


def store_ledger_table(store: StateStore, batch: str, chunk_size: int = 50_000) -> pa.Table:
    """The batch's ledger, built column by column from the store's rows a chunk at a time (no
    per-row Python objects beyond one chunk): a million rows peak at about 1.3 GiB (BENCHMARKS.md)."""
    chunks = [
        ledger_chunk(names, rows)
        for names, rows in store.batch_row_chunks(batch, STORED_COLUMNS, chunk_size)
    ]
    return pa.concat_tables(chunks) if chunks else SCHEMA.empty_table()


def ledger_chunk(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Store rows (in the order of `names`) as ledger rows: requested values resolved to the
    model's defaults, open statuses shown as pending, timestamps in UTC."""
    if not rows:
        return SCHEMA.empty_table()
    stored = dict(zip(names, zip(*rows, strict=True), strict=True))
    request = pa_json.read_json(
        io.BytesIO("\n".join(stored["request_json"]).encode()),
        parse_options=pa_json.ParseOptions(
            explicit_schema=REQUEST_FIELDS, unexpected_field_behavior="ignore"
        ),
    )
    defaults = [
        _model_defaults(p, m) for p, m in zip(stored["provider"], stored["model"], strict=True)
    ]
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for field in SCHEMA:
        name = field.name
        if name in _FROM_REQUEST:
            columns[name] = request.column(_FROM_REQUEST[name])
        elif name in _TIMESTAMPS:
            micros = pc.trunc(pc.multiply(pa.array(stored[name], pa.float64()), 1_000_000))
            columns[name] = micros.cast(pa.int64()).cast(field.type)
        else:
            columns[name] = pa.array(stored[name], field.type)
    for position, name in enumerate(("resolution", "aspect_ratio", "duration_s")):
        fallback = pa.array([d[position] for d in defaults], SCHEMA.field(name).type)
        columns[name] = pc.coalesce(columns[name], fallback)
    status = columns["status"]
    columns["status"] = pc.if_else(pc.is_in(status, pa.array(OPEN)), "pending", status)
    columns["cost_usd"] = pc.fill_null(columns["cost_usd"], 0.0)
    return pa.table(columns, schema=SCHEMA)


@functools.cache
def _model_defaults(provider: str, model: str) -> tuple[str | None, str | None, int | None]:
    facts = load_facts().providers
    spec = facts[provider].models.get(model) if provider in facts else None
    if spec is None:
        return None, None, None
    return spec.default_resolution, spec.default_aspect_ratio, spec.default_duration


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
