"""Every provider answer parsed defensively: wrong types, absurd numbers, unknown words, bodies
too large, too deep or never ending each become one classified error for that call (retryable for
a poll, an unknown outcome for a create), and nothing else escapes the client."""

from __future__ import annotations

import asyncio
import time

import pytest

from seedance_pipeline.providers import ErrorKind, GenerationRequest, ProviderError, adapter_for
from seedance_pipeline.providers.client import MALFORMED, ProviderConfig, Secret
from seedance_pipeline.providers.parsing import MAX_JSON_BYTES
from seedance_pipeline_tests.hostile.providers import (
    AIML_GENERATION,
    ARK_TASKS,
    KEY,
    ark_task,
    client,
)
from seedance_pipeline_tests.hostile.server import Answer, HostileServer, drip, endless

DEEP = b"[" * 100_000 + b"]" * 100_000


def _poll_error(server: HostileServer, provider: str, task_id: str = "cgt-1") -> ProviderError:
    async def go() -> ProviderError:
        async with client(server, provider) as c:
            with pytest.raises(ProviderError) as caught:
                await c.poll(task_id)
            return caught.value

    return asyncio.run(go())


@pytest.mark.parametrize(
    "answer",
    [
        Answer(json=ark_task("cgt-1", status=["succeeded"])),
        Answer(json=ark_task("cgt-1", content=["https://v.example/a.mp4"])),
        Answer(json=ark_task("cgt-1", status="vaporised")),
        Answer(json=ark_task("cgt-1", video_url="https://v.example/a\r\nb.mp4")),
        Answer(body=DEEP),
        Answer(body=b'{"id": "cgt-1", "status": "running"'),
        Answer(json=["not", "an", "object"]),
    ],
    ids=[
        "status-list",
        "content-list",
        "unknown-word",
        "crlf-url",
        "deep-json",
        "cut-json",
        "list",
    ],
)
def test_a_malformed_poll_answer_is_one_retryable_error(
    hostile: HostileServer, answer: Answer
) -> None:
    hostile.script("GET", f"{ARK_TASKS}/*", answer)
    error = _poll_error(hostile, "modelark")
    assert error.code == MALFORMED and error.retryable and not error.outcome_unknown


def test_an_infinite_seed_in_a_running_task_is_read_as_no_seed(hostile: HostileServer) -> None:
    hostile.script(
        "GET", f"{ARK_TASKS}/*", Answer(json=ark_task("cgt-1", seed="1e999", status="running"))
    )

    async def go() -> None:
        async with client(hostile, "modelark") as c:
            state = await c.poll("cgt-1")
            assert state.seed_used is None

    asyncio.run(go())


def test_a_poll_body_larger_than_the_cap_is_cut_while_streaming(hostile: HostileServer) -> None:
    hostile.script("GET", f"{ARK_TASKS}/*", Answer(chunks=endless(b"{" + b" " * 65535)))
    error = _poll_error(hostile, "modelark")
    assert error.code == MALFORMED and "limit" in error.message
    assert hostile.bytes_sent[f"{ARK_TASKS}/cgt-1"] < MAX_JSON_BYTES * 4  # not a gigabyte


def test_a_poll_answer_that_drips_ends_at_the_calls_total_deadline(hostile: HostileServer) -> None:
    hostile.script("GET", f"{ARK_TASKS}/*", Answer(chunks=drip(0.2, first=b'{"id": ')))
    started = time.monotonic()
    error = _poll_error(hostile, "modelark")
    assert error.retryable and "no whole answer" in error.message
    assert time.monotonic() - started < 10  # timeout 2 s: at most twice that, never forever


@pytest.mark.parametrize(
    "answer",
    [
        Answer(body=DEEP),
        Answer(json={"id": "cgt-1\r\nX-Injected: 1"}),
        Answer(json={"id": "../../admin/steal"}),
        Answer(json={"id": ["cgt-1"]}),
        Answer(chunks=endless(b"{" + b" " * 65535)),
    ],
    ids=["deep-json", "crlf-id", "dotdot-id", "list-id", "endless"],
)
def test_a_garbled_create_answer_is_an_unknown_outcome(
    hostile: HostileServer, answer: Answer
) -> None:
    hostile.script("POST", ARK_TASKS, answer)
    request = GenerationRequest("modelark", adapter_for("modelark").spec.default_model,
                                "https://images.example/a.png", "hi")  # fmt: skip

    async def go() -> ProviderError:
        async with client(hostile, "modelark") as c:
            with pytest.raises(ProviderError) as caught:
                await c.submit(request)
            return caught.value

    error = asyncio.run(go())
    assert error.outcome_unknown and error.code == MALFORMED and error.sent_at is not None


def test_an_endless_segmind_body_is_cut_at_its_cap(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("seedance_pipeline.providers.client.MAX_INLINE_VIDEO_BYTES", 2**20)
    model = adapter_for("segmind").spec.default_model
    hostile.script(
        "POST", f"/segmind/v1/{model}", Answer(chunks=endless(first=b"\0\0\0\x18ftypisom"))
    )
    request = GenerationRequest("segmind", model, "https://images.example/a.png", "hi")

    async def go() -> ProviderError:
        async with client(hostile, "segmind") as c:
            with pytest.raises(ProviderError) as caught:
                await c.submit(request)
            return caught.value

    error = asyncio.run(go())
    assert error.outcome_unknown and "limit" in error.message
    assert hostile.bytes_sent[f"/segmind/v1/{model}"] < 64 * 2**20


def test_a_task_id_that_leaves_the_api_path_is_never_sent(hostile: HostileServer) -> None:
    hostile.script("GET", "/*", Answer(json=ark_task("x", status="running")))
    for task_id in ("../../admin/steal", "a/b", "a\r\nb", "%2e%2e", "..", ""):
        error = _poll_error(hostile, "modelark", task_id)
        assert error.code == MALFORMED
    assert hostile.calls == []  # no keyed GET went anywhere


def test_a_task_id_is_path_escaped_in_the_url() -> None:
    call = adapter_for("modelark").build_poll("../../admin/steal")
    assert call.path.endswith("/..%2F..%2Fadmin%2Fsteal")


@pytest.mark.parametrize("status", [400, 401, 500])
def test_a_key_echoed_in_an_error_never_reaches_the_message(
    hostile: HostileServer, status: int
) -> None:
    echo = {"error": {"code": f"Bad{KEY}", "message": f"invalid key {KEY} (Bearer {KEY})\x00"}}
    hostile.script("GET", f"{ARK_TASKS}/*", Answer(status, json=echo))
    error = _poll_error(hostile, "modelark")
    assert KEY not in str(error) and KEY not in (error.code or "")
    assert "***" in error.message and "\x00" not in str(error)


def test_a_key_echoed_in_a_failed_task_reason_is_redacted(hostile: HostileServer) -> None:
    failed = ark_task("cgt-1", status="failed", error={"code": "X", "message": f"key {KEY} bad"})
    hostile.script("GET", f"{ARK_TASKS}/*", Answer(json=failed))

    async def go() -> None:
        async with client(hostile, "modelark") as c:
            state = await c.poll("cgt-1")
            assert state.error is not None and KEY not in state.error.message

    asyncio.run(go())


def test_an_error_body_of_any_shape_is_classified_by_its_status(hostile: HostileServer) -> None:
    hostile.script("GET", f"{AIML_GENERATION}", Answer(503, body=DEEP))
    error = _poll_error(hostile, "aimlapi")
    assert error.kind is ErrorKind.TRANSIENT and error.http_status == 503


@pytest.mark.parametrize(
    ("base_url", "refused"),
    [
        ("http://api.example.com", True),
        ("http://10.0.0.8:8080", True),
        ("ftp://api.example.com", True),
        ("https://api.example.com", False),
        ("http://127.0.0.1:9000/novita", False),
        ("http://localhost:9000", False),
        ("http://[::1]:9000", False),
    ],
)
def test_a_key_is_sent_over_plain_http_only_to_loopback(base_url: str, refused: bool) -> None:
    env = {"NOVITA_API_KEY": KEY, "NOVITA_BASE_URL": base_url}
    if refused:
        with pytest.raises(ValueError, match="plain http") as caught:
            ProviderConfig.from_env(adapter_for("novita"), env)
        assert KEY not in str(caught.value)
    else:
        assert ProviderConfig.from_env(adapter_for("novita"), env).api_key == Secret(KEY)


def test_a_create_call_ends_within_its_total_deadline(hostile: HostileServer) -> None:
    hostile.script("POST", ARK_TASKS, Answer(chunks=drip(0.2, first=b"{")))
    request = GenerationRequest("modelark", adapter_for("modelark").spec.default_model,
                                "https://images.example/a.png", "hi")  # fmt: skip

    async def go() -> ProviderError:
        async with client(hostile, "modelark", timeout_s=1.0) as c:
            assert c.config.submit_deadline_s == 2.0  # one attempt of twice the timeout
            with pytest.raises(ProviderError) as caught:
                await c.submit(request)
            return caught.value

    started = time.monotonic()
    error = asyncio.run(go())
    assert error.outcome_unknown and time.monotonic() - started < 6
