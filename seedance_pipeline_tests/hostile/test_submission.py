"""Creates under hostile answers, on SQLite and PostgreSQL: a garbled answer settles its own row as
an unknown outcome and no other; a negative reported usage never lifts a spend cap; a submission in
doubt after a crash is settled once its call's recorded deadline has passed, not after 15 minutes."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from seedance_pipeline.emulator.video import render_mp4
from seedance_pipeline.polling.poll import poll_once
from seedance_pipeline.providers import ErrorKind, GenerationRequest, adapter_for
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.state.schema import provider_locks_table
from seedance_pipeline.state.store import RequestRecord, StateStore
from seedance_pipeline.state.writes import submission_writes
from seedance_pipeline.submission.submit import CLAIM_MARGIN_S, SubmitReport, submit_pending
from seedance_pipeline_tests.hostile.providers import ARK_TASKS, ark_task, client
from seedance_pipeline_tests.hostile.server import Answer, HostileServer
from seedance_pipeline_tests.state.stored import insert_as_is

MODEL = adapter_for("modelark").spec.default_model


def pending(store: StateStore, n: int) -> list[str]:
    records = []
    for i in range(n):
        request = GenerationRequest("modelark", MODEL, "https://images.example/a.png", f"p{i}",
                                    resolution="480p", duration=5)  # fmt: skip
        records.append(RequestRecord(
            request_id=f"r{i}", batch="b", catalog_row=i + 1, provider="modelark", model=MODEL,
            request=asdict(request), status=RequestStatus.PENDING,
            cost_usd_estimated=adapter_for("modelark").estimate_cost(request).usd,
        ))  # fmt: skip
    insert_as_is(store, records)
    return [r.request_id for r in records]


def submit(
    server: HostileServer, settings: PipelineSettings, timeout_s: float = 2.0
) -> SubmitReport:
    async def go() -> SubmitReport:
        store = settings.store()
        async with client(server, "modelark", timeout_s) as c, submission_writes(store) as writes:
            return await submit_pending(store, writes, c, settings, run_id="run-1")

    return asyncio.run(go())


def settings_for(tmp_path: Path, state_url: str, **given: Any) -> PipelineSettings:
    values: dict[str, Any] = {"daily_budget_usd": None} | given
    return PipelineSettings(data_dir=str(tmp_path / "data"), state_url=state_url, **values)


def test_a_garbled_create_answer_settles_only_its_own_row(
    hostile: HostileServer, tmp_path: Path, state_url: str
) -> None:
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    pending(store, 3)
    hostile.script("POST", ARK_TASKS, Answer(body=b"[" * 100_000 + b"]" * 100_000),
                   Answer(json={"id": "cgt-2"}), Answer(json={"id": "cgt-3"}))  # fmt: skip
    report = submit(hostile, settings)
    assert report.unknown == 1
    # The unknown outcome stops the pass: a claim that lands after it goes back to pending, one
    # that landed before went out (on PostgreSQL claims travel while the calls do, so either).
    assert store.counts().get(RequestStatus.UNKNOWN) == 1 and not report.failed
    submit(hostile, settings)  # the next pass sends what waited
    counts = store.counts()
    assert counts == {RequestStatus.UNKNOWN: 1, RequestStatus.IN_FLIGHT: 2}, counts
    assert len([c for c in hostile.calls if c.method == "POST"]) == 3  # none sent twice
    (unknown,) = store.records(statuses=[RequestStatus.UNKNOWN])
    assert unknown.error_kind == ErrorKind.OUTCOME_UNKNOWN and "malformed" in (
        unknown.error_message or ""
    )


def test_a_negative_reported_usage_never_lifts_the_daily_cap(
    hostile: HostileServer, tmp_path: Path, state_url: str
) -> None:
    estimate = (
        adapter_for("modelark")
        .estimate_cost(GenerationRequest("modelark", MODEL, "x", resolution="480p", duration=5))
        .usd
    )
    settings = settings_for(tmp_path, state_url, daily_budget_usd=estimate * 1.5)
    store = settings.store()
    pending(store, 4)
    ids = iter(range(10**6))
    hostile.script("POST", ARK_TASKS, lambda call: Answer(json={"id": f"cgt-{next(ids)}"}))
    hostile.script("GET", f"{ARK_TASKS}/*", lambda call: Answer(json=ark_task(
        call.path.rsplit("/", 1)[1], tokens=-1_000_000, video_url=f"{hostile.url}/v/1.mp4")))  # fmt: skip
    hostile.script("GET", "/v/*", Answer(body=render_mp4(None, 64, 64, 1)))

    async def poll() -> None:
        async with client(hostile, "modelark") as c:
            await poll_once(store, {"modelark": c}, settings, time_box_s=8)

    for _ in range(4):  # submit, finish at a negative usage, try to submit again
        submit(hostile, settings)
        asyncio.run(poll())
    assert len([c for c in hostile.calls if c.method == "POST"]) == 1  # one task, not four
    assert store.counts().get(RequestStatus.SUCCEEDED) == 1
    assert 0 < store.spend() <= settings.daily_budget_usd  # type: ignore[operator]


def test_a_submission_records_when_its_call_can_no_longer_be_running(
    hostile: HostileServer, tmp_path: Path, state_url: str
) -> None:
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    (request_id,) = pending(store, 1)
    hostile.script("POST", ARK_TASKS, Answer(json={"id": "cgt-1"}))
    submit(hostile, settings, timeout_s=3.0)
    record = store.get(request_id)
    assert record is not None and record.submitted_at is not None
    deadline = client(hostile, "modelark", 3.0).config.submit_deadline_s + CLAIM_MARGIN_S
    assert record.call_deadline_at == pytest.approx(record.submitted_at + deadline)
    assert deadline < 120  # minutes at most, not the 900 s of old


def test_a_submission_in_doubt_is_settled_once_its_deadline_has_passed(
    tmp_path: Path, state_url: str
) -> None:
    store = settings_for(tmp_path, state_url).store()
    first, second = pending(store, 2)
    # As a process killed mid-call leaves them: claimed, no answer written.
    assert store.claim(first, "modelark", 10, 0.1, sandbox=False, call_deadline_s=60) is None
    assert (
        store.claim(second, "modelark", 10, 0.1, sandbox=False) is None
    )  # an older version's claim
    now = time.time()
    assert store.flag_stale_submissions(900, now=now + 30) == []
    assert store.flag_stale_submissions(900, now=now + 61) == [first]  # a minute, not 15
    record = store.get(first)
    assert record is not None and record.status == RequestStatus.UNKNOWN
    assert store.get(second).status == RequestStatus.SUBMITTING  # type: ignore[union-attr]
    assert store.flag_stale_submissions(900, now=now + 901) == [second]


def test_stale_submission_s_still_bounds_a_later_deadline(tmp_path: Path, state_url: str) -> None:
    store = settings_for(tmp_path, state_url).store()
    (request_id,) = pending(store, 1)
    assert store.claim(request_id, "modelark", 10, 0.1, sandbox=False, call_deadline_s=3600) is None
    assert store.flag_stale_submissions(900, now=time.time() + 60) == []
    assert store.flag_stale_submissions(30, now=time.time() + 60) == [request_id]


class _SlowClaimOf:
    """The pass's writes, with one request's claim still on its way for half a second."""

    def __init__(self, writes: Any, request_id: str) -> None:
        self.writes, self.request_id = writes, request_id

    async def claim(self, request_id: str, *args: Any, **kwargs: Any) -> str | None:
        if request_id == self.request_id:
            await asyncio.sleep(0.5)
        return await self.writes.claim(request_id, *args, **kwargs)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:  # the other writes as they are
        return getattr(self.writes, name)


def test_a_claim_made_while_submission_stopped_waits_without_a_call(
    hostile: HostileServer, tmp_path: Path, state_url: str
) -> None:
    """The provider refuses the account while another request's claim is on its way: that
    request goes back to pending instead of being sent after the stop."""
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    _, second = pending(store, 2)
    hostile.script("POST", ARK_TASKS, Answer(status=401, json={"error": {
        "code": "AuthenticationError", "message": "the API key is not valid"}}))  # fmt: skip

    async def go() -> SubmitReport:
        async with client(hostile, "modelark") as c, submission_writes(store) as writes:
            slow = _SlowClaimOf(writes, second)
            return await submit_pending(store, slow, c, settings, run_id="run-1")

    report = asyncio.run(go())
    assert report.stopped and "API key" in report.stopped
    assert len([c for c in hostile.calls if c.method == "POST"]) == 1
    assert store.counts() == {RequestStatus.PENDING: 2}
    assert store.transitions(second)[-1][1:] == ("pending", f"back to pending: {report.stopped}")


@pytest.mark.parametrize("state_url", ["postgresql"], indirect=True)
def test_a_429_while_another_process_holds_the_providers_lock_row_never_stalls_the_pass(
    hostile: HostileServer, tmp_path: Path, state_url: str
) -> None:
    """The 429's change of the adaptive limit waits for the lock row beside the pass's other
    calls, not in front of them: a claim's pipeline holds that row until the loop sends its Sync,
    so a wait that blocked the loop could never end (the deadlock CI once caught)."""
    settings = settings_for(tmp_path, state_url)
    store, other = settings.store(), StateStore(state_url)
    pending(store, 1)
    limit = settings.in_flight_limit("modelark")
    held: list[float] = []

    def hold_the_lock_then_refuse(call: Any) -> Answer:
        conn = other.engine.connect()
        conn.execute(sa.update(provider_locks_table).where(provider_locks_table.c.provider
                     == "modelark").values(claims=provider_locks_table.c.claims + 1))  # fmt: skip
        held.append(time.monotonic())

        def release() -> None:
            conn.commit()
            conn.close()

        threading.Timer(1.0, release).start()
        return Answer(
            status=429, json={"error": {"code": "RateLimitExceeded", "message": "slow down"}}
        )

    hostile.script("POST", ARK_TASKS, hold_the_lock_then_refuse)
    ticks: list[float] = []

    async def go() -> SubmitReport:
        async def ticker() -> None:
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        ticking = asyncio.create_task(ticker())
        async with client(hostile, "modelark") as c, submission_writes(store) as writes:
            report = await submit_pending(store, writes, c, settings, run_id="run-1")
        ticking.cancel()
        return report

    try:
        report = asyncio.run(go())
        assert report.stopped and store.counts() == {RequestStatus.PENDING: 1}
        assert store.current_limit("modelark", limit) == limit // 2  # written, once it could be
        while_held = [t for t in ticks if held[0] <= t <= held[0] + 0.9]
        assert len(while_held) >= 30, f"the loop ran {len(while_held)} times while the row was held"
    finally:
        other.engine.dispose()
