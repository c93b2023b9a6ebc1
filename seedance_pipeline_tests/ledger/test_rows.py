"""The ledger's files: schema, hive partitions, and crash-safe replacement, locally and on S3."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from seedance_pipeline.ledger import rows
from seedance_pipeline.providers import ErrorKind
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.state.store import RequestRecord, StateStore
from seedance_pipeline_tests.conftest import S3
from seedance_pipeline_tests.state.stored import insert_as_is


def record(i: int, status: RequestStatus = RequestStatus.SUCCEEDED) -> RequestRecord:
    return RequestRecord(request_id=f"r{i}", batch="b", catalog_row=i, provider="novita", model="seedance-v1-lite-i2v",
                         request={"prompt": "p", "image": "x.png"}, status=status, cost_usd=0.1, submitted_at=1.7e9,
                         error_message="waiting: daily spend cap" if status == RequestStatus.PENDING else None)  # fmt: skip


def test_pandas_reads_every_batch_with_the_documented_columns(tmp_path: Path) -> None:
    rows.write_partition(
        tmp_path, "alpha", rows.ledger_table([record(1), record(2, RequestStatus.PENDING)])
    )
    rows.write_partition(tmp_path, "beta", rows.ledger_table([record(3)]))
    ledger = pd.read_parquet(tmp_path)
    assert sorted(ledger.columns) == sorted(rows.COLUMNS)
    assert list(ledger["status"]) == ["succeeded", "pending", "succeeded"]
    assert str(ledger["submitted_at"].dtype) == "datetime64[us, UTC]"
    # Defaults of the model fill what the row left to them.
    assert set(ledger["resolution"]) == {"720p"} and set(ledger["duration_s"]) == {5}


def test_a_crash_mid_write_leaves_the_previous_version_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows.write_partition(tmp_path, "alpha", rows.ledger_table([record(1)]))

    real_write = pq.ParquetWriter.write_table

    def crash(writer: pq.ParquetWriter, table: pa.Table, *args: object, **kwargs: object) -> None:
        real_write(writer, table.slice(0, 1))  # part of the rows reached the file...
        raise OSError("disk full")  # ...then the disk filled up

    monkeypatch.setattr(pq.ParquetWriter, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        rows.write_partition(tmp_path, "alpha", rows.ledger_table([record(1), record(2)]))
    monkeypatch.undo()
    ledger = pd.read_parquet(tmp_path)
    assert list(ledger["request_id"]) == ["r1"]
    assert [p.name for p in (tmp_path / "batch=alpha").iterdir()] == ["part-0.parquet"]  # no debris


def test_the_ledger_built_from_the_store_in_chunks_keeps_every_value(
    state_url: str, tmp_path: Path
) -> None:
    store = StateStore(state_url)  # SQLite and PostgreSQL, both read through ADBC
    seeded = RequestRecord(request_id="r9", batch="b", catalog_row=9, provider="modelark",
                           model="seedance-1-0-lite-i2v-250428", status=RequestStatus.IN_FLIGHT, task_id="cgt-9",
                           video_fps=24.0, tokens=40_500, sandbox=True,
                           request={"prompt": 'say "hi"\nthen go', "image": "y.jpg", "seed": 42, "duration": 10,
                                    "camera_fixed": True, "resolution": "1080p", "aspect_ratio": "16:9"})  # fmt: skip
    unknown_model = RequestRecord(request_id="r5", batch="b", catalog_row=5, provider="novita", model="nope",
                                  request={"prompt": "p", "image": "z.png"}, status=RequestStatus.REJECTED,
                                  error_kind=ErrorKind.INVALID_REQUEST, error_message="unknown model")  # fmt: skip
    other_batch = RequestRecord(request_id="x", batch="other", catalog_row=0, provider="novita",
                                model="seedance-v1-lite-i2v", request={"prompt": "p", "image": "x.png"}, status=RequestStatus.PENDING)  # fmt: skip
    insert_as_is(
        store, [record(1), record(2, RequestStatus.PENDING), seeded, unknown_model, other_batch]
    )
    # Chunks of two rows; the first holds only NULLs in columns filled further down (error_kind,
    # video_fps, sandbox), which a reader typing columns from its first rows would get wrong.
    written = rows.write_store_ledger(store, tmp_path / "ledger", "b", chunk_size=2)
    table = rows.read_partition(written)
    assert table.schema == rows.SCHEMA
    ledger = table.to_pylist()
    assert [r["request_id"] for r in ledger] == [
        "r1",
        "r2",
        "r5",
        "r9",
    ]  # catalog order, batch only
    assert (
        ledger
        == rows.ledger_table(
            [record(1), record(2, RequestStatus.PENDING), unknown_model, seeded]
        ).to_pylist()
    )  # the same rows as from records held in memory
    r9 = ledger[3]
    assert (r9["prompt"], r9["seed"], r9["duration_s"], r9["camera_fixed"], r9["resolution"]) == (
        'say "hi"\nthen go', 42, 10, True, "1080p")  # fmt: skip
    assert (r9["status"], r9["task_id"], r9["cost_usd"]) == (
        "pending",
        "cgt-9",
        0.0,
    )  # open: pending
    assert (r9["video_fps"], r9["tokens"], r9["sandbox"]) == (24.0, 40_500, True)
    r5 = ledger[2]
    assert (r5["status"], r5["resolution"], r5["duration_s"]) == ("rejected", None, None)
    assert ledger[0]["submitted_at"].timestamp() == 1.7e9 and ledger[0]["resolution"] == "720p"
    empty = rows.read_partition(rows.write_store_ledger(store, tmp_path / "ledger", "absent"))
    assert empty.num_rows == 0 and empty.schema == rows.SCHEMA


def test_partitions_on_s3_are_read_back_by_pandas_and_pyarrow(s3: S3) -> None:
    ledger = s3.url("seedance", "ledger")
    written = rows.write_partition(ledger, "alpha", rows.ledger_table([record(1), record(2)]))
    rows.write_partition(f"{ledger}/", "beta", rows.ledger_table([record(3)]))
    assert written == f"{ledger}/batch=alpha/part-0.parquet"
    assert rows.read_partition(written).num_rows == 2
    everything = pd.read_parquet(ledger)  # what a user types; credentials from the environment
    assert sorted(everything.columns) == sorted(rows.COLUMNS)
    assert sorted(zip(everything["batch"].astype(str), everything["request_id"], strict=True)) == [
        ("alpha", "r1"), ("alpha", "r2"), ("beta", "r3")]  # fmt: skip


def test_a_crash_mid_write_on_s3_leaves_the_previous_version_and_no_debris(
    s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = s3.url("ledger")
    rows.write_partition(ledger, "alpha", rows.ledger_table([record(1)]))
    real_write = pq.ParquetWriter.write_table

    def crash(writer: pq.ParquetWriter, table: pa.Table, *args: object, **kwargs: object) -> None:
        real_write(writer, table)  # the rows went to the sink...
        raise OSError("killed")  # ...but the writer died before it returned

    with monkeypatch.context() as patched:  # not monkeypatch.undo(): it would drop the S3 env too
        patched.setattr(pq.ParquetWriter, "write_table", crash)
        with pytest.raises(OSError, match="killed"):
            rows.write_partition(ledger, "alpha", rows.ledger_table([record(1), record(2)]))
    assert list(pd.read_parquet(ledger)["request_id"]) == ["r1"]
    fs, _ = fsspec.core.url_to_fs(ledger)
    assert fs.find(s3.bucket) == [f"{s3.bucket}/ledger/batch=alpha/part-0.parquet"]


def test_a_postgresql_store_writes_the_same_ledger_as_a_sqlite_one_through_adbc(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from seedance_pipeline.state import postgres_arrow

    reads: list[str] = []
    real_read = postgres_arrow.read
    monkeypatch.setattr(
        postgres_arrow, "read", lambda *a, **k: reads.append("adbc") or real_read(*a, **k)
    )
    kept = [
        record(i, RequestStatus.PENDING if i % 3 else RequestStatus.SUCCEEDED) for i in range(7)
    ]
    kept[4].request |= {"seed": 2**40, "camera_fixed": False, "prompt": 'é "quoted"\ttab'}
    kept[5].video_fps, kept[5].sandbox, kept[5].tokens = 24.0, False, 40_500
    ledgers = []
    for url in (f"sqlite:///{tmp_path / 'state.db'}", postgres_url):
        store = StateStore(url)
        insert_as_is(store, [RequestRecord(**vars(r)) for r in reversed(kept)])
        written = rows.write_store_ledger(store, tmp_path / url.split(":")[0], "b", chunk_size=3)
        ledgers.append(rows.read_partition(written))
        store.engine.dispose()
    sqlite_ledger, postgres_ledger = ledgers
    assert reads == ["adbc"]  # PostgreSQL was read into Arrow by ADBC, not row by row
    assert postgres_ledger.num_rows == 7 and postgres_ledger.equals(sqlite_ledger)


def test_values_written_into_a_postgresql_arrow_query_arrive_as_they_are(postgres_url: str) -> None:
    from seedance_pipeline.state import postgres_arrow

    tricky = ["it's", "back\\slash \\' $2", "$1", "é"]
    schema = pa.schema([(f"v{n}", pa.string()) for n in range(4)])
    query = "SELECT " + ", ".join(f"${n + 1}::text AS v{n}" for n in range(4))
    (part,) = postgres_arrow.read(sa.make_url(postgres_url), query, tricky, schema, 10)
    assert [part.column(n)[0].as_py() for n in range(4)] == tricky
