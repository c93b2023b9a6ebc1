"""A query on a SQLite file read straight into Arrow by ADBC's SQLite driver, in a child process.

Reading a million rows through Python's `sqlite3` makes a Python object per value (about 9 s for a
million ledger rows); the driver fills Arrow columns in C (about 4 s). It runs in a child process
because it carries its own copy of SQLite, and two copies of SQLite in one process break each
other's POSIX locks on the same file (https://www.sqlite.org/howtocorrupt.html, 2.2.1): the state
store's own connections in this process use Python's `sqlite3`. Across processes the locks hold, as
between any two SQLite programs. The child streams Arrow IPC on its stdout.

The driver types each column from the values of its first rows (apache/arrow-adbc#581), so a column
that is NULL there and filled further down would fail the read. Queries given here must therefore
start with one row of typed placeholders, `1` in their first column and `0` in every other row;
that row and that column are dropped.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.ipc


def read(
    database: str, query: str, parameters: Sequence[str], schema: pa.Schema, size: int
) -> Iterator[pa.RecordBatch]:
    """The rows of `query` (see above) as record batches of `schema`, about `size` rows each."""
    # Run as a script, by path: it needs nothing from the package, which the child might not find.
    command = [sys.executable, __file__, database, query, str(size), *parameters]
    with tempfile.TemporaryFile() as errors:  # a file: a chatty child cannot fill a pipe and hang
        child = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors
        )
        assert child.stdin and child.stdout
        with contextlib.suppress(ImportError, AttributeError, OSError):  # Linux: a 1 MiB pipe,
            import fcntl  # a fifth faster than the default 64 KiB

            fcntl.fcntl(child.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        try:
            child.stdin.write(schema.serialize().to_pybytes())
            child.stdin.close()
            try:
                with pyarrow.ipc.open_stream(child.stdout) as reader:
                    yield from reader
            except pa.ArrowInvalid:  # no stream, or a broken one: the child's error says why
                child.stdout.close()  # a child still writing gets a broken pipe, not a hang
                if child.wait() == 0:
                    raise
            if child.wait() != 0:
                errors.seek(0)
                lines = errors.read().decode(errors="replace").strip().splitlines()
                why = lines[-1] if lines else f"exit status {child.returncode}"
                raise RuntimeError(f"reading {database} into Arrow failed: {why}")
        finally:
            if child.poll() is None:  # the reader stopped early
                child.kill()
            child.wait()
            child.stdout.close()


def _serve(database: str, query: str, size: int, parameters: Sequence[str]) -> None:
    # The driver manager's own API, not its DB-API module, which imports pandas (half a second).
    import adbc_driver_manager
    import adbc_driver_sqlite

    schema = pyarrow.ipc.read_schema(pa.py_buffer(sys.stdin.buffer.read()))
    with (
        adbc_driver_sqlite.connect(database) as db,
        adbc_driver_manager.AdbcConnection(db) as conn,
        adbc_driver_manager.AdbcStatement(conn) as statement,
    ):
        statement.set_options(**{adbc_driver_sqlite.StatementOptions.BATCH_ROWS.value: str(size)})
        statement.set_sql_query("PRAGMA busy_timeout = 60000")
        statement.execute_update()
        statement.set_sql_query(query)
        if parameters:
            names = [str(n) for n in range(len(parameters))]
            statement.bind(pa.record_batch([pa.array([p]) for p in parameters], names=names))
        stream, _ = statement.execute_query()
        with (
            pa.RecordBatchReader.from_stream(stream) as rows,
            pyarrow.ipc.new_stream(sys.stdout.buffer, schema) as out,
        ):
            first = True
            for part in rows:
                if first:
                    if part.num_rows == 0 or part.column(0)[0].as_py() != 1:
                        raise RuntimeError("the typed placeholder row did not come first")
                    part, first = part.slice(1), False
                columns = [a.cast(f.type) for a, f in zip(part.columns[1:], schema, strict=True)]
                out.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))


if __name__ == "__main__":
    try:
        _serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    except Exception as exc:  # one line, the last on stderr, for the parent's error
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        sys.exit(1)
