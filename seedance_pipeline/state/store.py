"""The durable state store: one record per request, and every transition it went through.

Why it exists: provider tasks outlive Dagster runs. The record is written *before* each provider call
(`pending → submitting`) and after each answer, so a crashed run never loses a task id and no rerun,
retry or backfill submits a request twice. A record left in `submitting` by a process that died
mid-call is flagged `unknown`, never resubmitted silently.

Every status change is a compare-and-set (`UPDATE ... WHERE status = :expected`) in one transaction
with its transition row, so concurrent runs and sensors cannot both move the same request. Claims
of provider capacity serialise on a per-provider lock row, which holds on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from seedance_pipeline.state import sqlite_arrow

# Statuses a request record can have. Terminal ones never change again.
PENDING = "pending"  # valid, not yet sent
SUBMITTING = "submitting"  # intent recorded; the create call is under way
IN_FLIGHT = "in_flight"  # the provider has a task id for it
FETCHING = "fetching"  # the provider says succeeded; our copy of the video is not made yet
SUCCEEDED = "succeeded"
FAILED = "failed"
REJECTED = "rejected"  # refused by validation, never sent
EXPIRED = "expired"
CANCELLED = "cancelled"
UNKNOWN = "unknown"  # the create call's outcome is unknown: an operator must decide

OPEN = (PENDING, SUBMITTING, IN_FLIGHT, FETCHING)
ACTIVE = (SUBMITTING, IN_FLIGHT, FETCHING)  # not finished on our side
# What counts against a provider's limit of tasks in flight: a task it reports succeeded (fetching:
# our copy of the video is under way) no longer holds one of its slots, so the slot is refilled
# without waiting for the download.
AT_PROVIDER = (SUBMITTING, IN_FLIGHT)
TERMINAL = (SUCCEEDED, FAILED, REJECTED, EXPIRED, CANCELLED, UNKNOWN)
SETTLED = (SUCCEEDED, FAILED, REJECTED, EXPIRED, CANCELLED)  # their cost is known
RESERVED = (*ACTIVE, UNKNOWN)  # their estimate counts against budgets

NO_LONGER_PENDING = "no longer pending"  # a claim that lost a race: not a reason to wait
BUDGET_LOCK = "__budgets__"  # lock row taken by every claim that checks a spend cap
SCHEMA_LOCK_KEY = 0x5EEDA9CE  # PostgreSQL advisory lock held while the schema is created

metadata = sa.MetaData()

# Catalog text (batch, image id, provider and model as written, even in rejected rows), task and run
# ids are Text: PostgreSQL enforces VARCHAR lengths where SQLite ignores them.
requests_table = sa.Table(
    "requests",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("batch", sa.Text, nullable=False, index=True),
    sa.Column("catalog_row", sa.Integer, nullable=False),
    sa.Column("image_id", sa.Text),
    sa.Column("provider", sa.Text, nullable=False, index=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("request_json", sa.Text, nullable=False),
    sa.Column("image_sha256", sa.String(64)),
    sa.Column("image_width", sa.Integer),
    sa.Column("image_height", sa.Integer),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("task_id", sa.Text),
    sa.Column("error_kind", sa.String(50)),
    sa.Column("error_message", sa.Text),
    sa.Column("seed_used", sa.BigInteger),
    sa.Column("tokens", sa.BigInteger),
    sa.Column("cost_usd_estimated", sa.Float, nullable=False, default=0.0),
    sa.Column("cost_usd", sa.Float),
    sa.Column("video_url", sa.Text),
    sa.Column("video_uri", sa.Text),
    sa.Column("last_frame_uri", sa.Text),  # the provider's last frame, kept where it was asked for
    sa.Column("video_sha256", sa.String(64)),
    sa.Column("video_bytes", sa.BigInteger),
    sa.Column("video_width", sa.Integer),
    sa.Column("video_height", sa.Integer),
    sa.Column("video_fps", sa.Float),
    sa.Column("video_duration_s", sa.Float),
    sa.Column("submitted_at", sa.Float),  # when the request was claimed for submission
    sa.Column("sent_at", sa.Float),  # when the create call whose outcome is unknown was sent
    sa.Column("completed_at", sa.Float),
    sa.Column("sandbox", sa.Boolean),
    sa.Column("run_id", sa.Text),  # the Dagster run (or headless run) that submitted it
    sa.Column("polled_at", sa.Float, nullable=False, default=0.0),
    sa.Column("updated_at", sa.Float, nullable=False),
)

sa.Index("requests_provider_status", requests_table.c.provider, requests_table.c.status)
sa.Index("requests_batch_row", requests_table.c.batch, requests_table.c.catalog_row)  # ledger order

transitions_table = sa.Table(
    "transitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("from_status", sa.String(20)),
    sa.Column("to_status", sa.String(20), nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("detail", sa.Text),
)

provider_locks_table = sa.Table(
    "provider_locks",
    metadata,
    sa.Column("provider", sa.String(50), primary_key=True),
    sa.Column("claims", sa.BigInteger, nullable=False, default=0),
    # Adaptive limit of tasks in flight: halved on a 429, raised by one per accepted task, never
    # above the configured limit. None means "the configured limit".
    sa.Column("current_limit", sa.Integer),
)


@dataclass(frozen=True)
class SpendCap:
    """A budget: money committed (actual cost of finished requests plus the reservation of those in
    flight) within its scope may not exceed `limit_usd`."""

    label: str  # "daily", "batch", "run"
    limit_usd: float
    since: float | None = None
    batch: str | None = None
    run_id: str | None = None


@dataclass
class RequestRecord:
    """One row of `requests`; `request` is the provider-neutral request as a dict."""

    request_id: str
    batch: str
    catalog_row: int
    provider: str
    model: str
    request: dict[str, Any]
    status: str
    image_id: str | None = None
    image_sha256: str | None = None
    image_width: int | None = None
    image_height: int | None = None
    task_id: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    seed_used: int | None = None
    tokens: int | None = None
    cost_usd_estimated: float = 0.0
    cost_usd: float | None = None
    video_url: str | None = None
    video_uri: str | None = None
    last_frame_uri: str | None = None
    video_sha256: str | None = None
    video_bytes: int | None = None
    video_width: int | None = None
    video_height: int | None = None
    video_fps: float | None = None
    video_duration_s: float | None = None
    submitted_at: float | None = None
    sent_at: float | None = None
    completed_at: float | None = None
    sandbox: bool | None = None
    run_id: str | None = None
    polled_at: float = 0.0
    updated_at: float = field(default_factory=time.time)

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> RequestRecord:
        values = dict(row._mapping)
        values["request"] = json.loads(values.pop("request_json"))
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["request_json"] = json.dumps(values.pop("request"), sort_keys=True)
        return values


_UPDATABLE = {c.name for c in requests_table.columns} - {"request_id", "request_json"}

# Statements run once or twice per submission are built once, with bound parameters: building a
# statement in SQLAlchemy costs as much as running it on SQLite (BENCHMARKS.md, submission).
_R, _L = requests_table.c, provider_locks_table.c
_AT_PROVIDER_COUNT = sa.select(sa.func.count()).where(
    _R.provider == sa.bindparam("provider"), _R.status.in_(AT_PROVIDER)
)
_STATUS = sa.select(_R.status).where(_R.request_id == sa.bindparam("request_id"))
_LOCK = (
    sa.update(provider_locks_table)
    .where(_L.provider == sa.bindparam("lock_provider"))
    .values(claims=_L.claims + 1)
)
_LOCK_RETURNING_LIMIT = _LOCK.returning(_L.current_limit)
_LIMIT = sa.select(_L.current_limit).where(_L.provider == sa.bindparam("lock_provider"))
_ADD_TRANSITION = sa.insert(transitions_table)


@functools.cache
def _compare_and_set(columns: tuple[str, ...]) -> sa.Update:
    """`UPDATE requests SET <columns> WHERE request_id = :key_id AND status = :key_status`, built
    once per set of columns; the new values are bound as `new_<column>`."""
    return (
        sa.update(requests_table)
        .where(_R.request_id == sa.bindparam("key_id"), _R.status == sa.bindparam("key_status"))
        .values({name: sa.bindparam(f"new_{name}", type_=_R[name].type) for name in columns})
    )


def default_state_url(data_dir: str | Path) -> str:
    path = Path(data_dir).resolve() / "state.sqlite"
    return f"sqlite:///{path}"


def shown_url(url: str) -> str:
    """A state URL as logs and errors may show it: password hidden. A URL whose password was not
    URL-quoted is refused without being echoed, since part of the password would show as its host
    or port (`user:p@ss@host` parses as host `ss@host`)."""
    refusal = ("the state store URL cannot be parsed; URL-quote special characters in its password "
               "(urllib.parse.quote_plus)")  # fmt: skip
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise ValueError(refusal) from None
    if "@" in (parsed.host or ""):
        raise ValueError(refusal)
    return parsed.render_as_string(hide_password=True)


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
    schema = pa.schema([(c.name, _arrow_type(c)) for c in declared])
    return sqlite_arrow.read(database, query, [batch], schema, size)


class StateStore:
    """SQLAlchemy-backed; SQLite under the data directory by default, any SQLAlchemy URL otherwise."""

    def __init__(self, url: str) -> None:
        self.url = shown_url(url)  # never the password
        is_sqlite = url.startswith("sqlite")
        if is_sqlite and ":memory:" not in url:
            Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = sa.create_engine(
            url,
            future=True,
            connect_args={"timeout": 60} if is_sqlite else {},
            pool_pre_ping=not is_sqlite,
            # The lock rows rely on each statement seeing what was committed before the lock was
            # granted, whatever the server's default (REPEATABLE READ would fail such claims).
            **({} if is_sqlite else {"isolation_level": "READ COMMITTED"}),
        )
        if is_sqlite:
            # WAL lets the sensor read while a run writes; each write is one short transaction.
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

        with self._schema_lock():
            metadata.create_all(self.engine)
            self._add_missing_columns()
            self._ensure_lock_rows()

    @contextmanager
    def _schema_lock(self) -> Iterator[None]:
        """Every machine's first run creates (or upgrades) the schema; on PostgreSQL, concurrent
        CREATE TABLEs collide in its catalog, so they take turns under an advisory lock."""
        if self.engine.dialect.name != "postgresql":
            yield
            return
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
                conn.commit()

    def _add_missing_columns(self) -> None:
        """Columns added since a store was created are added in place (all are nullable), so an
        older state file keeps its task ids readable after an upgrade. On PostgreSQL, columns
        that older versions made VARCHAR(n) and are now Text are widened (no rewrite of the
        table): PostgreSQL enforces the length, and long catalog values would fail."""
        inspector = sa.inspect(self.engine)
        widen = self.engine.dialect.name == "postgresql"
        with self._tx() as conn:
            for table in metadata.sorted_tables:
                present = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
                for column in table.columns:
                    kind = column.type.compile(dialect=self.engine.dialect)
                    found = present.get(column.name)
                    if found is None:
                        conn.execute(
                            sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                        )
                    elif (
                        widen
                        and isinstance(column.type, sa.Text)
                        and not isinstance(found, sa.Text)
                    ):
                        conn.execute(sa.text(
                            f'ALTER TABLE {table.name} ALTER COLUMN "{column.name}" TYPE {kind}'
                        ))  # fmt: skip
                for index in table.indexes:  # indexes added since, too (create_all skips them)
                    index.create(conn, checkfirst=True)

    def _ensure_lock_rows(self) -> None:
        """One lock row per provider, and one for budgets, made up front so that concurrent first
        claims never race on inserting them."""
        from seedance_pipeline.providers.facts import load_facts

        names = [*load_facts().providers, BUDGET_LOCK]
        with self._tx() as conn:
            present = {p for (p,) in conn.execute(sa.select(provider_locks_table.c.provider))}
            for name in names:
                if name not in present:
                    try:
                        with conn.begin_nested():
                            conn.execute(
                                sa.insert(provider_locks_table).values(provider=name, claims=0)
                            )
                    except sa.exc.IntegrityError:
                        pass  # another process made it first

    def __repr__(self) -> str:
        return f"StateStore({self.url})"

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- writing ---------------------------------------------------------------------------------

    def add_new(self, records: Iterable[RequestRecord]) -> int:
        """Insert records whose request id is not known yet; known ones are left as they are, so
        re-reading the catalog never resets a request's progress. Returns how many were new."""
        records = list(records)
        if not records:
            return 0
        now = time.time()
        ids = [rec.request_id for rec in records]
        with self._tx() as conn:
            known: set[str] = set()
            for start in range(
                0, len(ids), 10_000
            ):  # drivers cap bound parameters (psycopg: 65,535)
                known.update(conn.execute(sa.select(requests_table.c.request_id).where(
                    requests_table.c.request_id.in_(ids[start:start + 10_000])
                )).scalars())  # fmt: skip
            # One record per id (the first), in id order: concurrent runs then take PostgreSQL's
            # row locks in the same order and cannot deadlock.
            firsts = {
                rec.request_id: rec for rec in reversed(records) if rec.request_id not in known
            }
            fresh = sorted(firsts.values(), key=lambda rec: rec.request_id)
            for rec in fresh:
                rec.updated_at = now
            if fresh:
                inserted = self._insert_unless_known(conn, [rec.to_row() for rec in fresh])
                fresh = [rec for rec in fresh if rec.request_id in inserted]
            if fresh:
                conn.execute(
                    sa.insert(transitions_table),
                    [{"request_id": r.request_id, "from_status": None, "to_status": r.status, "at": now,
                      "detail": r.error_message} for r in fresh],
                )  # fmt: skip
        return len(fresh)

    def _insert_unless_known(self, conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
        """Insert request rows, skipping any that another process inserted since they were looked
        up (two catalog runs at once); returns the request ids inserted here."""
        key = [requests_table.c.request_id]
        statement: sa.Insert
        if self.engine.dialect.name == "sqlite":
            statement = sqlite.insert(requests_table).on_conflict_do_nothing(index_elements=key)
        elif self.engine.dialect.name == "postgresql":
            statement = postgresql.insert(requests_table).on_conflict_do_nothing(index_elements=key)
        else:  # other databases: a duplicate fails the run instead
            conn.execute(sa.insert(requests_table), rows)
            return {row["request_id"] for row in rows}
        if not self.engine.dialect.insert_executemany_returning:  # SQLite before 3.35: row by row
            return {row["request_id"] for row in rows if conn.execute(statement, row).rowcount}
        return set(conn.execute(statement.returning(*key), rows).scalars())

    def transition(
        self,
        request_id: str,
        expected: str | Sequence[str],
        to: str,
        detail: str | None = None,
        **values: Any,
    ) -> bool:
        """Move a request from one of `expected` to `to`, setting `values`, atomically with its
        transition row. False (and nothing written) when the request was not in `expected`."""
        with self._tx() as conn:
            return self._transition(conn, request_id, expected, to, detail, **values)

    def _transition(
        self,
        conn: Connection,
        request_id: str,
        expected: str | Sequence[str],
        to: str,
        detail: str | None = None,
        **values: Any,
    ) -> bool:
        unknown = set(values) - (_UPDATABLE - {"status", "updated_at"})
        assert not unknown, f"not columns this may set: {unknown}"
        expected = (expected,) if isinstance(expected, str) else tuple(expected)
        now = time.time()
        if len(expected) == 1:  # the compare-and-set below tells whether it was there
            current: str | None = expected[0]
        else:
            current = conn.execute(_STATUS, {"request_id": request_id}).scalar_one_or_none()
            if current not in expected:
                return False
        values = {"status": to, "updated_at": now, **values}
        result = conn.execute(
            _compare_and_set(tuple(sorted(values))),
            {"key_id": request_id, "key_status": current}
            | {f"new_{name}": value for name, value in values.items()},
        )
        if result.rowcount != 1:
            return False
        conn.execute(_ADD_TRANSITION, {"request_id": request_id, "from_status": current,
                                       "to_status": to, "at": now, "detail": detail})  # fmt: skip
        return True

    def claim(
        self,
        request_id: str,
        provider: str,
        max_in_flight: int,
        reservation_usd: float,
        sandbox: bool,
        caps: Sequence[SpendCap] = (),
        run_id: str | None = None,
    ) -> str | None:
        """Reserve a slot and budget for one submission: `pending → submitting`, written before the
        provider is called. Returns None on success, else why the request must wait."""
        with self._tx() as conn:
            limit = min(max_in_flight, self._lock_provider(conn, provider) or max_in_flight)
            active = conn.execute(_AT_PROVIDER_COUNT, {"provider": provider}).scalar_one()
            if active >= limit:
                return f"{provider} has {active} tasks in flight (limit {limit})"
            if caps:
                self._lock_provider(conn, BUDGET_LOCK)  # caps span providers: one claim at a time
            for cap in caps:
                spent = self._spend(conn, cap)
                if spent + reservation_usd > cap.limit_usd + 1e-9:
                    return (
                        f"{cap.label} spend cap ${cap.limit_usd:.2f} would be exceeded "
                        f"(committed ${spent:.4f} + this request ${reservation_usd:.4f})"
                    )
            moved = self._transition(
                conn,
                request_id,
                PENDING,
                SUBMITTING,
                "claimed",
                submitted_at=time.time(),
                sandbox=sandbox,
                error_message=None,
                run_id=run_id,
            )
            return None if moved else NO_LONGER_PENDING

    def _lock_provider(self, conn: Connection, provider: str) -> int | None:
        """Serialise work on this provider across processes (a write to its lock row, which holds
        a row lock on PostgreSQL and the write lock on SQLite); returns its adaptive limit."""
        key = {"lock_provider": provider}
        if self.engine.dialect.update_returning:  # one statement (SQLite >= 3.35, PostgreSQL)
            row = conn.execute(_LOCK_RETURNING_LIMIT, key).one_or_none()
            if row is not None:
                return row[0]
        elif conn.execute(_LOCK, key).rowcount:
            return conn.execute(_LIMIT, key).scalar_one()
        conn.execute(sa.insert(provider_locks_table).values(provider=provider, claims=1))
        return None

    def note_rate_limited(self, provider: str, configured: int) -> int:
        """A 429: halve the provider's limit of tasks in flight (multiplicative decrease)."""
        with self._tx() as conn:
            current = min(configured, self._lock_provider(conn, provider) or configured)
            lowered = max(1, current // 2)
            self._set_limit(conn, provider, lowered)
            return lowered

    def note_accepted(self, provider: str, configured: int) -> int:
        """An accepted task: raise the limit by one, back toward the configured one (no write at
        all in the common case, where the limit was never lowered)."""
        if self.current_limit(provider, configured) >= configured:
            return configured
        with self._tx() as conn:
            current = self._lock_provider(conn, provider)
            if current is None or current >= configured:
                self._set_limit(conn, provider, None)
                return configured
            self._set_limit(conn, provider, current + 1)
            return current + 1

    def _set_limit(self, conn: Connection, provider: str, limit: int | None) -> None:
        conn.execute(
            sa.update(provider_locks_table)
            .where(provider_locks_table.c.provider == provider)
            .values(current_limit=limit)
        )

    def current_limit(self, provider: str, configured: int) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(provider_locks_table.c.current_limit).where(
                    provider_locks_table.c.provider == provider
                )
            ).scalar_one_or_none()
        return min(configured, value or configured)

    def note_wait(self, provider: str, batch: str | None, reason: str) -> int:
        """Why the provider's pending requests (of `batch`, or all) were not sent this time, shown
        in the ledger until they are sent; one statement. Returns how many wait."""
        c = requests_table.c
        scope = [c.provider == provider, c.status == PENDING]
        if batch is not None:
            scope.append(c.batch == batch)
        message = f"waiting: {reason}"
        with self._tx() as conn:
            conn.execute(
                sa.update(requests_table)
                .where(*scope, sa.or_(c.error_message.is_(None), c.error_message != message))
                .values(error_message=message)
            )
            return int(conn.execute(sa.select(sa.func.count()).where(*scope)).scalar_one())

    # -- reading ---------------------------------------------------------------------------------

    def _spend(self, conn: Connection, cap: SpendCap) -> float:
        """Money committed within a cap's scope: actual cost of finished requests plus the estimate
        of every request still in flight (reserved until it ends)."""
        c = requests_table.c
        scope: list[sa.ColumnElement[bool]] = [c.submitted_at.is_not(None)]
        if cap.since is not None:
            scope.append(c.submitted_at >= cap.since)
        if cap.batch is not None:
            scope.append(c.batch == cap.batch)
        if cap.run_id is not None:
            scope.append(c.run_id == cap.run_id)
        finished = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(c.cost_usd), 0.0)).where(
                c.status.in_(SETTLED), *scope
            )
        ).scalar_one()
        # In flight, or an unknown outcome (a task may exist and bill): the estimate stays reserved.
        reserved = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(c.cost_usd_estimated), 0.0)).where(
                c.status.in_(RESERVED), *scope
            )
        ).scalar_one()
        return float(finished) + float(reserved)

    def spend(
        self, since: float = 0.0, batch: str | None = None, run_id: str | None = None
    ) -> float:
        with self.engine.connect() as conn:
            return self._spend(conn, SpendCap("", 0.0, since=since, batch=batch, run_id=run_id))

    def get(self, request_id: str) -> RequestRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(requests_table).where(requests_table.c.request_id == request_id)
            ).one_or_none()
        return RequestRecord.from_row(row) if row is not None else None

    def records(
        self,
        *,
        batch: str | None = None,
        provider: str | None = None,
        statuses: Sequence[str] | None = None,
        order_by_poll: bool = False,
        limit: int | None = None,
    ) -> list[RequestRecord]:
        c = requests_table.c
        query = sa.select(requests_table)
        if batch is not None:
            query = query.where(c.batch == batch)
        if provider is not None:
            query = query.where(c.provider == provider)
        if statuses is not None:
            query = query.where(c.status.in_(statuses))
        query = (
            query.order_by(c.polled_at, c.request_id)
            if order_by_poll
            else query.order_by(c.catalog_row)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [RequestRecord.from_row(row) for row in conn.execute(query)]

    def batch_arrow(
        self, batch: str, columns: Sequence[str], size: int = 50_000
    ) -> Generator[pa.RecordBatch, None, None]:
        """A batch's rows in catalog order as Arrow record batches of `columns` (typed as the store
        declares them), `size` rows at a time: a ledger of a million rows never holds a million
        Python records at once."""
        database = self._sqlite_file()
        if database:
            yield from _sqlite_arrow(database, batch, columns, size)
            return
        c = requests_table.c
        query = (
            sa.select(*(c[name] for name in columns))
            .where(c.batch == batch)
            .order_by(c.catalog_row)
        )
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=size).execute(query)
            for part in result.partitions():
                yield stored_arrow(columns, part)

    def _sqlite_file(self) -> str | None:
        database = self.engine.url.database
        is_file = self.engine.dialect.name == "sqlite" and database and database != ":memory:"
        return database if is_file else None

    def batch_totals(self, batch: str) -> tuple[set[str], float]:
        """The batch's request ids and its actual cost, by queries of their own (what the ledger
        written from the store is checked against)."""
        c = requests_table.c
        if self._sqlite_file():  # read into Arrow in a child process, mostly outside the GIL
            parts = self.batch_arrow(batch, ["request_id"])
            ids = {i for part in parts for i in part[0].to_pylist()}
        else:
            with self.engine.connect() as conn:
                ids = set(conn.execute(sa.select(c.request_id).where(c.batch == batch)).scalars())
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(c.cost_usd), 0.0)).where(c.batch == batch)
            ).scalar_one()
        return ids, float(total)

    def counts(self, batch: str | None = None) -> dict[str, int]:
        c = requests_table.c
        query = sa.select(c.status, sa.func.count()).group_by(c.status)
        if batch is not None:
            query = query.where(c.batch == batch)
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(query)}

    def batches(self) -> list[str]:
        with self.engine.connect() as conn:
            return [
                b
                for (b,) in conn.execute(
                    sa.select(requests_table.c.batch).distinct().order_by(requests_table.c.batch)
                )
            ]

    def open_batches(self) -> dict[str, dict[str, int]]:
        """Per batch, counts of the requests that are not finished yet."""
        c = requests_table.c
        query = (
            sa.select(c.batch, c.status, sa.func.count())
            .where(c.status.in_(OPEN))
            .group_by(c.batch, c.status)
        )
        result: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for batch, status, n in conn.execute(query):
                result.setdefault(batch, {})[status] = int(n)
        return result

    def active_by_provider(self) -> dict[str, int]:
        """Tasks in flight per provider (what counts against each provider's limit)."""
        c = requests_table.c
        query = (
            sa.select(c.provider, sa.func.count())
            .where(c.status.in_(AT_PROVIDER))
            .group_by(c.provider)
        )
        with self.engine.connect() as conn:
            return {provider: int(n) for provider, n in conn.execute(query)}

    def pending_batches_by_provider(self) -> dict[str, set[str]]:
        c = requests_table.c
        query = sa.select(c.provider, c.batch).where(c.status == PENDING).distinct()
        result: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for provider, batch in conn.execute(query):
                result.setdefault(provider, set()).add(batch)
        return result

    def batch_fingerprints(self) -> dict[str, str]:
        """Per batch, a value that changes whenever any of its requests changes (one aggregate
        query, so a sensor tick does not read every record)."""
        c = requests_table.c
        query = sa.select(c.batch, sa.func.count(), sa.func.max(c.updated_at)).group_by(c.batch)
        with self.engine.connect() as conn:
            return {batch: f"{n}-{latest:.6f}" for batch, n, latest in conn.execute(query)}

    def submitted_between(self, since: float, until: float) -> int:
        """Requests claimed for submission in [since, until): what went out between two sensor
        ticks, counted once."""
        c = requests_table.c
        query = sa.select(sa.func.count()).where(c.submitted_at >= since, c.submitted_at < until)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def mark_polled(self, request_ids: Sequence[str]) -> None:
        if not request_ids:
            return
        now = time.time()
        with self._tx() as conn:
            for start in range(0, len(request_ids), 10_000):  # drivers cap bound parameters
                conn.execute(
                    sa.update(requests_table)
                    .where(requests_table.c.request_id.in_(request_ids[start:start + 10_000]))
                    .values(polled_at=now)
                )  # fmt: skip

    def transitions(self, request_id: str) -> list[tuple[str | None, str, str | None]]:
        t = transitions_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.from_status, t.to_status, t.detail)
                .where(t.request_id == request_id)
                .order_by(t.id)
            )
            return [(a, b, d) for a, b, d in rows]

    def flag_stale_submissions(self, older_than_s: float) -> list[str]:
        """Requests left in `submitting` by a process that died mid-call: their outcome is unknown.
        They are flagged, never resubmitted (the provider may have made and billed the task)."""
        cutoff = time.time() - older_than_s
        stale = [
            r.request_id
            for r in self.records(statuses=[SUBMITTING])
            if (r.submitted_at or 0) < cutoff
        ]
        flagged = []
        for request_id in stale:
            if self.transition(
                request_id,
                SUBMITTING,
                UNKNOWN,
                "submission outcome unknown: the submitting process stopped mid-call",
                error_kind="outcome_unknown",
                error_message="the process submitting this request stopped before the provider answered; "
                "check the provider's dashboard, then run `seedance-pipeline resolve-unknown`",
            ):
                flagged.append(request_id)
        return flagged
