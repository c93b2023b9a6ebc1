"""Requests as Arrow record batches, typed as the store declares them: what the ledger is written
from, a chunk at a time, so a ledger of a million rows never holds a million Python records."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from seedance_pipeline.state import postgres_arrow, sqlite_arrow
from seedance_pipeline.state.schema import requests_table


def _arrow_type(column: sa.Column[Any]) -> pa.DataType:
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return pa.bool_()
    if isinstance(kind, sa.Integer):
        return pa.int64()
    if isinstance(kind, sa.Float):
        return pa.float64()
    return pa.string()


# Values whose storage class SQLite reports as each Arrow type.
_PLACEHOLDERS = {pa.bool_(): "0", pa.int64(): "0", pa.float64(): "0.0", pa.string(): "''"}


def stored_arrow(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> pa.RecordBatch:
    """Rows of the requests table (values in the order of `names`) as an Arrow record batch."""
    values = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [
        pa.array(column, _arrow_type(requests_table.c[name]))
        for name, column in zip(names, values, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, names=list(names))


def sqlite_file(engine: Engine) -> str | None:
    """The store's SQLite file, if it is one (not PostgreSQL, not in memory)."""
    database = engine.url.database
    is_file = engine.dialect.name == "sqlite" and database and database != ":memory:"
    return database if is_file else None


def batch_arrow(
    engine: Engine, batch: str, columns: Sequence[str], size: int
) -> Iterator[pa.RecordBatch]:
    """A batch's rows in catalog order, `size` at a time: from a SQLite file or PostgreSQL
    through ADBC, from any other database through SQLAlchemy."""
    database = sqlite_file(engine)
    if database:
        yield from _sqlite_arrow(database, batch, columns, size)
        return
    if engine.dialect.name == "postgresql":
        sql = (
            f"SELECT {', '.join(columns)} FROM {requests_table.name} "
            "WHERE batch = $1 ORDER BY catalog_row"
        )
        yield from postgres_arrow.read(engine.url, sql, [batch], _schema(columns), size)
        return
    c = requests_table.c
    query = (
        sa.select(*(c[name] for name in columns)).where(c.batch == batch).order_by(c.catalog_row)
    )
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=size).execute(query)
        for part in result.partitions():
            yield stored_arrow(columns, part)


def batch_ids(engine: Engine, batch: str) -> set[str]:
    """A batch's request ids; from a SQLite file (in a child process) or PostgreSQL, read into
    Arrow, mostly outside the GIL."""
    if sqlite_file(engine) or engine.dialect.name == "postgresql":
        parts = batch_arrow(engine, batch, ["request_id"], 50_000)
        return {i for part in parts for i in part[0].to_pylist()}
    c = requests_table.c
    with engine.connect() as conn:
        return set(conn.execute(sa.select(c.request_id).where(c.batch == batch)).scalars())


def _sqlite_arrow(
    database: str, batch: str, columns: Sequence[str], size: int
) -> Iterator[pa.RecordBatch]:
    """A batch's rows in catalog order, read by ADBC's SQLite driver in a child process
    (`sqlite_arrow`: about twice as fast as Python rows), behind the typed placeholder row it needs."""
    declared = [requests_table.c[name] for name in columns]
    placeholders = ", ".join(f"{_PLACEHOLDERS[_arrow_type(c)]} AS {c.name}" for c in declared)
    # SQLite runs a UNION ALL's arms in order and keeps the subquery's ORDER BY (SQL does not
    # promise either); the ledger checks the order it gets (`_in_catalog_order`) and fails loudly.
    query = (
        f"SELECT 1, {placeholders} UNION ALL SELECT * FROM "
        f"(SELECT 0, {', '.join(c.name for c in declared)} FROM {requests_table.name} "
        "WHERE batch = ? ORDER BY catalog_row)"
    )
    return sqlite_arrow.read(database, query, [batch], _schema(columns), size)


def _schema(columns: Sequence[str]) -> pa.Schema:
    return pa.schema([(name, _arrow_type(requests_table.c[name])) for name in columns])
