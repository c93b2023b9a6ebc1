"""The lifecycle table: every move the pipeline makes is in it, and the store refuses any other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from seedance_pipeline.state.lifecycle import ALLOWED, IllegalMove, Move, RequestStatus
from seedance_pipeline.state.store import RequestRecord, StateStore

S = RequestStatus


def reachable(start: RequestStatus | None) -> set[RequestStatus]:
    seen: set[RequestStatus] = set()
    frontier = set(ALLOWED[start])
    while frontier:
        status = frontier.pop()
        seen.add(status)
        frontier |= ALLOWED[status] - seen
    return seen


def test_every_named_move_stays_inside_the_table() -> None:
    for move in Move:
        assert move.sources and move.targets and move.detail, move
        for source in move.sources:
            assert set(move.targets) <= ALLOWED[source], (move, source)


def test_the_table_allows_only_what_a_named_move_or_the_catalog_makes() -> None:
    made = {(None, S.PENDING), (None, S.REJECTED)}  # the catalog adds requests (`add_new`)
    made |= {(s, t) for move in Move for s in move.sources for t in move.targets}
    assert {(s, t) for s, targets in ALLOWED.items() for t in targets} == made


def test_every_status_is_reachable_from_pending_but_rejected_which_only_the_catalog_makes() -> None:
    assert set(ALLOWED) == {None, *RequestStatus}
    assert reachable(S.PENDING) == set(RequestStatus) - {S.REJECTED}
    assert reachable(None) == set(RequestStatus)


def test_finished_requests_move_again_only_as_a_retry_and_never_from_unknown() -> None:
    assert ALLOWED[S.REJECTED] == frozenset()
    # A succeeded request moves again only as a QC retry, or to restore its best attempt.
    assert ALLOWED[S.SUCCEEDED] == frozenset({S.PENDING, S.SUCCEEDED})
    assert (Move.QC_RETRY.sources, Move.QC_RETRY.targets) == ((S.SUCCEEDED,), (S.PENDING,))
    assert (Move.KEEP_BEST.sources, Move.KEEP_BEST.targets) == ((S.SUCCEEDED,), (S.SUCCEEDED,))
    for status in (S.FAILED, S.EXPIRED, S.CANCELLED):
        assert ALLOWED[status] == frozenset({S.PENDING}), status
    assert set(Move.RETRY.sources) == {S.FAILED, S.EXPIRED, S.CANCELLED}
    assert S.UNKNOWN not in Move.RETRY.sources


def test_a_move_with_several_targets_needs_one_of_them() -> None:
    assert Move.TASK_ENDED.target(S.EXPIRED) == S.EXPIRED
    assert Move.KEEP_VIDEO.target() == S.SUCCEEDED
    with pytest.raises(IllegalMove, match="TASK_ENDED goes to one of failed, expired, cancelled"):
        Move.TASK_ENDED.target()
    with pytest.raises(IllegalMove):
        Move.TASK_ENDED.target(S.SUCCEEDED)


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    store = StateStore(state_url)
    yield store
    store.engine.dispose()


def pending(request_id: str, status: RequestStatus = S.PENDING) -> RequestRecord:
    return RequestRecord(request_id=request_id, batch="b", catalog_row=1, provider="novita",
                         model="m", request={}, status=status)  # fmt: skip


def transition_rows(store: StateStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM transitions")).scalar_one())


def test_a_move_outside_the_table_is_refused_and_writes_nothing(store: StateStore) -> None:
    store.add_new([pending("r1")])
    # The compare-and-set alone would let each of these through: the request is in `expected`.
    with pytest.raises(IllegalMove, match="may not move from pending to succeeded"):
        store.transition("r1", S.PENDING, S.SUCCEEDED, cost_usd=1.0)
    with pytest.raises(IllegalMove, match="may not move from pending to in_flight"):
        store.transition("r1", (S.PENDING, S.SUBMITTING), S.IN_FLIGHT, task_id="t")
    assert store.move("r1", Move.CLAIM)
    with pytest.raises(IllegalMove):
        store.move("r1", Move.TASK_ENDED, to=S.SUCCEEDED)
    with pytest.raises(IllegalMove, match="enter the store as pending or rejected, not succeeded"):
        store.add_new([pending("r2", S.SUCCEEDED), pending("r3")])
    after = store.get("r1")
    assert after is not None
    assert (after.status, after.cost_usd, after.task_id) == (S.SUBMITTING, None, None)
    assert [t[1] for t in store.transitions("r1")] == [S.PENDING, S.SUBMITTING]
    assert store.get("r2") is None and store.get("r3") is None  # the whole catalog read refused
    assert transition_rows(store) == 2


def test_named_moves_record_their_detail_and_statuses_read_back_as_the_enum(
    store: StateStore,
) -> None:
    store.add_new([pending("r1")])
    assert store.move("r1", Move.CLAIM)
    assert store.move("r1", Move.BACK_TO_PENDING, reason="HTTP 429 [rate_limited]: slow down")
    assert not store.move("r1", Move.TASK_CREATED, task_id="t")  # pending, not submitting
    assert store.transitions("r1") == [
        (None, "pending", None),
        ("pending", "submitting", "claimed"),
        ("submitting", "pending", "back to pending: HTTP 429 [rate_limited]: slow down"),
    ]
    got = store.get("r1")
    assert got is not None and got.status is S.PENDING
