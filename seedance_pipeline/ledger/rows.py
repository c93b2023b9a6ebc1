"""The ledger: one row per catalog request, built from the state store, written as Parquet.

`<ledger>/batch=<batch>/part-0.parquet`, hive-partitioned, so `pandas.read_parquet("<ledger>")` reads
every batch. `<ledger>` is `<data dir>/ledger` or any fsspec URL (`s3://bucket/seedance/ledger`).
A partition is replaced atomically, so a crash mid-write leaves the previous version: locally it is
written to a temporary name and renamed over the old one; on an object store it goes up in one PUT.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from seedance_pipeline.providers.facts import load_facts
from seedance_pipeline.state.arrow import stored_arrow
from seedance_pipeline.state.lifecycle import OPEN
from seedance_pipeline.state.store import RequestRecord, StateStore
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
        ("draft", pa.bool_()),
        ("task_id", pa.string()),
        ("draft_task_id", pa.string()),
        ("status", pa.string()),
        ("error_kind", pa.string()),
        ("error_message", pa.string()),
        ("tokens", pa.int64()),
        ("cost_usd_estimated", pa.float64()),
        ("cost_usd", pa.float64()),
        ("cost_anomaly", pa.string()),
        ("video_url", pa.string()),
        ("video_uri", pa.string()),
        ("last_frame_uri", pa.string()),
        ("video_sha256", pa.string()),
        ("video_bytes", pa.int64()),
        ("video_width", pa.int64()),
        ("video_height", pa.int64()),
        ("video_fps", pa.float64()),
        ("video_duration_s", pa.float64()),
        # Video QC (seedance_pipeline.qc): the verdict beside the status, never instead of it.
        ("qc_status", pa.string()),
        ("qc_reasons", pa.string()),
        ("qc_frames", pa.int64()),
        ("qc_audio", pa.bool_()),
        ("qc_black_share", pa.float64()),
        ("qc_motion", pa.float64()),
        ("qc_frozen_share", pa.float64()),
        ("qc_first_psnr", pa.float64()),
        ("qc_first_ssim", pa.float64()),
        ("qc_last_psnr", pa.float64()),
        ("qc_last_ssim", pa.float64()),
        ("submitted_at", pa.timestamp("us", tz="UTC")),
        ("completed_at", pa.timestamp("us", tz="UTC")),
        ("sandbox", pa.bool_()),
        ("attempts", pa.int64()),  # submissions of this request, retries included
        ("total_cost_usd", pa.float64()),  # cost of every attempt; `cost_usd` is the latest's
    ]
)
COLUMNS = ["batch", *SCHEMA.names]


# Ledger columns taken from the stored neutral request (column: request field), parsed by Arrow's
# JSON reader with the ledger's own types.
_FROM_REQUEST = {"prompt": "prompt", "image": "image", "last_image": "last_image",
                 "resolution": "resolution", "aspect_ratio": "aspect_ratio", "duration_s": "duration",
                 "seed": "seed", "camera_fixed": "camera_fixed", "draft": "draft",
                 "draft_task_id": "from_draft"}  # fmt: skip
REQUEST_FIELDS = pa.schema(
    [(field, SCHEMA.field(column).type) for column, field in _FROM_REQUEST.items()]
)
_TIMESTAMPS = ("submitted_at", "completed_at")
# Columns counted over every attempt of a request, from the store's count and cost of the earlier ones.
_OVER_ATTEMPTS = {"attempts": "attempts_before", "total_cost_usd": "cost_usd_before"}
# What the ledger reads from the store: its own columns that are not part of the request, and the
# request itself.
STORED_COLUMNS = [n for n in SCHEMA.names if n not in _FROM_REQUEST and n not in _OVER_ATTEMPTS] + [
    *_OVER_ATTEMPTS.values(),
    "request_json",
]


def ledger_table(records: Sequence[RequestRecord]) -> pa.Table:
    """The ledger rows of records held in memory."""
    rows = [r.to_row() for r in records]
    return ledger_chunk(
        stored_arrow(STORED_COLUMNS, [[r[n] for n in STORED_COLUMNS] for r in rows])
    )


def ledger_chunk(stored: pa.RecordBatch) -> pa.Table:
    """Store columns (`STORED_COLUMNS`) as ledger rows: requested values resolved to the model's
    defaults, open statuses shown as pending, timestamps in UTC."""
    if stored.num_rows == 0:
        return SCHEMA.empty_table()
    request = pa_json.read_json(
        pa.BufferReader(_json_lines(stored.column("request_json"))),
        parse_options=pa_json.ParseOptions(
            explicit_schema=REQUEST_FIELDS, unexpected_field_behavior="ignore"
        ),
    )
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for field in SCHEMA:
        name = field.name
        if name in _FROM_REQUEST:
            columns[name] = request.column(_FROM_REQUEST[name])
        elif name in _OVER_ATTEMPTS:
            continue  # below, from the columns of the latest attempt
        elif name in _TIMESTAMPS:
            micros = pc.trunc(pc.multiply(stored.column(name), 1_000_000))
            columns[name] = micros.cast(pa.int64()).cast(field.type)
        else:
            columns[name] = stored.column(name).cast(field.type)
    defaults = _defaults_by_row(stored.column("provider"), stored.column("model"))
    for name, fallback in defaults.items():
        columns[name] = pc.coalesce(columns[name], fallback)
    status = columns["status"]
    columns["status"] = pc.if_else(pc.is_in(status, pa.array(OPEN)), "pending", status)
    columns["cost_usd"] = pc.fill_null(columns["cost_usd"], 0.0)
    columns["draft"] = pc.fill_null(columns["draft"], False)
    submitted = pc.if_else(pc.is_null(stored.column("submitted_at")), 0, 1).cast(pa.int64())
    before = pc.fill_null(stored.column("attempts_before").cast(pa.int64()), 0)
    columns["attempts"] = pc.add(before, submitted)
    earlier = pc.fill_null(stored.column("cost_usd_before").cast(pa.float64()), 0.0)
    columns["total_cost_usd"] = pc.add(earlier, columns["cost_usd"])
    return pa.table({f.name: columns[f.name] for f in SCHEMA}, schema=SCHEMA)


def _json_lines(values: pa.Array) -> pa.Buffer:
    """String values joined by newlines, without a Python object per value (stored requests are
    JSON written by `json.dumps`, so none holds a raw newline)."""
    whole = pa.ListArray.from_arrays(pa.array([0, len(values)], pa.int32()), values)
    joined: pa.StringScalar = pc.binary_join(whole, "\n")[0]
    return joined.as_buffer()


def _defaults_by_row(providers: pa.Array, models: pa.Array) -> dict[str, pa.Array]:
    """Each row's model defaults for resolution, aspect ratio and duration, looked up once per
    distinct (provider, model)."""
    keys = pc.binary_join_element_wise(providers, models, "\x1f")
    distinct = pc.unique(keys)
    positions = pc.index_in(keys, value_set=distinct)
    looked_up = [_model_defaults(*key.split("\x1f", 1)) for key in distinct.to_pylist()]
    return {
        name: pa.array([d[i] for d in looked_up], SCHEMA.field(name).type).take(positions)
        for i, name in enumerate(("resolution", "aspect_ratio", "duration_s"))
    }


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
    """Write one batch's partition atomically from a table in memory; returns its path or URL."""
    return _write_chunks(ledger, batch, [table])


def write_store_ledger(
    store: StateStore, ledger: str | Path, batch: str, chunk_size: int = 50_000
) -> str:
    """Write the batch's partition from the store, a chunk at a time: each chunk of rows is read
    into Arrow, turned into ledger columns and written while the next is read, so the write holds
    a few chunks, not the table (a million rows in about 6 s from SQLite; BENCHMARKS.md). Returns
    its path or URL."""
    # Closed when the write fails too: on SQLite that stops the reading process at once, instead
    # of leaving it blocked on a full pipe, holding its read snapshot, until garbage collection.
    with contextlib.closing(store.batch_arrow(batch, STORED_COLUMNS, chunk_size)) as parts:
        chunks = (ledger_chunk(part) for part in parts)
        return _write_chunks(ledger, batch, _in_catalog_order(chunks))


def _in_catalog_order(chunks: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """The chunks, checked to come in catalog order (as the store's query asks)."""
    last = None
    for chunk in chunks:
        order = chunk.column("catalog_row").combine_chunks()
        if len(order):
            ascending = len(order) == 1 or pc.all(pc.less_equal(order[:-1], order[1:])).as_py()
            if not ascending or (last is not None and order[0].as_py() < last):
                raise RuntimeError("the state store returned a batch's rows out of catalog order")
            last = order[-1].as_py()
        yield chunk


def _write_chunks(ledger: str | Path, batch: str, chunks: Iterable[pa.Table]) -> str:
    """Write a partition atomically: locally to a temporary file renamed over the old one; to an
    object store whole, in one PUT, so a failure cannot upload half a file."""
    target = partition_path(ledger, batch)
    if is_local(target):
        with replacing(local_path(target)) as temporary:
            _write_parquet(str(temporary), chunks)
        return target
    sink = pa.BufferOutputStream()
    _write_parquet(sink, chunks)
    return write_bytes_atomic(target, sink.getvalue().to_pybytes())


def _write_parquet(where: str | pa.NativeFile, chunks: Iterable[pa.Table]) -> None:
    with pq.ParquetWriter(where, SCHEMA) as writer:
        for chunk in chunks:
            writer.write_table(chunk)


def read_partition(path: str | Path) -> pa.Table:
    """A partition file read back, from a path or any fsspec URL."""
    with fsspec.open(str(path), "rb") as f:
        return pq.read_table(f)
