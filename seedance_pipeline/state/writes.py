"""A submission pass's claims, task-id moves and adaptive-limit changes, made without blocking its
event loop.

A pass runs its provider calls concurrently on one event loop; a store call that blocks the loop
(a round trip to PostgreSQL) holds up every call in flight. On PostgreSQL (psycopg)
`submission_writes` sends the pass's writes over asyncio connections, so the loop serves the
provider calls while they travel:
- each claim is the store's claim statements as one pipeline of prepared statements (one round
  trip, parsed and planned once per connection);
- each task-id move is the store's one statement, on a connection of its own, so a move never
  queues behind a claim;
- the adaptive limit's changes after a 429 or an accepted task take the provider's lock row as a
  claim does, so they go on the claims' connection, between claims. A pipeline holds its lock rows
  until this loop sends its Sync: a call on the loop that blocked on one of them would never let
  it be sent (a deadlock), so no write that takes them is a blocking call here.

The writes are the store's own statements, with the same guarantees: the claim is written before the
provider is called, every move is a compare-and-set with its transition row. Elsewhere (SQLite, whose
calls do not leave the process, or another driver) they are the store's blocking calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import psycopg
import sqlalchemy as sa

from seedance_pipeline.state import claims
from seedance_pipeline.state.claims import SpendCap
from seedance_pipeline.state.lifecycle import Move
from seedance_pipeline.state.store import IDLE_PING_S, StateStore, claim_outcome, claim_values

log = logging.getLogger(__name__)


class Writes(Protocol):
    """`StateStore.claim`, `move` (from a move's only source), `note_rate_limited` and
    `note_accepted`, awaited."""

    async def claim(
        self, request_id: str, provider: str, max_in_flight: int, reservation_usd: float,
        sandbox: bool, caps: Sequence[SpendCap] = (), run_id: str | None = None,
        call_deadline_s: float | None = None,
    ) -> str | None: ...  # fmt: skip

    async def move(self, request_id: str, move: Move, **values: Any) -> bool: ...

    async def note_rate_limited(self, provider: str, configured: int) -> int: ...

    async def note_accepted(self, provider: str, configured: int) -> int: ...

    def later(self, change: Coroutine[Any, Any, None], what: str) -> None:
        """Run `change` beside the caller (from a synchronous hook); awaited by `settled`."""

    async def settled(self) -> None:
        """Once every change started with `later` has ended (a failed one is logged)."""


@asynccontextmanager
async def submission_writes(store: StateStore) -> AsyncIterator[Writes]:
    """The writes of one submission pass (or of a run's passes), on the running event loop."""
    if not store.claims_in_one_round_trip:
        blocking = _Blocking(store)
        try:
            yield blocking
        finally:
            await blocking.settled()
        return
    claiming, moving = _Connection(store.engine.url), _Connection(store.engine.url)
    writes = _NonBlocking(store, claiming, moving)
    try:
        yield writes
    finally:
        await writes.settled()  # the last limit changes, on the connection they need
        await claiming.close()
        await moving.close()


class _Connection:
    """An asyncio connection, opened when first used; like the store's pooled ones, checked after
    `IDLE_PING_S` unused and replaced if the server dropped it meanwhile (a restart, an idle
    timeout), so a run that stays between waves survives what its next pass would trip on."""

    def __init__(self, url: sa.URL) -> None:
        self._url = url.set(
            drivername="postgresql"
        )  # as libpq reads it; its repr hides the password
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._used = 0.0
        self._opening = asyncio.Lock()  # coroutines asking at once share one connection

    async def get(self) -> psycopg.AsyncConnection[Any]:
        async with self._opening:
            connection = self._connection
            if connection is not None and time.monotonic() - self._used >= IDLE_PING_S:
                try:
                    await connection.execute("SELECT 1")
                except psycopg.OperationalError:
                    await connection.close()
                    connection = None
            if connection is None or connection.closed:
                # The password is in no attribute or log line; psycopg never shows it in an error.
                connection = await psycopg.AsyncConnection.connect(
                    self._url.render_as_string(hide_password=False), autocommit=True
                )
                # A claim's message is one implicit transaction: READ COMMITTED, as on the engine.
                await connection.execute("SET default_transaction_isolation TO 'read committed'")
                self._connection = connection
            self._used = time.monotonic()
            return connection

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


class _Background:
    """`Writes.later` and `settled`: changes started from a synchronous hook (the client's
    adaptive-limit hooks, called mid-call), best effort as the hooks are."""

    def __init__(self) -> None:
        self._changes: set[asyncio.Task[None]] = set()

    def later(self, change: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.ensure_future(change)
        self._changes.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._changes.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed (ignored)", what, exc_info=task.exception())

        task.add_done_callback(done)

    async def settled(self) -> None:
        await asyncio.gather(*self._changes, return_exceptions=True)


class _Blocking(_Background):
    def __init__(self, store: StateStore) -> None:
        super().__init__()
        self._store = store

    async def claim(
        self, request_id: str, provider: str, max_in_flight: int, reservation_usd: float,
        sandbox: bool, caps: Sequence[SpendCap] = (), run_id: str | None = None,
        call_deadline_s: float | None = None,
    ) -> str | None:  # fmt: skip
        return self._store.claim(request_id, provider, max_in_flight, reservation_usd, sandbox,
                                 caps, run_id, call_deadline_s)  # fmt: skip

    async def move(self, request_id: str, move: Move, **values: Any) -> bool:
        return self._store.move(request_id, move, **values)

    async def note_rate_limited(self, provider: str, configured: int) -> int:
        return self._store.note_rate_limited(provider, configured)

    async def note_accepted(self, provider: str, configured: int) -> int:
        return self._store.note_accepted(provider, configured)


class _NonBlocking(_Background):
    def __init__(self, store: StateStore, claiming: _Connection, moving: _Connection) -> None:
        super().__init__()
        self._store, self._claims, self._moves = store, claiming, moving
        self._claiming = asyncio.Lock()  # a pipeline's connection takes nothing else meanwhile

    async def claim(
        self, request_id: str, provider: str, max_in_flight: int, reservation_usd: float,
        sandbox: bool, caps: Sequence[SpendCap] = (), run_id: str | None = None,
        call_deadline_s: float | None = None,
    ) -> str | None:  # fmt: skip
        values = claim_values(sandbox, run_id, call_deadline_s)
        statements, bound = self._store.claim_pipeline(
            request_id, provider, max_in_flight, reservation_usd, caps, values
        )
        # One pipeline of prepared statements, so the server parses and plans them once per
        # connection. Its lock rows are held until its Sync, which this loop sends: nothing on the
        # loop may wait for them meanwhile, so every write that takes them (claims and the
        # adaptive limit's) is made here, on this connection, one at a time.
        async with self._claiming:
            connection = await self._claims.get()
            cursors = [connection.cursor() for _ in statements]
            try:
                async with connection.pipeline():
                    for cursor, statement in zip(cursors, statements, strict=True):
                        await cursor.execute(statement, bound, prepare=True)
                answer = await cursors[-1].fetchone()
            except BaseException:
                await self._claims.close()  # mid-pipeline: the next claim starts on a fresh one
                raise
            finally:
                for cursor in cursors:
                    await cursor.close()
        assert answer is not None, "a claim's last statement answers one row"
        return claim_outcome(answer, provider, reservation_usd, caps)

    async def move(self, request_id: str, move: Move, **values: Any) -> bool:
        sql, bound = self._store.move_statement(request_id, move, values)
        try:
            async with (await self._moves.get()).cursor() as cursor:
                await cursor.execute(sql, bound)
                return await cursor.fetchone() is not None
        except BaseException:
            # Cancelled (the run is being stopped) or cut off: what the move records (a paid task's
            # id) must not be lost, so it is made again, blocking. A compare-and-set, so nothing
            # is written twice if the first got through; then the cancellation or error goes on.
            try:
                self._store.move(request_id, move, **values)
            except Exception:
                log.error("request %s: %s not recorded (%s)", request_id, move.name, values)
            raise

    async def note_rate_limited(self, provider: str, configured: int) -> int:
        return await self._limit_change(claims.LOWER_LIMIT, provider, configured)

    async def note_accepted(self, provider: str, configured: int) -> int:
        return await self._limit_change(claims.RAISE_LIMIT, provider, configured)

    async def _limit_change(self, change: sa.Update, provider: str, configured: int) -> int:
        sql, bound = self._store.limit_statement(change, provider, configured)
        async with self._claiming:
            try:
                async with (await self._claims.get()).cursor() as cursor:
                    await cursor.execute(sql, bound)
                    row = await cursor.fetchone()
            except BaseException:
                await self._claims.close()  # as a claim's: the next write starts on a fresh one
                raise
        assert row is not None, "the provider's lock row is made with the schema"
        return int(row[0])
