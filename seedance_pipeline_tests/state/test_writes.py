"""A submission pass's writes (`state.writes`): the store's claims and moves, awaited."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from seedance_pipeline.state.lifecycle import Move, RequestStatus
from seedance_pipeline.state.schema import provider_locks_table, requests_table
from seedance_pipeline.state.store import NO_LONGER_PENDING, StateStore
from seedance_pipeline.state.writes import submission_writes
from seedance_pipeline_tests.state.test_store import record


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    store = StateStore(state_url)
    yield store
    store.engine.dispose()


def test_a_passs_claims_hold_the_limit_and_its_moves_are_compare_and_set(store: StateStore) -> None:
    store.add_new([record(i) for i in range(20)])

    async def claim_all() -> list[str | None]:
        async with submission_writes(store) as writes:
            return await asyncio.gather(
                *(writes.claim(f"r{i:04d}", "novita", 5, 1.0, True) for i in range(20))
            )

    claimed = asyncio.run(claim_all())
    won = [i for i, outcome in enumerate(claimed) if outcome is None]
    assert len(won) == 5
    assert {claimed[i] for i in range(20) if i not in won} == {
        "novita has 5 tasks in flight (limit 5)"
    }

    async def then_move() -> tuple[str | None, list[bool]]:
        async with submission_writes(store) as writes:
            again = await writes.claim(f"r{won[0]:04d}", "novita", 50, 1.0, True)
            moved = [
                await writes.move(f"r{i:04d}", Move.TASK_CREATED, task_id=f"task-{i}")
                for i in range(20)
            ]
            return again, moved

    again, moved = asyncio.run(then_move())
    assert again == NO_LONGER_PENDING
    assert [i for i, m in enumerate(moved) if m] == won  # the others were never claimed
    assert store.counts() == {RequestStatus.IN_FLIGHT: 5, RequestStatus.PENDING: 15}
    first = store.get(f"r{won[0]:04d}")
    assert first is not None and first.task_id == f"task-{won[0]}" and first.submitted_at
    assert store.transitions(f"r{won[0]:04d}")[1:] == [
        ("pending", "submitting", "claimed"),
        ("submitting", "in_flight", "task created"),
    ]
    unclaimed = next(i for i in range(20) if i not in won)
    assert store.transitions(f"r{unclaimed:04d}") == [(None, "pending", None)]


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_a_claim_waiting_for_its_lock_leaves_the_event_loop_free_then_sees_the_holders_claim(
    state_url: str,
) -> None:
    """Another process holds the provider's lock row and takes its last slot: the pass's other
    calls go on while the claim waits, and the claim then counts the slot as taken (its checks
    read what was committed before the lock was granted, not before the claim was sent)."""
    store, other = StateStore(state_url), StateStore(state_url)
    store.add_new([record(0), record(1)])
    c = provider_locks_table.c
    ticks: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def pass_() -> str | None:
        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        async with submission_writes(store) as writes:
            outcome = await writes.claim("r0001", "novita", 1, 1.0, True)
        stop.set()
        await ticking
        return outcome

    try:
        with other.engine.begin() as conn:  # another process, mid-claim, holds the lock row
            conn.execute(
                sa.update(provider_locks_table)
                .where(c.provider == "novita")
                .values(claims=c.claims + 1)
            )
            result: dict[str, str | None] = {}
            waiting = threading.Thread(target=lambda: result.update(got=asyncio.run(pass_())))
            waiting.start()
            waiting.join(1.0)
            assert waiting.is_alive(), "the claim did not wait for the lock row"
            held = len(ticks)
            other._transition(conn, "r0000", RequestStatus.PENDING, RequestStatus.SUBMITTING,
                              "claimed", submitted_at=time.time())  # fmt: skip
        waiting.join(30)
        assert result == {"got": "novita has 1 tasks in flight (limit 1)"}
        assert held >= 50, f"the event loop ran {held} times in 1 s while the claim waited"
    finally:
        store.engine.dispose()
        other.engine.dispose()


def test_passes_at_once_on_their_own_connections_never_claim_over_the_limit(state_url: str) -> None:
    """Four passes at once, each with its own connections (as four runs or machines), race for
    a provider's 7 slots."""
    store = StateStore(state_url)
    store.add_new([record(i) for i in range(80)])
    outcomes: list[str | None] = []

    def pass_(offset: int) -> None:
        async def claims() -> list[str | None]:
            async with submission_writes(store) as writes:
                return await asyncio.gather(
                    *(writes.claim(f"r{(offset + i) % 80:04d}", "novita", 7, 1.0, True)
                      for i in range(0, 80, 2))
                )  # fmt: skip

        outcomes.extend(asyncio.run(claims()))

    try:
        passes = [threading.Thread(target=pass_, args=(n * 20,)) for n in range(4)]
        for p in passes:
            p.start()
        for p in passes:
            p.join(60)
        assert outcomes.count(None) == 7
        assert store.counts()[RequestStatus.SUBMITTING] == 7
    finally:
        store.engine.dispose()


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_a_connection_the_server_dropped_between_waves_is_replaced(
    state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stays between waves; a server restart or idle timeout meanwhile must not fail it."""
    monkeypatch.setattr("seedance_pipeline.state.writes.IDLE_PING_S", 0.2)
    monkeypatch.setattr("seedance_pipeline.state.store.IDLE_PING_S", 0.2)
    store, admin = StateStore(state_url), StateStore(state_url)
    store.add_new([record(0), record(1)])

    async def two_waves() -> list[str | None]:
        async with submission_writes(store) as writes:
            first = await writes.claim("r0000", "novita", 8, 1.0, True)
            moved = await writes.move("r0000", Move.TASK_CREATED, task_id="t0")
            with admin.engine.begin() as conn:  # what a server restart or an idle timeout does
                dropped = conn.execute(sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )).scalar_one()  # fmt: skip
            assert dropped >= 2 and moved
            await asyncio.sleep(0.5)
            second = await writes.claim("r0001", "novita", 8, 1.0, True)
            return [first, second, await writes.move("r0001", Move.TASK_CREATED, task_id="t1")]

    try:
        assert asyncio.run(two_waves()) == [None, None, True]
        assert store.counts() == {RequestStatus.IN_FLIGHT: 2}
    finally:
        store.engine.dispose()
        admin.engine.dispose()


def test_another_postgresql_driver_claims_in_a_transaction(postgres_url: str) -> None:
    """psycopg2 (`postgresql+psycopg2://`) has no pipeline here: claims take the transaction path,
    with the same limits and the same reasons, and a pass's writes are the blocking calls."""
    url = sa.make_url(postgres_url).set(drivername="postgresql+psycopg2")
    store = StateStore(url.render_as_string(hide_password=False))
    assert not store.claims_in_one_round_trip
    store.add_new([record(i) for i in range(12)])

    async def claim_all() -> list[str | None]:
        async with submission_writes(store) as writes:
            return await asyncio.gather(
                *(writes.claim(f"r{i:04d}", "novita", 3, 1.0, True) for i in range(12))
            )

    try:
        outcomes = asyncio.run(claim_all())
        assert outcomes.count(None) == 3
        assert set(outcomes) == {None, "novita has 3 tasks in flight (limit 3)"}
    finally:
        store.engine.dispose()


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_a_task_id_whose_move_is_cancelled_is_still_recorded(state_url: str) -> None:
    """A run stopped while the task-created move waits on the server: the task was paid for, so
    its id is recorded anyway (blocking), before the cancellation goes on."""
    store, other = StateStore(state_url), StateStore(state_url)
    store.add_new([record(0)])
    assert store.claim("r0000", "novita", 8, 1.0, True) is None
    r = requests_table.c
    cancelled: list[bool] = []

    async def stopped_run() -> None:
        async with submission_writes(store) as writes:
            move = asyncio.create_task(writes.move("r0000", Move.TASK_CREATED, task_id="task-0"))
            await asyncio.sleep(0.5)  # waiting for the row another transaction holds
            move.cancel()
            try:
                await move
            except asyncio.CancelledError:
                cancelled.append(True)

    try:
        with other.engine.begin() as conn:  # holds the request's row
            conn.execute(sa.select(r.status).where(r.request_id == "r0000").with_for_update())
            run = threading.Thread(target=lambda: asyncio.run(stopped_run()))
            run.start()
            run.join(1.5)  # cancelled meanwhile; its row is released below
        run.join(30)
        assert cancelled == [True]
        kept = store.get("r0000")
        assert kept is not None
        assert (kept.status, kept.task_id) == (RequestStatus.IN_FLIGHT, "task-0")
        assert store.transitions("r0000")[-1] == ("submitting", "in_flight", "task created")
    finally:
        store.engine.dispose()
        other.engine.dispose()


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_why_requests_wait_skips_a_row_another_run_is_claiming(state_url: str) -> None:
    """`note_wait` never waits for a pending row another run holds: that run's claim may sit in
    a pipeline whose Sync waits on an event loop that may be waiting on us."""
    store, other = StateStore(state_url), StateStore(state_url)
    store.add_new([record(0), record(1)])
    c = requests_table.c
    try:
        with other.engine.begin() as conn:  # mid-claim in another run: r0000's row is locked
            conn.execute(sa.update(requests_table).where(c.request_id == "r0000")
                         .values(updated_at=time.time()))  # fmt: skip
            done: list[int] = []
            noting = threading.Thread(
                target=lambda: done.append(store.note_wait("novita", None, "a reason"))
            )
            noting.start()
            noting.join(5.0)
            assert done == [2], "note_wait waited for a row another run holds"
        assert store.get("r0000").error_message is None  # type: ignore[union-attr]
        assert store.get("r0001").error_message == "waiting: a reason"  # type: ignore[union-attr]
    finally:
        store.engine.dispose()
        other.engine.dispose()


def test_changes_started_from_a_hook_end_before_the_writes_close(store: StateStore) -> None:
    """A 429 noted after a pass (a poll between a run's passes) is still written, on a connection
    that is still open, before the run's writes close."""
    store.add_new([record(0)])

    async def note_then_close() -> None:
        async with submission_writes(store) as writes:
            await writes.settled()

            async def lower() -> None:
                await writes.note_rate_limited("novita", 8)

            writes.later(lower(), "novita: lowering its limit")

    asyncio.run(note_then_close())
    assert store.current_limit("novita", 8) == 4
