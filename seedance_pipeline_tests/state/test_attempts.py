"""A retry as the store makes it: the ended attempt archived, the request pending again, once."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from seedance_pipeline.state.claims import start_of_utc_day
from seedance_pipeline.state.lifecycle import Move, RequestStatus
from seedance_pipeline.state.schema import requests_table
from seedance_pipeline.state.store import RequestRecord, StateStore
from seedance_pipeline_tests.state.stored import insert_as_is

S = RequestStatus


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    store = StateStore(state_url)
    yield store
    store.engine.dispose()


def ended(
    request_id: str, status: RequestStatus, cost: float, seed: int | None = 7
) -> RequestRecord:
    return RequestRecord(request_id=request_id, batch="b", catalog_row=1, provider="novita",
                         model="m", request={"image": "x", "seed": seed}, status=status,
                         task_id=f"task-{request_id}", error_kind="task_failed", error_message="no",
                         cost_usd=cost, cost_usd_estimated=0.2, submitted_at=time.time(),
                         completed_at=time.time(), run_id="first")  # fmt: skip


def test_a_new_attempt_archives_the_last_and_counts_it_once(store: StateStore) -> None:
    insert_as_is(store, [ended("r1", S.FAILED, cost=0.05)])
    assert store.new_attempt("r1", Move.RETRY)
    assert not store.new_attempt("r1", Move.RETRY)  # already pending: a second retry does nothing
    record = store.get("r1")
    assert record is not None and record.status == S.PENDING
    assert (record.task_id, record.cost_usd, record.error_kind, record.submitted_at) == (None,) * 4
    assert (record.attempts_before, record.cost_usd_before, record.attempts) == (1, 0.05, 1)
    (archived,) = store.attempts("r1")
    assert (archived["attempt"], archived["status"], archived["task_id"]) == (
        1,
        "failed",
        "task-r1",
    )
    assert archived["cost_usd"] == 0.05 and archived["seed"] == 7
    assert store.transitions("r1")[-1] == ("failed", "pending", "retry: a new attempt")
    # The earlier attempt's cost still counts against today's cap and the batch's.
    assert store.spend(start_of_utc_day()) == pytest.approx(0.05)
    assert store.spend(batch="b") == pytest.approx(0.05)


def test_a_new_attempt_may_carry_a_new_seed_and_never_starts_from_unknown_or_success(
    store: StateStore,
) -> None:
    insert_as_is(store, [ended("r1", S.EXPIRED, 0.0), ended("r2", S.UNKNOWN, 0.0),
                         ended("r3", S.SUCCEEDED, 0.1)])  # fmt: skip
    assert store.new_attempt("r1", Move.RETRY, {"image": "x", "seed": 99})
    record = store.get("r1")
    assert record is not None and record.request["seed"] == 99
    assert store.attempts("r1")[0]["seed"] == 7
    for request_id in ("r2", "r3"):
        assert not store.new_attempt(request_id, Move.RETRY)
        assert store.attempts(request_id) == []


def test_a_new_attempt_starts_with_no_verdict_deadline_or_counters_of_the_last(
    store: StateStore,
) -> None:
    """What the last attempt measured or counted (QC verdict, unreadable polls, download tries,
    its call's deadline, a cost anomaly) belongs to it, not to the new one."""
    last = ended("r1", S.FAILED, cost=0.05)
    insert_as_is(store, [last])
    with store.engine.begin() as conn:
        conn.execute(sa.update(requests_table).values(
            qc_status="fail", qc_reasons="black", malformed_polls=3, fetch_attempts=2,
            call_deadline_at=time.time(), cost_anomaly="negative usage"))  # fmt: skip
    assert store.new_attempt("r1", Move.RETRY)
    record = store.get("r1")
    assert record is not None
    assert (record.qc_status, record.qc_reasons, record.cost_anomaly) == (None, None, None)
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(requests_table)).one()
    assert (row.malformed_polls, row.fetch_attempts, row.call_deadline_at) == (None, None, None)


def test_a_qc_retry_starts_only_from_a_video_that_failed_qc(store: StateStore) -> None:
    records = [ended(f"r{n}", S.SUCCEEDED, 0.1) for n in range(3)]
    for record, verdict in zip(records, ("fail", "warn", None), strict=True):
        record.qc_status, record.video_uri = verdict, f"/v/{record.request_id}.mp4"
    insert_as_is(store, records)
    for request_id in ("r1", "r2"):
        assert not store.new_attempt(request_id, Move.QC_RETRY)
    assert not store.new_attempt("r0", Move.RETRY)  # a plain retry never starts from success
    assert store.new_attempt("r0", Move.QC_RETRY, {"image": "x", "seed": 42})
    (archived,) = store.attempts("r0")
    assert (archived["qc_status"], archived["video_uri"], archived["seed"]) == (
        "fail", "/v/r0.mp4", 7,
    )  # fmt: skip
    assert store.get("r0").request["seed"] == 42
