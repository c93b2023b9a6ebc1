"""The state store: compare-and-set transitions, claims that hold limits across threads."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from seedance_pipeline.providers import ErrorKind
from seedance_pipeline.state import sqlite_arrow
from seedance_pipeline.state.claims import SpendCap
from seedance_pipeline.state.lifecycle import Move, RequestStatus
from seedance_pipeline.state.schema import default_state_url, provider_locks_table, requests_table
from seedance_pipeline.state.store import (
    NO_LONGER_PENDING,
    RequestRecord,
    StateStore,
    StateStoreUnavailable,
)
from seedance_pipeline_tests.postgres import PostgresServer


def record(i: int, provider: str = "novita", estimate: float = 1.0) -> RequestRecord:
    return RequestRecord(request_id=f"r{i:04d}", batch="b", catalog_row=i, provider=provider, model="m",
                         request={"i": i}, status=RequestStatus.PENDING, cost_usd_estimated=estimate)  # fmt: skip


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    store = StateStore(state_url)
    yield store
    store.engine.dispose()


def test_known_requests_keep_their_progress_when_the_catalog_is_read_again(
    store: StateStore,
) -> None:
    assert store.add_new([record(1), record(2)]) == 2
    assert store.move("r0001", Move.CLAIM) and store.move("r0001", Move.TASK_CREATED, task_id="t1")
    assert store.add_new([record(1), record(2), record(3)]) == 1
    got = store.get("r0001")
    assert got is not None and (got.status, got.task_id) == (RequestStatus.IN_FLIGHT, "t1")


def test_transitions_are_compare_and_set_and_recorded(store: StateStore) -> None:
    store.add_new([record(1)])
    assert not store.transition(
        "r0001", RequestStatus.IN_FLIGHT, RequestStatus.FETCHING
    )  # not in flight: refused, nothing written
    assert store.transition("r0001", RequestStatus.PENDING, RequestStatus.SUBMITTING, "claimed")
    assert store.transition(
        "r0001", RequestStatus.SUBMITTING, RequestStatus.IN_FLIGHT, "task created", task_id="t"
    )
    assert [t[1] for t in store.transitions("r0001")] == [
        RequestStatus.PENDING,
        RequestStatus.SUBMITTING,
        RequestStatus.IN_FLIGHT,
    ]
    with pytest.raises(AssertionError, match="not columns"):
        store.transition("r0001", RequestStatus.IN_FLIGHT, RequestStatus.FETCHING, secret_column=1)


def test_claims_hold_the_limit_of_tasks_in_flight_across_threads(store: StateStore) -> None:
    store.add_new([record(i) for i in range(40)])
    results: list[str | None] = []
    lock = threading.Lock()

    def claim(i: int) -> None:
        outcome = store.claim(
            f"r{i:04d}", "novita", max_in_flight=5, reservation_usd=1.0, sandbox=True
        )
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(None) == 5
    assert store.counts() == {RequestStatus.SUBMITTING: 5, RequestStatus.PENDING: 35}


def test_a_claim_says_why_it_waits_and_heeds_a_lowered_limit(store: StateStore) -> None:
    """What a refused claim says, the limit a 429 lowered and a lost race, on every backend (on
    PostgreSQL a claim is one pipeline whose figures are read in SQL)."""
    store.add_new([record(i, estimate=0.25) for i in range(4)])
    store.add_new([record(i, "seedream", estimate=0.25) for i in range(4, 6)])
    assert store.note_rate_limited("novita", 4) == 2
    assert [store.claim(f"r{i:04d}", "novita", 4, 0.25, True) for i in range(3)] == [
        None, None, "novita has 2 tasks in flight (limit 2)",
    ]  # fmt: skip
    assert store.claim("r0000", "novita", 4, 0.25, True) == "novita has 2 tasks in flight (limit 2)"
    assert store.claim("r0004", "seedream", 8, 0.25, True) is None
    assert store.claim("r0004", "seedream", 8, 0.25, True) == NO_LONGER_PENDING  # claimed already
    caps = [SpendCap("batch", 10.0, batch="b"), SpendCap("daily", 0.8, since=0)]
    assert store.claim("r0005", "seedream", 8, 0.25, True, caps) == (
        "daily spend cap $0.80 would be exceeded (committed $0.7500 + this request $0.2500)"
    )
    assert store.transitions("r0000") == [
        (None, "pending", None),
        ("pending", "submitting", "claimed"),
    ]
    assert store.counts() == {RequestStatus.SUBMITTING: 3, RequestStatus.PENDING: 3}


def test_429s_halve_the_limit_and_accepted_tasks_raise_it_back(store: StateStore) -> None:
    assert [store.note_rate_limited("novita", 5) for _ in range(4)] == [2, 1, 1, 1]
    assert [store.note_accepted("novita", 5) for _ in range(5)] == [2, 3, 4, 5, 5]
    assert store.current_limit("novita", 5) == 5
    assert store.current_limit("novita", 8) == 8  # back at the configured limit: none is kept
    assert store.note_rate_limited("novita", 3) == 1 and store.current_limit("novita", 8) == 1


def test_claims_reserve_budget_until_the_task_ends(store: StateStore) -> None:
    store.add_new([record(i, estimate=0.4) for i in range(5)])
    daily = [SpendCap("daily", 1.0, since=0)]
    outcomes = [store.claim(f"r{i:04d}", "novita", 100, 0.4, True, daily) for i in range(5)]
    assert outcomes[:2] == [None, None]
    assert "daily spend cap $1.00 would be exceeded" in (outcomes[2] or "")
    # a finished request costs what it really cost, which frees the rest of its reservation
    store.transition("r0000", RequestStatus.SUBMITTING, RequestStatus.SUCCEEDED, cost_usd=0.1)
    assert store.claim("r0002", "novita", 100, 0.4, True, daily) is None
    assert store.spend() == pytest.approx(0.1 + 0.4 + 0.4)


def test_batch_and_run_caps_are_scoped(store: StateStore) -> None:
    store.add_new([record(i, estimate=0.5) for i in range(4)])
    store.add_new([RequestRecord(request_id="other", batch="c", catalog_row=9, provider="novita", model="m",
                                 request={}, status=RequestStatus.PENDING, cost_usd_estimated=0.5)])  # fmt: skip
    batch_cap = [SpendCap("batch", 1.0, batch="b")]
    assert store.claim("r0000", "novita", 100, 0.5, True, batch_cap, run_id="run-1") is None
    assert store.claim("r0001", "novita", 100, 0.5, True, batch_cap, run_id="run-1") is None
    assert "batch spend cap" in (store.claim("r0002", "novita", 100, 0.5, True, batch_cap) or "")
    assert (
        store.claim("other", "novita", 100, 0.5, True, [SpendCap("batch", 1.0, batch="c")]) is None
    )
    run_cap = [SpendCap("run", 1.0, run_id="run-2")]
    assert store.claim("r0002", "novita", 100, 0.5, True, run_cap, run_id="run-2") is None
    assert store.spend(run_id="run-1") == 1.0 and store.spend(batch="b") == 1.5


def test_submissions_left_without_an_answer_are_flagged_unknown_not_resubmitted(
    store: StateStore,
) -> None:
    store.add_new([record(1), record(2)])
    store.claim("r0001", "novita", 10, 1.0, True)
    assert (
        store.flag_stale_submissions(older_than_s=60) == []
    )  # still young: its process may be alive
    with store.engine.begin() as conn:  # an hour has passed since the claim
        conn.execute(sa.update(requests_table).values(submitted_at=time.time() - 3600))
    assert store.flag_stale_submissions(older_than_s=60) == ["r0001"]
    flagged = store.get("r0001")
    assert (
        flagged is not None
        and flagged.status == RequestStatus.UNKNOWN
        and "resolve-unknown" in (flagged.error_message or "")
    )
    assert store.counts() == {RequestStatus.UNKNOWN: 1, RequestStatus.PENDING: 1}


def test_unknown_outcomes_keep_their_budget_reservation(store: StateStore) -> None:
    store.add_new([record(1, estimate=0.6), record(2, estimate=0.6)])
    daily = [SpendCap("daily", 1.0, since=0)]
    assert store.claim("r0001", "novita", 10, 0.6, True, daily) is None
    store.transition(
        "r0001",
        RequestStatus.SUBMITTING,
        RequestStatus.UNKNOWN,
        error_kind=ErrorKind.OUTCOME_UNKNOWN,
    )
    assert store.spend() == pytest.approx(0.6)  # the task may exist and bill
    assert "daily spend cap" in (store.claim("r0002", "novita", 10, 0.6, True, daily) or "")


def test_an_older_store_gains_new_columns_in_place(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "state.sqlite"
    with sqlite3.connect(path) as db:  # the first schema, before run_id, sent_at and current_limit
        db.execute(
            "CREATE TABLE requests (request_id VARCHAR(64) PRIMARY KEY, batch VARCHAR(200) NOT NULL, "
            "catalog_row INTEGER NOT NULL, provider VARCHAR(50) NOT NULL, model VARCHAR(100) NOT NULL, "
            "request_json TEXT NOT NULL, status VARCHAR(20) NOT NULL, task_id VARCHAR(200), "
            "cost_usd_estimated FLOAT NOT NULL, polled_at FLOAT NOT NULL, updated_at FLOAT NOT NULL)"
        )
        db.execute(
            "INSERT INTO requests VALUES ('r1', 'b', 1, 'novita', 'm', '{}', 'in_flight', 'task-1', 0.1, 0, 0)"
        )
        db.execute(
            "CREATE TABLE provider_locks (provider VARCHAR(50) PRIMARY KEY, claims BIGINT NOT NULL)"
        )
    store = StateStore(f"sqlite:///{path}")
    (kept,) = store.records()
    assert (kept.task_id, kept.run_id, kept.sent_at) == ("task-1", None, None)
    assert store.current_limit("novita", 8) == 8


def test_an_older_postgresql_store_has_its_varchar_columns_widened(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:  # as an older version made it: catalog text in VARCHAR(n)
        conn.execute(sa.text(
            "CREATE TABLE requests (request_id VARCHAR(64) PRIMARY KEY, batch VARCHAR(200) NOT NULL, "
            "catalog_row INTEGER NOT NULL, provider VARCHAR(50) NOT NULL, model VARCHAR(100) NOT NULL, "
            "request_json TEXT NOT NULL, status VARCHAR(20) NOT NULL, task_id VARCHAR(200), "
            "cost_usd_estimated FLOAT NOT NULL, polled_at FLOAT NOT NULL, updated_at FLOAT NOT NULL)"
        ))  # fmt: skip
    engine.dispose()
    store = StateStore(postgres_url)
    long = RequestRecord(request_id="long", batch="b" * 300, catalog_row=1, provider="p" * 80,
                         model="m" * 300, request={}, status=RequestStatus.REJECTED, task_id="t" * 300)  # fmt: skip
    assert store.add_new([long]) == 1
    kept = store.get("long")
    assert kept is not None and (kept.batch, kept.provider, kept.task_id) == (
        "b" * 300,
        "p" * 80,
        "t" * 300,
    )
    with store.engine.connect() as conn:
        types = dict(conn.execute(sa.text(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'requests'"
        )).all())  # fmt: skip
    assert (types["batch"], types["model"], types["request_id"]) == (
        "text",
        "text",
        "character varying",
    )
    store.engine.dispose()


def test_a_task_the_provider_finished_frees_its_slot_before_the_video_is_copied(
    store: StateStore,
) -> None:
    store.add_new([record(i) for i in range(3)])
    assert store.claim("r0000", "novita", 1, 1.0, True) is None
    assert "1 tasks in flight (limit 1)" in (store.claim("r0001", "novita", 1, 1.0, True) or "")
    store.transition("r0000", RequestStatus.SUBMITTING, RequestStatus.IN_FLIGHT, task_id="t0")
    store.transition(
        "r0000", RequestStatus.IN_FLIGHT, RequestStatus.FETCHING, cost_usd=1.0
    )  # succeeded there; copy under way
    assert store.claim("r0001", "novita", 1, 1.0, True) is None
    assert store.active_by_provider() == {"novita": 1}
    # ...but its cost stays committed against budgets until it is settled
    assert store.spend() == pytest.approx(2.0)


# -- several processes on one store (PostgreSQL: what "runs on several machines" means) -----------


def _hold_lock_row_while_claiming(url: str) -> str | None:
    """Another process is mid-claim (it holds novita's lock row) when this one claims the last
    slot: the claim must wait for it, then see what it committed."""
    store, other = StateStore(url), StateStore(url)  # two engines, as in two processes
    store.add_new([record(0), record(1)])
    c = provider_locks_table.c
    outcome: dict[str, str | None] = {}
    try:
        with other.engine.begin() as conn:
            conn.execute(sa.update(provider_locks_table).where(c.provider == "novita")
                         .values(claims=c.claims + 1))  # fmt: skip
            waiting = threading.Thread(
                target=lambda: outcome.update(got=store.claim("r0001", "novita", 1, 1.0, True))
            )
            waiting.start()
            waiting.join(1.0)
            assert waiting.is_alive(), f"the claim did not wait for the lock row: {outcome}"
            # the holder takes the provider's only slot, then commits
            other._transition(
                conn,
                "r0000",
                RequestStatus.PENDING,
                RequestStatus.SUBMITTING,
                "claimed",
                submitted_at=time.time(),
            )
        waiting.join(30)
        assert not waiting.is_alive()
        return outcome["got"]
    finally:
        store.engine.dispose()
        other.engine.dispose()


def test_a_claim_waits_for_the_lock_row_and_sees_what_its_holder_committed(state_url: str) -> None:
    assert _hold_lock_row_while_claiming(state_url) == "novita has 1 tasks in flight (limit 1)"


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_claims_keep_their_locking_where_the_database_defaults_to_stricter_isolation(
    postgres: PostgresServer, postgres_url: str, isolation: str
) -> None:
    """The lock row design needs each statement to see what was committed before the lock was
    granted (READ COMMITTED); the store asks for it whatever the database's default."""
    database = sa.make_url(postgres_url).database
    postgres.execute(
        f"ALTER DATABASE \"{database}\" SET default_transaction_isolation TO '{isolation}'"
    )
    assert _hold_lock_row_while_claiming(postgres_url) == "novita has 1 tasks in flight (limit 1)"


def _open_store(url: str, barrier: Any) -> None:
    barrier.wait()
    StateStore(url).engine.dispose()


def test_several_processes_can_open_a_new_store_at_once(postgres_url: str) -> None:
    """Every machine's first run creates the schema; they must not trip over each other."""
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(4)
    workers = [spawn.Process(target=_open_store, args=(postgres_url, barrier)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    store = StateStore(postgres_url)
    assert store.current_limit("novita", 8) == 8
    store.engine.dispose()


def _claimer(url: str, barrier: Any, limits: dict[str, int], cap_usd: float | None, seed: int,
             results: Any) -> None:  # fmt: skip
    """One process claiming every request it can, in its own random order."""
    store = StateStore(url)
    ids = sorted(r.request_id for r in store.records())
    random.Random(seed).shuffle(ids)
    providers = {r.request_id: r.provider for r in store.records()}
    caps = [SpendCap("daily", cap_usd, since=0)] if cap_usd is not None else []
    barrier.wait()
    won = [
        i
        for i in ids
        if store.claim(i, providers[i], limits[providers[i]], 0.25, True, caps) is None
    ]
    store.engine.dispose()
    results.put(won)


def claim_from_processes(url: str, limits: dict[str, int], cap_usd: float | None,
                         processes: int = 4) -> list[str]:  # fmt: skip
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(processes), spawn.Queue()
    workers = [spawn.Process(target=_claimer, args=(url, barrier, limits, cap_usd, seed, results))
               for seed in range(processes)]  # fmt: skip
    for w in workers:
        w.start()
    won = [i for _ in workers for i in results.get(timeout=240)]
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0] * processes
    return won


def test_claims_from_separate_processes_never_exceed_a_providers_limit(postgres_url: str) -> None:
    store = StateStore(postgres_url)
    store.add_new([record(i, "novita", 0.25) for i in range(40)] +
                  [record(100 + i, "modelark", 0.25) for i in range(40)])  # fmt: skip
    won = claim_from_processes(postgres_url, {"novita": 5, "modelark": 3}, cap_usd=None)
    assert len(won) == len(set(won)) == 8  # each request claimed once, every free slot taken
    assert store.active_by_provider() == {"novita": 5, "modelark": 3}
    store.engine.dispose()


def test_claims_from_separate_processes_never_exceed_a_budget(postgres_url: str) -> None:
    store = StateStore(postgres_url)
    store.add_new([record(i, "novita", 0.25) for i in range(40)] +
                  [record(100 + i, "modelark", 0.25) for i in range(40)])  # fmt: skip
    won = claim_from_processes(postgres_url, {"novita": 5, "modelark": 100}, cap_usd=3.0)
    assert len(won) == len(set(won)) == 12  # $3.00 of $0.25 reservations, across both providers
    assert store.spend() == pytest.approx(3.0)
    assert store.active_by_provider()["novita"] <= 5
    store.engine.dispose()


# -- a password in the state URL is never shown ----------------------------------------------------


def with_password(url: str, password: str) -> str:
    return sa.make_url(url).set(password=password).render_as_string(hide_password=False)


def test_a_store_shows_its_url_without_the_password(
    postgres: PostgresServer, postgres_url: str
) -> None:
    marker = postgres.password_marker
    assert len(marker) >= 16, "the test server's password is too weak to search for"
    store = StateStore(postgres_url)  # really connects with it
    shown = [repr(store), store.url, str(store.engine.url), repr(store.engine.url)]
    assert all(marker not in text and "***" in text for text in shown), shown
    store.engine.dispose()


def bad_urls(url: str, marker: str) -> dict[str, tuple[str, str]]:
    """Misconfigured state URLs, each carrying the password, and what its error must say instead."""
    u = sa.make_url(url)
    return {
        "wrong password": (with_password(url, f"wrong-{marker}"), "password authentication failed"),
        "nothing listening": (u.set(port=1).render_as_string(hide_password=False), "refused"),
        "no such database": (u.set(database="nope").render_as_string(hide_password=False), "does not exist"),
        "unquoted @ in the password": (f"postgresql+psycopg://seedance:{marker}@{marker}@{u.host}:{u.port}/db",
                                       "URL-quote"),
        "unquoted @ before a port": (f"postgresql+psycopg://seedance:x@y:{marker}@{u.host}:{u.port}/db",
                                     "URL-quote"),
    }  # fmt: skip


@pytest.mark.parametrize("case", ["wrong password", "nothing listening", "no such database",
                                  "unquoted @ in the password", "unquoted @ before a port"])  # fmt: skip
def test_errors_opening_a_store_never_show_its_password(
    postgres: PostgresServer, postgres_url: str, case: str
) -> None:
    url, diagnosis = bad_urls(postgres_url, postgres.password_marker)[case]
    with pytest.raises(Exception) as raised:
        StateStore(url)
    text = "".join(traceback.format_exception(raised.value))  # with every chained cause
    assert diagnosis in text
    assert postgres.password_marker not in text


@pytest.mark.parametrize("case", ["wrong password", "nothing listening", "no such database"])
def test_a_store_that_cannot_be_opened_says_why_on_one_line(
    postgres: PostgresServer, postgres_url: str, case: str
) -> None:
    url, diagnosis = bad_urls(postgres_url, postgres.password_marker)[case]
    with pytest.raises(StateStoreUnavailable) as raised:
        StateStore(url)
    message = str(raised.value)
    assert message.startswith("the state store postgresql+psycopg://") and diagnosis in message
    assert "\n" not in message and postgres.password_marker not in message


def test_an_sqlite_store_that_cannot_be_opened_says_why(tmp_path: Path) -> None:
    (tmp_path / "state.sqlite").mkdir()  # a folder where the database file should be
    with pytest.raises(StateStoreUnavailable, match="cannot be opened: unable to open database"):
        StateStore(default_state_url(tmp_path))


def test_long_catalog_values_are_kept_on_every_backend(store: StateStore) -> None:
    """Catalog text reaches the store as written, even in rows that are rejected (an unknown
    provider or model is recorded as given); PostgreSQL enforces VARCHAR lengths, SQLite does not."""
    long = RequestRecord(request_id="long", batch="b" * 300, catalog_row=1, provider="p" * 80,
                         model="m" * 300, image_id="i" * 1000, request={}, status=RequestStatus.REJECTED,
                         error_message="provider: unknown")  # fmt: skip
    assert store.add_new([long, record(1)]) == 2
    kept = store.get("long")
    assert kept is not None and (kept.batch, kept.provider, kept.model, kept.image_id) == (
        long.batch, long.provider, long.model, long.image_id)  # fmt: skip
    assert store.claim("r0001", "novita", 1, 1.0, True, run_id="r" * 300) is None
    assert store.move("r0001", Move.TASK_CREATED, task_id="t" * 300)
    sent = store.get("r0001")
    assert sent is not None and (sent.task_id, sent.run_id) == ("t" * 300, "r" * 300)


def test_the_sqlite_arrow_reader_says_why_a_query_failed_and_reads_its_rows(tmp_path: Path) -> None:
    database = str(tmp_path / "state.sqlite")
    StateStore(f"sqlite:///{database}").add_new([
        RequestRecord(request_id=f"r{i}", batch="b", catalog_row=i, provider="novita", model="m",
                      request={}, status=RequestStatus.PENDING) for i in range(5)
    ])  # fmt: skip
    schema = pa.schema([("request_id", pa.string())])
    query = (
        "SELECT 1, '' UNION ALL SELECT * FROM (SELECT 0, request_id FROM requests WHERE batch = ?)"
    )
    read = [
        r
        for part in sqlite_arrow.read(database, query, ["b"], schema, 2)
        for r in part[0].to_pylist()
    ]
    assert sorted(read) == [f"r{i}" for i in range(5)]  # the placeholder row is dropped
    with pytest.raises(RuntimeError, match=r"into Arrow failed: .*no such column: nonsense"):
        list(sqlite_arrow.read(database, "SELECT nonsense FROM requests", [], schema, 2))
    with pytest.raises(RuntimeError, match="placeholder row did not come first"):
        list(sqlite_arrow.read(database, "SELECT 0, request_id FROM requests", [], schema, 2))


def _adder(url: str, barrier: Any, results: Any) -> None:
    """One catalog run adding the same catalog as the others, in slices so the runs interleave."""
    store = StateStore(url)
    records = [record(i, "novita", 0.25) for i in range(400)]
    barrier.wait()
    try:
        results.put(sum(store.add_new(records[s : s + 20]) for s in range(0, 400, 20)))
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")
    store.engine.dispose()


def test_catalog_runs_at_once_add_each_request_once_and_none_fails(state_url: str) -> None:
    store = StateStore(state_url)  # the schema exists before the runs start
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(3), spawn.Queue()
    workers = [spawn.Process(target=_adder, args=(state_url, barrier, results)) for _ in range(3)]
    for w in workers:
        w.start()
    added = [results.get(timeout=240) for _ in workers]
    for w in workers:
        w.join(60)
    assert all(isinstance(n, int) for n in added), added  # no run failed on a duplicate key
    assert sum(added) == 400 and len(store.records()) == 400
    with store.engine.connect() as conn:
        firsts = conn.execute(sa.text("SELECT count(*) FROM transitions WHERE from_status IS NULL"))
        assert firsts.scalar_one() == 400  # one creation row per request
    store.engine.dispose()


def test_a_task_ending_while_a_claim_reads_the_spend_is_still_counted(postgres_url: str) -> None:
    """PostgreSQL gives each statement its own snapshot: a task that ends (in flight → failed, its
    cost now actual) on another connection while a claim adds up the spend must be counted once,
    not missed by a 'finished' sum read before and a 'reserved' sum read after."""
    store, other = StateStore(postgres_url), StateStore(postgres_url)
    store.add_new([record(1, estimate=0.25)])
    assert store.move("r0001", Move.CLAIM, submitted_at=1.0)
    assert store.move("r0001", Move.TASK_CREATED, task_id="t1")
    ended: list[bool] = []

    @sa.event.listens_for(store.engine, "after_cursor_execute")
    def end_the_task_meanwhile(*_: Any) -> None:
        if not ended:  # right after the first statement of the spend, once
            ended.append(
                other.move("r0001", Move.TASK_ENDED, to=RequestStatus.FAILED, cost_usd=0.25)
            )

    assert store.spend() == pytest.approx(0.25)
    assert ended == [True]
    store.engine.dispose()
    other.engine.dispose()


def test_a_pooled_connection_the_server_dropped_while_idle_is_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked only after IDLE_PING_S unused (not on every transaction, as pool_pre_ping did)."""
    monkeypatch.setattr("seedance_pipeline.state.store.IDLE_PING_S", 0.2)
    store, admin = StateStore(postgres_url), StateStore(postgres_url)
    store.add_new([record(1)])
    with admin.engine.begin() as conn:  # what a server restart or an idle timeout does
        assert conn.execute(sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )).scalar_one()  # fmt: skip
    time.sleep(0.5)
    assert store.counts() == {"pending": 1}
    store.engine.dispose()
    admin.engine.dispose()
