"""The state store: compare-and-set transitions, claims that hold limits across threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from seedance_pipeline.state.store import (
    FETCHING,
    IN_FLIGHT,
    PENDING,
    SUBMITTING,
    SUCCEEDED,
    UNKNOWN,
    RequestRecord,
    SpendCap,
    StateStore,
    default_state_url,
)


def record(i: int, provider: str = "novita", estimate: float = 1.0) -> RequestRecord:
    return RequestRecord(request_id=f"r{i:04d}", batch="b", catalog_row=i, provider=provider, model="m",
                         request={"i": i}, status=PENDING, cost_usd_estimated=estimate)  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(default_state_url(tmp_path))


def test_known_requests_keep_their_progress_when_the_catalog_is_read_again(
    store: StateStore,
) -> None:
    assert store.add_new([record(1), record(2)]) == 2
    assert store.transition("r0001", PENDING, IN_FLIGHT, task_id="t1")
    assert store.add_new([record(1), record(2), record(3)]) == 1
    got = store.get("r0001")
    assert got is not None and (got.status, got.task_id) == (IN_FLIGHT, "t1")


def test_transitions_are_compare_and_set_and_recorded(store: StateStore) -> None:
    store.add_new([record(1)])
    assert not store.transition(
        "r0001", IN_FLIGHT, SUCCEEDED
    )  # not in flight: refused, nothing written
    assert store.transition("r0001", PENDING, SUBMITTING, "claimed")
    assert store.transition("r0001", SUBMITTING, IN_FLIGHT, "task created", task_id="t")
    assert [t[1] for t in store.transitions("r0001")] == [PENDING, SUBMITTING, IN_FLIGHT]
    with pytest.raises(AssertionError, match="not columns"):
        store.transition("r0001", IN_FLIGHT, SUCCEEDED, secret_column=1)


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
    assert store.counts() == {SUBMITTING: 5, PENDING: 35}


def test_claims_reserve_budget_until_the_task_ends(store: StateStore) -> None:
    store.add_new([record(i, estimate=0.4) for i in range(5)])
    daily = [SpendCap("daily", 1.0, since=0)]
    outcomes = [store.claim(f"r{i:04d}", "novita", 100, 0.4, True, daily) for i in range(5)]
    assert outcomes[:2] == [None, None]
    assert "daily spend cap $1.00 would be exceeded" in (outcomes[2] or "")
    # a finished request costs what it really cost, which frees the rest of its reservation
    store.transition("r0000", SUBMITTING, SUCCEEDED, cost_usd=0.1)
    assert store.claim("r0002", "novita", 100, 0.4, True, daily) is None
    assert store.spend() == pytest.approx(0.1 + 0.4 + 0.4)


def test_batch_and_run_caps_are_scoped(store: StateStore) -> None:
    store.add_new([record(i, estimate=0.5) for i in range(4)])
    store.add_new([RequestRecord(request_id="other", batch="c", catalog_row=9, provider="novita", model="m",
                                 request={}, status=PENDING, cost_usd_estimated=0.5)])  # fmt: skip
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
    store.transition("r0001", SUBMITTING, SUBMITTING, submitted_at=time.time() - 3600)
    assert store.flag_stale_submissions(older_than_s=60) == ["r0001"]
    flagged = store.get("r0001")
    assert (
        flagged is not None
        and flagged.status == UNKNOWN
        and "resolve-unknown" in (flagged.error_message or "")
    )
    assert store.counts() == {UNKNOWN: 1, PENDING: 1}


def test_unknown_outcomes_keep_their_budget_reservation(store: StateStore) -> None:
    store.add_new([record(1, estimate=0.6), record(2, estimate=0.6)])
    daily = [SpendCap("daily", 1.0, since=0)]
    assert store.claim("r0001", "novita", 10, 0.6, True, daily) is None
    store.transition("r0001", SUBMITTING, UNKNOWN, error_kind="outcome_unknown")
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


def test_a_task_the_provider_finished_frees_its_slot_before_the_video_is_copied(
    store: StateStore,
) -> None:
    store.add_new([record(i) for i in range(3)])
    assert store.claim("r0000", "novita", 1, 1.0, True) is None
    assert "1 tasks in flight (limit 1)" in (store.claim("r0001", "novita", 1, 1.0, True) or "")
    store.transition("r0000", SUBMITTING, IN_FLIGHT, task_id="t0")
    store.transition("r0000", IN_FLIGHT, FETCHING, cost_usd=1.0)  # succeeded there; copy under way
    assert store.claim("r0001", "novita", 1, 1.0, True) is None
    assert store.active_by_provider() == {"novita": 1}
    # ...but its cost stays committed against budgets until it is settled
    assert store.spend() == pytest.approx(2.0)
