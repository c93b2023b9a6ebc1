"""A query on a PostgreSQL store read straight into Arrow by ADBC's PostgreSQL driver (binary
COPY, columns filled in C): a million ledger rows through SQLAlchemy make 26 million Python
objects first. Unlike SQLite's driver it runs in this process: the server holds the locks."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from urllib.parse import quote

import pyarrow as pa
import sqlalchemy as sa


def read(
    url: sa.URL, query: str, parameters: Sequence[str], schema: pa.Schema, size: int
) -> Iterator[pa.RecordBatch]:
    """The rows of `query` (parameters `$1`, `$2`… given as text) as record batches of `schema`
    (the driver's types cast to it), at most `size` rows each.

    The parameters are written into the query as quoted literals, not bound: the driver streams a
    query without parameters by COPY, a batch at a time, but runs one with bound parameters as a
    prepared statement whose whole result libpq holds (a million ledger rows: 2.6 GiB)."""
    import adbc_driver_manager
    import adbc_driver_postgresql

    # libpq's URL: the same server, user and options, without SQLAlchemy's `+psycopg`.
    uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with (
            adbc_driver_postgresql.connect(uri) as db,
            adbc_driver_manager.AdbcConnection(db) as conn,
            adbc_driver_manager.AdbcStatement(conn) as statement,
        ):
            # One pass: a `$n` inside a value written in is not a placeholder.
            literals = [_literal(value) for value in parameters]
            statement.set_sql_query(re.sub(r"\$(\d+)", lambda m: literals[int(m[1]) - 1], query))
            stream, _ = statement.execute_query()
            with pa.RecordBatchReader.from_stream(stream) as rows:
                for part in rows:
                    columns = [a.cast(f.type) for a, f in zip(part.columns, schema, strict=True)]
                    typed = pa.RecordBatch.from_arrays(columns, schema=schema)
                    for start in range(0, typed.num_rows, size):
                        yield typed.slice(start, size)
    except adbc_driver_manager.Error as exc:  # its text may quote the URL: the password is cut out
        why = str(exc)
        for secret in {url.password, quote(str(url.password), safe="")} - {None, "", "None"}:
            why = why.replace(str(secret), "***")
        raise RuntimeError(f"reading the PostgreSQL store into Arrow failed: {why}") from None


def _literal(value: str) -> str:
    """An escape-string literal (`E'…'`: backslashes mean the same whatever the server's
    standard_conforming_strings), quotes and backslashes doubled; a NUL, which text cannot hold,
    refused."""
    if "\x00" in value:
        raise ValueError("a NUL character cannot be part of a PostgreSQL text value")
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
