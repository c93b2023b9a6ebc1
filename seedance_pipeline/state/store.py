"""The durable state store: one record per request, and every transition it went through.

Why it exists: provider tasks outlive Dagster runs. The record is written *before* each provider call
(`pending → submitting`) and after each answer, so a crashed run never loses a task id and no rerun,
retry or backfill submits a request twice. A record left in `submitting` by a process that died
mid-call is flagged `unknown`, never resubmitted silently.

Every status change is one of the moves `lifecycle.ALLOWED` permits, made as a compare-and-set
(`UPDATE ... WHERE status = :expected`) in one transaction with its transition row, so concurrent
runs and sensors cannot both move the same request. Claims of provider capacity serialise on a
per-provider lock row (`claims`), which holds on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from seedance_pipeline.providers.models import ErrorKind
from seedance_pipeline.state import arrow, claims, schema
from seedance_pipeline.state.claims import SpendCap
from seedance_pipeline.state.lifecycle import (
    AT_PROVIDER,
    OPEN,
    Move,
    RequestStatus,
    check_move,
)
from seedance_pipeline.state.schema import (
    attempts_table,
    budget_caps_table,
    requests_table,
    transitions_table,
)

log = logging.getLogger(__name__)


# A pooled server connection unused this long is checked before use.
IDLE_PING_S = 5.0


def ping_when_idle(engine: Engine, idle_s: float) -> None:
    """`pool_pre_ping`'s check, made only for a connection unused for `idle_s`: one that the server
    dropped meanwhile (a restart, an idle timeout) is still replaced before use, and a busy
    submission pass no longer pays a round trip per transaction (with `pool_pre_ping`, a third of
    what the store cost per request on PostgreSQL: pg_submission 0.36 of the baseline, 0.59 without)."""

    @sa.event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", time.monotonic()) < idle_s:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()  # no transaction left open by the check
        except Exception:  # the pool discards it and checks out another (SQLAlchemy's recipe)
            raise sa.exc.DisconnectionError() from None


class StateStoreUnavailable(RuntimeError):
    """The state store cannot be opened; the message says why on one line, without the password."""


NO_LONGER_PENDING = "no longer pending"  # a claim that lost a race: not a reason to wait


@dataclass(frozen=True)
class StoredCap:
    """A spend cap set from the UI: `cap_usd` None is "no cap"."""

    cap_usd: float | None
    set_at: float
    set_by: str | None


@dataclass
class RequestRecord:
    """One row of `requests`; `request` is the provider-neutral request as a dict."""

    request_id: str
    batch: str
    catalog_row: int
    provider: str
    model: str
    request: dict[str, Any]
    status: RequestStatus
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
    qc_status: str | None = None  # pass, warn or fail (seedance_pipeline.qc); None: not measured
    qc_reasons: str | None = None
    qc_frames: int | None = None
    qc_audio: bool | None = None
    qc_black_share: float | None = None
    qc_motion: float | None = None
    qc_frozen_share: float | None = None
    qc_first_psnr: float | None = None
    qc_first_ssim: float | None = None
    qc_last_psnr: float | None = None
    qc_last_ssim: float | None = None
    submitted_at: float | None = None
    sent_at: float | None = None
    completed_at: float | None = None
    sandbox: bool | None = None
    run_id: str | None = None
    polled_at: float = 0.0
    call_deadline_at: float | None = None
    malformed_polls: int | None = None
    fetch_attempts: int | None = None
    cost_anomaly: str | None = None
    updated_at: float = field(default_factory=time.time)
    attempts_before: int = 0  # earlier attempts (retries), archived in `attempts`
    cost_usd_before: float = 0.0  # what they cost

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> RequestRecord:
        values = dict(row._mapping)
        values["request"] = json.loads(values.pop("request_json"))
        values["status"] = RequestStatus(values["status"])
        # NULL in rows written before retries existed
        values["attempts_before"] = values.get("attempts_before") or 0
        values["cost_usd_before"] = values.get("cost_usd_before") or 0.0
        return cls(**values)

    @property
    def attempts(self) -> int:
        """Attempts made: the earlier ones, and this one once it was claimed for submission."""
        return self.attempts_before + (1 if self.submitted_at is not None else 0)

    def to_row(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["request_json"] = json.dumps(values.pop("request"), sort_keys=True)
        return values


_UPDATABLE = {c.name for c in requests_table.columns} - {"request_id", "request_json"}
# What a new attempt starts without: the last attempt's outcome (archived in `attempts`).
_ATTEMPT_OUTCOME = ("task_id", "error_kind", "error_message", "seed_used", "tokens", "cost_usd",
                    "video_url", "video_uri", "last_frame_uri", "video_sha256", "video_bytes",
                    "video_width", "video_height", "video_fps", "video_duration_s", "submitted_at",
                    "sent_at", "completed_at", "sandbox", "run_id", "call_deadline_at",
                    "malformed_polls", "fetch_attempts", "cost_anomaly",
                    *(c.name for c in requests_table.c if c.name.startswith("qc_")))  # fmt: skip


def _archive(conn: Connection, record: RequestRecord) -> None:
    """Keep an ended attempt in `attempts` (numbered after those before it), with its outcome as
    it was, so a retry or a restore of the best attempt loses nothing."""
    conn.execute(sa.insert(attempts_table).values(
        request_id=record.request_id, batch=record.batch, attempt=record.attempts_before + 1,
        status=record.status, task_id=record.task_id, error_kind=record.error_kind,
        error_message=record.error_message, seed=record.request.get("seed"),
        seed_used=record.seed_used, tokens=record.tokens,
        cost_usd_estimated=record.cost_usd_estimated, cost_usd=record.cost_usd,
        submitted_at=record.submitted_at, completed_at=record.completed_at,
        sandbox=record.sandbox, run_id=record.run_id, archived_at=time.time(),
        video_uri=record.video_uri, qc_status=record.qc_status,
        qc_reasons=record.qc_reasons, qc_first_ssim=record.qc_first_ssim,
        outcome_json=_outcome_json(record),
    ))  # fmt: skip


def _read(conn: Connection, request_id: str) -> RequestRecord | None:
    """One request as stored, read on `conn` (inside the caller's transaction, if any)."""
    row = conn.execute(sa.select(requests_table).where(_R.request_id == request_id)).one_or_none()
    return RequestRecord.from_row(row) if row is not None else None


def _outcome_json(record: RequestRecord) -> str:
    """An attempt's outcome columns and its request, as `keep_best_attempt` restores them."""
    outcome: dict[str, Any] = {name: getattr(record, name) for name in _ATTEMPT_OUTCOME}
    return json.dumps({**outcome, "request": record.request}, sort_keys=True, default=str)


_QC_RANK = {"pass": 2, "warn": 1, "fail": 0}


def qc_rank(qc_status: str | None, qc_first_ssim: float | None) -> tuple[int, float]:
    """How good an attempt's video is: its QC verdict first, then its first-frame SSIM."""
    return (_QC_RANK.get(qc_status or "", -1), -1.0 if qc_first_ssim is None else qc_first_ssim)


# Statements run once or twice per submission are built once, with bound parameters: building a
# statement in SQLAlchemy costs as much as running it on SQLite (BENCHMARKS.md, submission).
_R = requests_table.c
_STATUS = sa.select(_R.status).where(_R.request_id == sa.bindparam("request_id"))
_ADD_TRANSITION = sa.insert(transitions_table)


_INT64 = (-(2**63), 2**63 - 1)
_COUNTERS = ("malformed_polls", "fetch_attempts")


def _storable(name: str, value: Any) -> Any:
    """A value as every backend stores it alike: a cost is never negative or NaN (a provider's bug
    must not lift a spend cap), whole numbers fit a BIGINT (SQLite overflows past it), and text
    holds no NUL (PostgreSQL refuses it, SQLite keeps it)."""
    if name in ("cost_usd", "cost_usd_estimated") and isinstance(value, float | int):
        if not math.isfinite(value) or value < 0:
            log.warning("a cost of %r was stored as 0 (never negative, never NaN)", value)
            return 0.0
    elif isinstance(value, int) and not isinstance(value, bool):
        if not _INT64[0] <= value <= _INT64[1]:
            log.warning("%s=%.3g does not fit a BIGINT; stored as unknown", name, value)
            return None
    elif isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\\x00")
    return value


@functools.cache
def _compare_and_set(columns: tuple[str, ...]) -> sa.Update:
    """`UPDATE requests SET <columns> WHERE request_id = :key_id AND status = :key_status`, built
    once per set of columns; the new values are bound as `new_<column>`."""
    return (
        sa.update(requests_table)
        .where(_R.request_id == sa.bindparam("key_id"), _R.status == sa.bindparam("key_status"))
        .values({name: sa.bindparam(f"new_{name}", type_=_R[name].type) for name in columns})
    )


@functools.cache
def _compare_and_set_logged(columns: tuple[str, ...]) -> sa.Insert:
    """The compare-and-set and its transition row as one statement (PostgreSQL): one round trip
    instead of two, and a move needs no transaction of its own (BENCHMARKS.md, pg_submission)."""
    return _logged(_compare_and_set(columns))


def _logged(compare_and_set: sa.Update) -> sa.Insert:
    """`compare_and_set` with its transition row: the row is inserted from what the update
    returns, so only when the request moved; returns the row's id (the driver's rowcount of an
    INSERT is -1)."""
    t = transitions_table.c
    moved = compare_and_set.returning(_R.request_id).cte("moved")
    return (
        sa.insert(transitions_table)
        .from_select(
            ["request_id", "from_status", "to_status", "at", "detail"],
            sa.select(
                moved.c.request_id,
                sa.bindparam("key_status", type_=t.from_status.type),
                sa.bindparam("to_status", type_=t.to_status.type),
                sa.bindparam("at", type_=t.at.type),
                sa.bindparam("detail", type_=t.detail.type),
            ),
        )
        .returning(t.id)
    )


def _bound(
    request_id: str, source: str, to: RequestStatus, detail: str | None, now: float,
    values: dict[str, Any],
) -> tuple[tuple[str, ...], dict[str, Any]]:  # fmt: skip
    """What a move binds: the columns it sets, and its values for `_compare_and_set` (the request
    and the status it must be in, `new_<column>`) and `_logged` (its transition row)."""
    unknown = set(values) - (_UPDATABLE - {"status", "updated_at"})
    assert not unknown, f"not columns this may set: {unknown}"
    values = {"status": to, "updated_at": now, **values}
    new = {f"new_{name}": _storable(name, value) for name, value in values.items()}
    return tuple(sorted(values)), {"key_id": request_id, "key_status": source, "to_status": to,
                                   "at": now, "detail": detail, **new}  # fmt: skip


def claim_values(
    sandbox: bool, run_id: str | None, call_deadline_s: float | None
) -> dict[str, Any]:
    """What a claim writes besides its status: when, the call's deadline, sandbox, run."""
    now = time.time()
    deadline = None if call_deadline_s is None else now + call_deadline_s
    return {"submitted_at": now, "call_deadline_at": deadline, "sandbox": sandbox,
            "error_message": None, "run_id": run_id}  # fmt: skip


def limit_values(provider: str, configured: int) -> dict[str, Any]:
    """What `claims.LOWER_LIMIT` and `RAISE_LIMIT` bind."""
    return {"limit_provider": provider, "configured": configured}


def claim_outcome(
    answer: Sequence[Any], provider: str, reservation_usd: float, caps: Sequence[SpendCap]
) -> str | None:
    """`claim`'s answer from the claim pipeline's last row, `(active, limit, spent_0…, moved)`."""
    *figures, moved = answer
    if moved:
        return None
    active, limit, *spent = figures
    wait = claims.reason_to_wait(provider, active, limit, reservation_usd, caps, spent)
    return NO_LONGER_PENDING if wait is None else wait


@functools.cache
def _sql(dialect: sa.Dialect, statement: sa.ClauseElement) -> tuple[str, dict[str, Any]]:
    """A statement built once, compiled once: its SQL and the values of its constants."""
    compiled = statement.compile(dialect=dialect)
    return compiled.string, {k: v for k, v in compiled.params.items() if v is not None}


@functools.cache
def _claim_pipeline(
    dialect: sa.Dialect, columns: tuple[str, ...], shape: tuple[tuple[bool, bool, bool], ...]
) -> tuple[str, ...]:
    """A claim on PostgreSQL as one pipeline (`claims`, "a claim in one round trip"): take the
    provider's lock row, the budgets' one when there are caps, then read the figures and make the
    move if they fit, in one statement answering `(active, limit, spent_0…, moved)`. Built once
    per set of columns and shape of caps, with its constants written in."""
    caps = [SpendCap("", 0.0, since=0.0 if since else None, batch="" if batch else None,
                     run_id="" if run else None) for since, batch, run in shape]  # fmt: skip
    figures = claims.figures(caps)
    claim = _logged(_compare_and_set(columns).where(claims.fits(figures, caps))).cte("logged")
    moved = sa.select(sa.func.count()).select_from(claim).scalar_subquery().label("moved")
    steps = [claims.TAKE_PROVIDER_LOCK, *([claims.TAKE_BUDGET_LOCK] if caps else []),
             sa.select(figures, moved)]  # fmt: skip
    statements = []
    for step in steps:
        sql, constants = _sql(dialect, step)
        statements.append(_PLACEHOLDER.sub(functools.partial(_quoted, constants), sql))
    return tuple(statements)


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _quoted(constants: dict[str, Any], placeholder: re.Match[str]) -> str:
    """A constant's literal, its `%` doubled as the rest of the statement's (which psycopg binds)."""
    name = placeholder[1]
    if name not in constants:
        return placeholder[0]
    return psycopg.sql.quote(constants[name]).replace("%", "%%")


def _run_pipeline(conn: Connection, statements: Sequence[str], values: dict[str, Any]) -> Any:
    """Run a claim's statements (`_claim_pipeline`) as one pipeline on the psycopg connection
    under `conn`, in autocommit: the last statement's row. (`writes` does the same on an asyncio
    connection.)"""
    connection: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
    cursors = [connection.cursor() for _ in statements]
    try:
        with connection.pipeline():
            for cursor, statement in zip(cursors, statements, strict=True):
                cursor.execute(statement, values, prepare=True)
        return cursors[-1].fetchone()
    except psycopg.Error:
        if connection.broken:  # dropped: it does not go back to the pool
            conn.invalidate()
        raise
    finally:
        for cursor in cursors:
            cursor.close()


class StateStore:
    """SQLAlchemy-backed; SQLite under the data directory by default, any SQLAlchemy URL otherwise."""

    def __init__(self, url: str) -> None:
        self.url = schema.shown_url(url)  # never the password
        is_sqlite = url.startswith("sqlite")
        if is_sqlite and ":memory:" not in url:
            Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = sa.create_engine(
            url,
            future=True,
            connect_args={"timeout": 60} if is_sqlite else {},
            # The lock rows rely on each statement seeing what was committed before the lock was
            # granted, whatever the server's default (REPEATABLE READ would fail such claims).
            **({} if is_sqlite else {"isolation_level": "READ COMMITTED"}),
        )
        if not is_sqlite:
            ping_when_idle(self.engine, IDLE_PING_S)
        if self.engine.dialect.name == "postgresql":
            # A claim's pipeline runs in autocommit, as one implicit transaction at the session's
            # default isolation: READ COMMITTED too, whatever the database's default.
            @sa.event.listens_for(self.engine, "connect")
            def _read_committed(dbapi_connection: Any, _record: Any) -> None:
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("SET default_transaction_isolation TO 'read committed'")
                dbapi_connection.commit()

        # PostgreSQL writes a move and its transition row in one statement, atomic by itself, so a
        # move outside a larger transaction runs in autocommit: one round trip, not BEGIN,
        # UPDATE, INSERT and COMMIT (BENCHMARKS.md, pg_submission). Other databases: a transaction.
        self._one_statement_moves = self.engine.dialect.name == "postgresql"
        # A claim is one round trip where the driver pipelines (`_claim_pipeline`).
        self.claims_in_one_round_trip = (
            self._one_statement_moves
            and self.engine.driver == "psycopg"
            and psycopg.Pipeline.is_supported()
        )
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        if is_sqlite:
            # WAL lets the sensor read while a run writes; each write is one short transaction.
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

        try:
            schema.create_or_upgrade(self.engine)
        except sa.exc.DBAPIError as exc:  # unreachable, refused, wrong password, unwritable file
            self.engine.dispose()
            reason = " ".join(str(exc.orig).split())  # one line; the driver never says the password
            raise StateStoreUnavailable(
                f"the state store {self.url} cannot be opened: {reason}"
            ) from None

    def __repr__(self) -> str:
        return f"StateStore({self.url})"

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _move_tx(self) -> Iterator[Connection]:
        """Where one move is made on its own: a transaction, or autocommit where a move is one
        statement (a status read before it, for a move of several sources, changes nothing: the
        compare-and-set still checks the status it read)."""
        if not self._one_statement_moves:
            with self._tx() as conn:
                yield conn
            return
        with self._autocommit.connect() as conn:
            yield conn

    # -- writing ---------------------------------------------------------------------------------

    def add_new(self, records: Iterable[RequestRecord]) -> int:
        """Insert records whose request id is not known yet; known ones are left as they are, so
        re-reading the catalog never resets a request's progress. Returns how many were new; a
        record in any other status than pending or rejected raises IllegalMove, nothing written."""
        records = list(records)
        for status in {rec.status for rec in records}:  # enters as pending or rejected only
            check_move((None,), status)
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

    def refresh_statistics(self) -> None:
        """After a catalog's rows went in: PostgreSQL's planner otherwise keeps the statistics of
        the table as it was until autovacuum runs (up to a minute), and counts a claim makes (a
        provider's tasks in flight) scan every row of the provider instead of the few in flight."""
        if self.engine.dialect.name == "postgresql":
            with self._tx() as conn:
                conn.execute(sa.text(f"ANALYZE {requests_table.name}"))

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

    def move(
        self,
        request_id: str,
        move: Move,
        *,
        to: RequestStatus | None = None,
        reason: str | None = None,
        **values: Any,
    ) -> bool:
        """Make a named move from any of its sources, setting `values`, with its detail (and
        `reason`, if given) in the transition row. False (nothing written) when the request is in
        none of the move's sources; IllegalMove when `to` is not one of its targets."""
        move.target(to)  # an illegal target raises before the transaction opens
        with self._move_tx() as conn:
            return self._move(conn, request_id, move, to, reason, **values)

    def _move(
        self,
        conn: Connection,
        request_id: str,
        move: Move,
        to: RequestStatus | None = None,
        reason: str | None = None,
        **values: Any,
    ) -> bool:
        detail = f"{move.detail}: {reason}" if reason else move.detail
        return self._transition(conn, request_id, move.sources, move.target(to), detail, **values)

    def transition(
        self,
        request_id: str,
        expected: RequestStatus | Sequence[RequestStatus],
        to: RequestStatus,
        detail: str | None = None,
        **values: Any,
    ) -> bool:
        """Move a request from one of `expected` to `to`, setting `values`, atomically with its
        transition row. False (and nothing written) when the request was not in `expected`;
        IllegalMove (nothing written) when the lifecycle allows no such move."""
        with self._move_tx() as conn:
            return self._transition(conn, request_id, expected, to, detail, **values)

    def _transition(
        self,
        conn: Connection,
        request_id: str,
        expected: RequestStatus | Sequence[RequestStatus],
        to: RequestStatus,
        detail: str | None = None,
        **values: Any,
    ) -> bool:
        expected = (expected,) if isinstance(expected, str) else tuple(expected)
        check_move(expected, to)
        if len(expected) == 1:  # the compare-and-set below tells whether it was there
            current: str | None = expected[0]
        else:
            current = conn.execute(_STATUS, {"request_id": request_id}).scalar_one_or_none()
            if current not in expected:
                return False
        assert current is not None
        columns, bound = _bound(request_id, current, to, detail, time.time(), values)
        if self._one_statement_moves:
            return conn.execute(_compare_and_set_logged(columns), bound).first() is not None
        if conn.execute(_compare_and_set(columns), bound).rowcount != 1:
            return False
        conn.execute(_ADD_TRANSITION, {"request_id": request_id, "from_status": current,
                                       "to_status": to, "at": bound["at"], "detail": detail})  # fmt: skip
        return True

    def new_attempt(
        self, request_id: str, move: Move, request: dict[str, Any] | None = None
    ) -> bool:
        """Start a new attempt of a finished request (a retry): archive the attempt as it ended in
        `attempts`, count it and its cost on the request, and make `move` (to pending) with the
        outcome cleared; `request` replaces the stored request (a new seed). One transaction, a
        compare-and-set like every move: False, nothing written, when the request is in none of
        the move's sources (another retry got there first)."""
        move.target()
        with self._tx() as conn:
            record = _read(conn, request_id)
            if record is None:
                return False
            if record.status not in move.sources:
                return False
            if move is Move.QC_RETRY and record.qc_status != "fail":
                return False  # only a video that failed QC is worth paying for again
            moved = self._transition(
                conn, request_id, (record.status,), move.target(), move.detail,
                **dict.fromkeys(_ATTEMPT_OUTCOME), polled_at=0.0,
                attempts_before=record.attempts_before + 1,
                cost_usd_before=record.cost_usd_before + (record.cost_usd or 0.0),
            )  # fmt: skip
            if not moved:
                return False
            _archive(conn, record)
            if request is not None:
                conn.execute(
                    sa.update(requests_table)
                    .where(_R.request_id == request_id)
                    .values(request_json=json.dumps(request, sort_keys=True))
                )
            return True

    def keep_best_attempt(self, request_id: str) -> bool:
        """After a retried request kept a video: when an archived attempt's video is better (QC
        pass > warn > fail, then the higher first-frame SSIM), swap it back onto the request row
        (`Move.KEEP_BEST`, a compare-and-set) and archive the latest instead, so the ledger's row
        is the best attempt while `attempts` and the total cost still count every one."""
        a = attempts_table.c
        with self._tx() as conn:
            record = _read(conn, request_id)
            if record is None:
                return False
            if record.status != RequestStatus.SUCCEEDED or record.qc_status is None:
                return False
            archived = conn.execute(
                sa.select(attempts_table).where(
                    a.request_id == request_id,
                    a.status == RequestStatus.SUCCEEDED,
                    a.qc_status.is_not(None),
                    a.outcome_json.is_not(None),
                )
            ).all()
            if not archived:
                return False
            best = max(archived, key=lambda r: qc_rank(r.qc_status, r.qc_first_ssim))
            if qc_rank(best.qc_status, best.qc_first_ssim) <= qc_rank(
                record.qc_status, record.qc_first_ssim
            ):
                return False
            outcome = json.loads(best.outcome_json)
            request = outcome.pop("request")
            moved = self._transition(
                conn, request_id, (RequestStatus.SUCCEEDED,), RequestStatus.SUCCEEDED,
                Move.KEEP_BEST.detail, **outcome,
                cost_usd_before=record.cost_usd_before - (best.cost_usd or 0.0)
                + (record.cost_usd or 0.0),
            )  # fmt: skip
            if not moved:
                return False
            conn.execute(sa.delete(attempts_table).where(a.id == best.id))
            _archive(conn, record)
            conn.execute(
                sa.update(requests_table)
                .where(_R.request_id == request_id)
                .values(request_json=json.dumps(request, sort_keys=True))
            )
            return True

    def attempts(self, request_id: str) -> list[dict[str, Any]]:
        """The earlier attempts of a request, oldest first, as archived when it was retried."""
        a = attempts_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(attempts_table).where(a.request_id == request_id).order_by(a.attempt)
            )
            return [dict(row._mapping) for row in rows]

    def claim(
        self,
        request_id: str,
        provider: str,
        max_in_flight: int,
        reservation_usd: float,
        sandbox: bool,
        caps: Sequence[SpendCap] = (),
        run_id: str | None = None,
        call_deadline_s: float | None = None,
    ) -> str | None:
        """Reserve a slot and budget for one submission: `pending → submitting`, written before the
        provider is called, with the time by which the call will have ended (`call_deadline_s`
        from now). Returns None on success, else why the request must wait."""
        values = claim_values(sandbox, run_id, call_deadline_s)
        if self.claims_in_one_round_trip:
            statements, bound = self.claim_pipeline(
                request_id, provider, max_in_flight, reservation_usd, caps, values
            )
            with self._autocommit.connect() as conn:
                answer = _run_pipeline(conn, statements, bound)
            return claim_outcome(answer, provider, reservation_usd, caps)
        with self._tx() as conn:
            wait = claims.why_wait(conn, provider, max_in_flight, reservation_usd, caps)
            if wait is not None:
                return wait
            moved = self._move(conn, request_id, Move.CLAIM, **values)
            return None if moved else NO_LONGER_PENDING

    def claim_pipeline(
        self, request_id: str, provider: str, max_in_flight: int, reservation_usd: float,
        caps: Sequence[SpendCap], values: dict[str, Any],
    ) -> tuple[tuple[str, ...], dict[str, Any]]:  # fmt: skip
        """A claim on PostgreSQL as one pipeline (`_claim_pipeline`): its statements and bound
        values, to run in autocommit; `claim_outcome` reads the last one's row."""
        (source,), to = Move.CLAIM.sources, Move.CLAIM.target()
        columns, bound = _bound(request_id, source, to, Move.CLAIM.detail, values["submitted_at"],
                                values)  # fmt: skip
        statements = _claim_pipeline(self.engine.dialect, columns, claims.caps_shape(caps))
        return statements, claims.cap_values(caps) | bound | {
            "lock_provider": provider, "budget_lock": schema.BUDGET_LOCK, "provider": provider,
            "max_in_flight": max_in_flight, "reservation_usd": reservation_usd,
        }  # fmt: skip

    def move_statement(
        self, request_id: str, move: Move, values: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """A move from its only source on PostgreSQL as one statement (the compare-and-set with
        its transition row): its SQL and bound values; it answers a row when the request moved."""
        (source,), to = move.sources, move.target()
        columns, bound = _bound(request_id, source, to, move.detail, time.time(), values)
        sql, constants = _sql(self.engine.dialect, _compare_and_set_logged(columns))
        return sql, constants | bound

    def note_rate_limited(self, provider: str, configured: int) -> int:
        """A 429: halve the provider's limit of tasks in flight (`claims.LOWER_LIMIT`); returns
        the limit now in force."""
        return self._limit_change(claims.LOWER_LIMIT, provider, configured)

    def note_accepted(self, provider: str, configured: int) -> int:
        """An accepted task: raise the limit by one, back toward the configured one
        (`claims.RAISE_LIMIT`); no write at all in the common case, where it was never lowered."""
        if self.current_limit(provider, configured) >= configured:
            return configured
        return self._limit_change(claims.RAISE_LIMIT, provider, configured)

    def _limit_change(self, change: sa.Update, provider: str, configured: int) -> int:
        with self._tx() as conn:
            return int(conn.execute(change, limit_values(provider, configured)).scalar_one())

    def limit_statement(
        self, change: sa.Update, provider: str, configured: int
    ) -> tuple[str, dict[str, Any]]:
        """`claims.LOWER_LIMIT` or `RAISE_LIMIT` on PostgreSQL: its SQL and bound values; it
        answers the limit now in force."""
        sql, constants = _sql(self.engine.dialect, change)
        return sql, constants | limit_values(provider, configured)

    def current_limit(self, provider: str, configured: int) -> int:
        with self.engine.connect() as conn:
            return claims.current_limit(conn, provider, configured)

    def note_wait(self, provider: str, batch: str | None, reason: str) -> int:
        """Why the provider's pending requests (of `batch`, or all) were not sent this time, shown
        in the ledger until they are sent; one statement. Returns how many wait."""
        c = requests_table.c
        scope = [c.provider == provider, c.status == RequestStatus.PENDING]
        if batch is not None:
            scope.append(c.batch == batch)
        message = f"waiting: {reason}"
        # A row another run is claiming right now is skipped, not waited for: its claim may sit in
        # a pipeline whose Sync waits on that run's event loop, which may be waiting on us.
        stale = (
            sa.select(c.request_id)
            .where(*scope, sa.or_(c.error_message.is_(None), c.error_message != message))
            .with_for_update(skip_locked=True)
        )
        with self._tx() as conn:
            conn.execute(
                sa.update(requests_table)
                .where(c.request_id.in_(stale))
                .values(error_message=message)
            )
            return int(conn.execute(sa.select(sa.func.count()).where(*scope)).scalar_one())

    def set_caps(self, caps: dict[str, float | None], set_by: str | None) -> None:
        """Store spend caps by setting name (None: no cap), replacing any set before."""
        with self._tx() as conn:
            for name, cap in caps.items():
                conn.execute(sa.delete(budget_caps_table).where(budget_caps_table.c.name == name))
                conn.execute(sa.insert(budget_caps_table).values(
                    name=name, cap_usd=cap, set_at=time.time(), set_by=set_by
                ))  # fmt: skip

    def forget_caps(self) -> None:
        """Forget every cap set from the UI: the environment's (or the default) apply again."""
        with self._tx() as conn:
            conn.execute(sa.delete(budget_caps_table))

    def stored_caps(self) -> dict[str, StoredCap]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(budget_caps_table)).all()
        return {r.name: StoredCap(r.cap_usd, r.set_at, r.set_by) for r in rows}

    # -- reading ---------------------------------------------------------------------------------

    def spend(
        self, since: float = 0.0, batch: str | None = None, run_id: str | None = None
    ) -> float:
        with self.engine.connect() as conn:
            return claims.spend(conn, SpendCap("", 0.0, since=since, batch=batch, run_id=run_id))

    def get(self, request_id: str) -> RequestRecord | None:
        with self.engine.connect() as conn:
            return _read(conn, request_id)

    def records(
        self,
        *,
        batch: str | None = None,
        provider: str | None = None,
        statuses: Sequence[RequestStatus] | None = None,
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

    def qc_failures(self, batch: str | None = None) -> list[RequestRecord]:
        """Succeeded requests whose kept video failed QC (`qc_status = 'fail'`), in catalog order:
        what a QC retry regenerates."""
        c = requests_table.c
        query = sa.select(requests_table).where(
            c.status == RequestStatus.SUCCEEDED, c.qc_status == "fail"
        )
        if batch is not None:
            query = query.where(c.batch == batch)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(c.batch, c.catalog_row))
            return [RequestRecord.from_row(row) for row in rows]

    def batch_arrow(
        self, batch: str, columns: Sequence[str], size: int = 50_000
    ) -> Generator[pa.RecordBatch, None, None]:
        """A batch's rows in catalog order as Arrow record batches of `columns` (typed as the store
        declares them), `size` rows at a time: a ledger of a million rows never holds a million
        Python records at once."""
        yield from arrow.batch_arrow(self.engine, batch, columns, size)

    def batch_totals(self, batch: str) -> tuple[set[str], float]:
        """The batch's request ids and its actual cost (latest attempts), by queries of their own
        (what the ledger written from the store is checked against)."""
        c = requests_table.c
        ids = arrow.batch_ids(self.engine, batch)
        with self.engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(c.cost_usd), 0.0)).where(c.batch == batch)
            ).scalar_one()
        return ids, float(total)

    def counts(self, batch: str | None = None, provider: str | None = None) -> dict[str, int]:
        c = requests_table.c
        query = sa.select(c.status, sa.func.count()).group_by(c.status)
        if batch is not None:
            query = query.where(c.batch == batch)
        if provider is not None:
            query = query.where(c.provider == provider)
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
        query = sa.select(c.provider, c.batch).where(c.status == RequestStatus.PENDING).distinct()
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

    def count_attempt(self, request_id: str, counter: str) -> int:
        """Add one to a request's counter (`malformed_polls`, `fetch_attempts`); its new value."""
        assert counter in _COUNTERS, counter
        column = requests_table.c[counter]
        with self._tx() as conn:
            conn.execute(
                sa.update(requests_table)
                .where(requests_table.c.request_id == request_id)
                .values({counter: sa.func.coalesce(column, 0) + 1})
            )
            value = conn.execute(
                sa.select(column).where(requests_table.c.request_id == request_id)
            ).scalar_one_or_none()
        return int(value or 0)

    def reset_counter(self, request_id: str, counter: str) -> None:
        assert counter in _COUNTERS, counter
        with self._tx() as conn:
            conn.execute(
                sa.update(requests_table)
                .where(requests_table.c.request_id == request_id)
                .values({counter: None})
            )

    def flag_stale_submissions(self, older_than_s: float, now: float | None = None) -> list[str]:
        """Requests left in `submitting` by a process that died mid-call: their outcome is unknown.
        They are flagged, never resubmitted (the provider may have made and billed the task).

        A submission is in doubt only while its call may still be running: once the call's own
        deadline, recorded with the claim, has passed, it is flagged (a rerun right after a
        kill -9 settles it in minutes). `older_than_s` is an upper bound (and the only rule for
        claims written without a deadline by older versions)."""
        now = time.time() if now is None else now
        cutoff = now - older_than_s
        stale = [
            r.request_id
            for r in self.records(statuses=[RequestStatus.SUBMITTING])
            if (r.call_deadline_at is not None and r.call_deadline_at < now)
            or (r.submitted_at or 0) < cutoff
        ]
        flagged = []
        for request_id in stale:
            if self.move(
                request_id,
                Move.STALE_SUBMISSION,
                error_kind=ErrorKind.OUTCOME_UNKNOWN,
                error_message="the process submitting this request stopped before the provider answered; "
                "check the provider's dashboard, then run `seedance-pipeline resolve-unknown`",
            ):
                flagged.append(request_id)
        if flagged:
            log.error(
                "%d submissions had no answer when their process stopped; flagged unknown",
                len(flagged),
            )
        return flagged
