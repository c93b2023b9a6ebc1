"""A polling pass under hostile answers, on SQLite and PostgreSQL: no exception escapes it, one bad
task never stops the others, a reported usage is never trusted below zero or beyond reason, and
every bounded thing (unreadable answers, time in flight, attempts to keep a video, a download's
deadline and size) ends its task in a terminal status with the reason."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from seedance_pipeline.emulator.video import render_mp4
from seedance_pipeline.polling import poll as polling
from seedance_pipeline.polling.poll import PollReport, poll_once
from seedance_pipeline.providers import ErrorKind, GenerationRequest, adapter_for
from seedance_pipeline.providers.client import ProviderClient
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.state.store import RequestRecord, StateStore
from seedance_pipeline.storage import videos
from seedance_pipeline_tests.hostile.providers import (
    AIML_GENERATION,
    ARK_TASKS,
    KEY,
    NOVITA_RESULT,
    ark_task,
    client,
    novita_task,
)
from seedance_pipeline_tests.hostile.server import Answer, HostileServer, drip, endless
from seedance_pipeline_tests.state.stored import insert_as_is

MP4 = render_mp4(None, 64, 64, 1)


@pytest.fixture(autouse=True)
def downloads_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "downloads"
    monkeypatch.setattr(videos, "DOWNLOADS", folder)
    return folder


def in_flight(store: StateStore, provider: str, task_id: str, **values: Any) -> str:
    model = adapter_for(provider).spec.default_model
    request = GenerationRequest(provider, model, "https://images.example/a.png", "hi",
                                resolution="480p", duration=5)  # fmt: skip
    record = RequestRecord(
        request_id=f"r-{provider}-{task_id}"[:64], batch="b", catalog_row=1, provider=provider,
        model=model, request=asdict(request), status=RequestStatus.IN_FLIGHT, task_id=task_id,
        submitted_at=time.time(), cost_usd_estimated=adapter_for(provider).estimate_cost(request).usd,
    )  # fmt: skip
    for name, value in values.items():
        setattr(record, name, value)
    insert_as_is(store, [record])
    return record.request_id


def settings_for(tmp_path: Path, state_url: str) -> PipelineSettings:
    return PipelineSettings(data_dir=str(tmp_path / "data"), state_url=state_url,
                            daily_budget_usd=None)  # fmt: skip


def poll(
    server: HostileServer, settings: PipelineSettings, providers: list[str], time_box_s: float = 8
) -> PollReport:
    async def go() -> PollReport:
        clients: dict[str, ProviderClient] = {p: client(server, p) for p in providers}
        try:
            return await poll_once(settings.store(), clients, settings, time_box_s=time_box_s)
        finally:
            for c in clients.values():
                await c.aclose()

    return asyncio.run(go())


def everything_stored(store: StateStore) -> str:
    with store.engine.connect() as conn:
        rows = [*conn.execute(sa.text("SELECT * FROM requests")),
                *conn.execute(sa.text("SELECT * FROM transitions"))]  # fmt: skip
    return "\n".join(map(str, rows))


@pytest.mark.parametrize(
    "bad", [{"status": ["succeeded"]}, {"status": "succeeded", "content": "x"}, {"status": "warp"}]
)
def test_a_malformed_poll_answer_never_stops_another_providers_tasks(
    hostile: HostileServer, tmp_path: Path, state_url: str, bad: dict[str, Any]
) -> None:
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    ark = in_flight(store, "modelark", "cgt-bad")
    novita = in_flight(store, "novita", "nv-1")
    hostile.script("GET", f"{ARK_TASKS}/*", Answer(json=ark_task("cgt-bad", **bad)))
    hostile.script("GET", NOVITA_RESULT, Answer(json=novita_task("nv-1")))
    report = poll(hostile, settings, ["modelark", "novita"])
    assert report.errors == 1
    assert store.get(novita).status == RequestStatus.FAILED  # type: ignore[union-attr]
    still = store.get(ark)
    assert still is not None and still.status == RequestStatus.IN_FLIGHT
    assert still.malformed_polls == 1


def test_a_task_that_keeps_answering_nonsense_ends_unknown_with_the_reason(
    hostile: HostileServer, tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(polling, "MAX_MALFORMED_POLLS", 3)
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    ark = in_flight(store, "modelark", "cgt-bad")
    hostile.script("GET", f"{ARK_TASKS}/*", Answer(json=ark_task("cgt-bad", status="warp")))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            poll(hostile, settings, ["modelark"])
    record = store.get(ark)
    assert record is not None and record.status == RequestStatus.UNKNOWN
    assert record.error_kind == ErrorKind.MALFORMED_ANSWERS and "warp" in (
        record.error_message or ""
    )
    assert any(r.levelno >= logging.ERROR and ark in r.getMessage() for r in caplog.records)
    assert store.spend() >= record.cost_usd_estimated > 0  # its reservation holds: it may bill


def test_a_good_answer_resets_the_count_of_unreadable_ones(
    hostile: HostileServer, tmp_path: Path, state_url: str
) -> None:
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    ark = in_flight(store, "modelark", "cgt-1")
    hostile.script("GET", f"{ARK_TASKS}/*", Answer(json=ark_task("cgt-1", status="warp")),
                   Answer(json=ark_task("cgt-1", status="running")))  # fmt: skip
    poll(hostile, settings, ["modelark"])
    poll(hostile, settings, ["modelark"])
    assert not store.get(ark).malformed_polls  # type: ignore[union-attr]


def test_a_task_past_its_documented_lifetime_ends_unknown(
    hostile: HostileServer, tmp_path: Path, state_url: str
) -> None:
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    old = time.time() - 172_800 - 2 * 3600  # ModelArk's default lifetime, plus more than the margin
    ark = in_flight(store, "modelark", "cgt-old", submitted_at=old)
    young = in_flight(store, "modelark", "cgt-young", submitted_at=time.time() - 3600)
    hostile.script("GET", f"{ARK_TASKS}/*", Answer(json=ark_task("x", status="running")))
    poll(hostile, settings, ["modelark"])
    record = store.get(ark)
    assert record is not None and record.status == RequestStatus.UNKNOWN
    assert record.error_kind == ErrorKind.TOO_LONG_IN_FLIGHT and "lifetime" in (
        record.error_message or ""
    )
    assert store.get(young).status == RequestStatus.IN_FLIGHT  # type: ignore[union-attr]
    assert [c.path for c in hostile.calls] == [f"{ARK_TASKS}/cgt-young"]


@pytest.mark.parametrize(
    ("provider", "route", "answer"),
    [
        (
            "modelark",
            f"{ARK_TASKS}/*",
            lambda url: ark_task("t-1", tokens=-1_000_000, video_url=url),
        ),
        ("modelark", f"{ARK_TASKS}/*", lambda url: ark_task("t-1", tokens=10**30, video_url=url)),
        ("modelark", f"{ARK_TASKS}/*", lambda url: ark_task("t-1", tokens="NaN", video_url=url)),
        (
            "aimlapi",
            AIML_GENERATION,
            lambda url: {
                "id": "t-1",
                "status": "completed",
                "video": {"url": url},
                "meta": {"usage": {"credits_used": -2e7}},
            },
        ),
        (
            "aimlapi",
            AIML_GENERATION,
            lambda url: {
                "id": "t-1",
                "status": "completed",
                "video": {"url": url},
                "meta": {"usage": {"credits_used": 10**30}},
            },
        ),
    ],
    ids=["ark-negative", "ark-10e30", "ark-nan", "aiml-negative", "aiml-10e30"],
)
def test_an_untrusted_usage_falls_back_to_the_formula_and_says_so(
    hostile: HostileServer, tmp_path: Path, state_url: str, provider: str, route: str, answer: Any
) -> None:
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    request_id = in_flight(store, provider, "t-1")
    hostile.script("GET", route, Answer(json=answer(f"{hostile.url}/v/t-1.mp4")))
    hostile.script("GET", "/v/*", Answer(body=MP4))
    poll(hostile, settings, [provider])
    record = store.get(request_id)
    assert record is not None and record.status == RequestStatus.SUCCEEDED, record
    formula = adapter_for(provider).estimate_cost(GenerationRequest(**record.request))
    assert record.cost_usd == pytest.approx(formula.usd)
    assert record.tokens == formula.tokens
    assert record.cost_anomaly  # the anomaly is on the row
    assert 0 < store.spend() <= formula.usd + 1e-9


def test_a_cost_written_below_zero_is_stored_as_zero(tmp_path: Path, state_url: str) -> None:
    from seedance_pipeline.state.lifecycle import Move

    store = settings_for(tmp_path, state_url).store()
    request_id = in_flight(store, "novita", "nv-1")
    store.move(request_id, Move.TASK_ENDED, to=RequestStatus.FAILED, cost_usd=-7.2, tokens=10**30)
    record = store.get(request_id)
    assert record is not None and record.cost_usd == 0.0 and record.tokens is None
    assert store.spend() == 0.0


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://videos.example/v.mp4",
        "gopher://x/",
        "http://videos.example/v.mp4",
    ],
)
def test_a_video_url_outside_the_policy_is_lost_at_once(
    hostile: HostileServer,
    tmp_path: Path,
    state_url: str,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The provider's base URL is made to look remote, so loopback and http are refused as in production.
    monkeypatch.setattr(videos.DownloadPolicy, "for_base_url", classmethod(lambda cls, _: cls()))
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    request_id = in_flight(store, "modelark", "t-1")
    hostile.script("GET", f"{ARK_TASKS}/*", Answer(json=ark_task("t-1", video_url=url)))
    poll(hostile, settings, ["modelark"])
    record = store.get(request_id)
    assert record is not None and record.status == RequestStatus.SUCCEEDED
    assert record.error_kind == ErrorKind.VIDEO_LOST and "refused" in (record.error_message or "")


def test_a_video_on_loopback_is_refused_unless_the_provider_is_local(
    hostile: HostileServer, tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(videos.DownloadPolicy, "for_base_url", classmethod(lambda cls, _: cls()))
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    request_id = in_flight(store, "modelark", "t-1")
    hostile.script("GET", f"{ARK_TASKS}/*",
                   Answer(json=ark_task("t-1", video_url="https://127.0.0.1:1/_emulator/audit")))  # fmt: skip
    poll(hostile, settings, ["modelark"])
    record = store.get(request_id)
    assert record is not None and record.error_kind == ErrorKind.VIDEO_LOST
    assert "local" in (record.error_message or "")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (Answer(body=b"ffconcat version 1.0\nfile /etc/passwd\n"), "ftyp"),
        (Answer(chunks=endless(b"<html>" * 1000)), "ftyp"),
        (Answer(chunks=endless(first=MP4[:64])), "larger"),
        (Answer(body=MP4[:32] + b"ffconcat version 1.0\nfile a.mp4\n"), "not a readable video"),
    ],
    ids=["ffconcat", "endless-html", "endless-mp4", "ftyp-then-text"],
)
def test_a_video_body_that_is_not_a_bounded_mp4_is_lost_and_leaves_no_file(
    hostile: HostileServer, tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch,
    body: Answer, why: str, downloads_folder: Path,
) -> None:  # fmt: skip
    monkeypatch.setattr(videos, "MAX_VIDEO_BYTES", 4 * 2**20)
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    request_id = in_flight(store, "modelark", "t-1")
    hostile.script(
        "GET", f"{ARK_TASKS}/*", Answer(json=ark_task("t-1", video_url=f"{hostile.url}/v/1.mp4"))
    )
    hostile.script("GET", "/v/*", body)
    poll(hostile, settings, ["modelark"])
    record = store.get(request_id)
    assert record is not None and record.status == RequestStatus.SUCCEEDED
    assert record.error_kind == ErrorKind.VIDEO_LOST and why in (record.error_message or "")
    assert hostile.bytes_sent.get("/v/1.mp4", 0) < 64 * 2**20
    assert list(downloads_folder.iterdir()) == []
    assert not list(Path(settings.videos).rglob("*.mp4"))


def test_a_video_that_drips_is_lost_after_bounded_attempts(
    hostile: HostileServer, tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(polling, "MAX_FETCH_ATTEMPTS", 2)
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    request_id = in_flight(store, "modelark", "t-1")
    hostile.script(
        "GET", f"{ARK_TASKS}/*", Answer(json=ark_task("t-1", video_url=f"{hostile.url}/v/1.mp4"))
    )
    hostile.script("GET", "/v/*", Answer(chunks=drip(0.3, first=MP4[:16])))
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        poll(hostile, settings, ["modelark"], time_box_s=1.5)
        assert store.get(request_id).status == RequestStatus.FETCHING  # type: ignore[union-attr]
        poll(hostile, settings, ["modelark"], time_box_s=1.5)
        assert time.monotonic() - started < 10
    record = store.get(request_id)
    assert record is not None and record.status == RequestStatus.SUCCEEDED
    assert record.error_kind == ErrorKind.VIDEO_LOST and "2 attempts" in (
        record.error_message or ""
    )
    assert any(
        r.levelno >= logging.WARNING and "did not finish" in r.getMessage() for r in caplog.records
    )


def test_a_key_echoed_by_a_provider_is_stored_and_logged_nowhere(
    hostile: HostileServer, tmp_path: Path, state_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tmp_path, state_url)
    store = settings.store()
    failed = in_flight(store, "modelark", "t-1")
    errored = in_flight(store, "novita", "nv-1")
    hostile.script("GET", f"{ARK_TASKS}/*", Answer(json=ark_task(
        "t-1", status="failed", error={"code": f"C{KEY}", "message": f"bad key {KEY}\x00"})))  # fmt: skip
    hostile.script("GET", NOVITA_RESULT, Answer(400, json={"reason": f"R{KEY}", "message": KEY}))
    with caplog.at_level(logging.DEBUG):
        poll(hostile, settings, ["modelark", "novita"])
    assert store.get(failed).status == RequestStatus.FAILED  # type: ignore[union-attr]
    assert store.get(errored) is not None
    assert KEY not in everything_stored(store)
    assert KEY not in caplog.text and "***" in (store.get(failed).error_message or "")  # type: ignore[union-attr]
