"""Every adapter against the emulator over real HTTP: happy paths, each error kind, each quirk."""

from __future__ import annotations

import asyncio
import base64
import io

import av
import httpx
import pytest

from seedance_pipeline.emulator import EmulatorServer, Faults
from seedance_pipeline.providers import (
    ErrorKind,
    GenerationRequest,
    ProviderError,
    TaskStatus,
    adapter_for,
)
from seedance_pipeline.providers.client import NO_RETRY, ProviderClient, ProviderConfig, Secret
from seedance_pipeline_tests.conftest import (
    ASYNC_PROVIDERS,
    MODEL_OF,
    MODELS,
    PROVIDER_PER_API,
    ImageFactory,
    client_for,
    run,
    run_to_end,
)

PROMPT = "a lighthouse at dusk, waves rolling in"


def gen(provider: str, model: str, image: object, **fields: object) -> GenerationRequest:
    fields.setdefault("prompt", PROMPT)
    fields.setdefault("resolution", "480p")
    return GenerationRequest(provider=provider, model=model, image=str(image), **fields)  # type: ignore[arg-type]


def measure(video: bytes) -> tuple[int, int, int, int]:
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.width, stream.height, int(stream.average_rate or 0), frames


@pytest.mark.parametrize("provider,model", MODELS)
def test_happy_path_delivers_a_real_video_of_the_documented_size(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str, model: str
) -> None:
    image = make_image(1280, 720)
    request = gen(provider, model, image, seed=42, duration=5)
    adapter = adapter_for(provider)
    assert adapter.validate(request) == []

    async def go() -> tuple:
        async with client_for(emulator, provider) as client:
            state = await run_to_end(client, request)
        video = state.video_bytes
        if video is None:
            async with httpx.AsyncClient() as plain:  # no credentials on the video host
                video = (await plain.get(state.video_url)).content
        return state, video

    state, video = run(go())
    assert state.status is TaskStatus.SUCCEEDED
    width, height, fps, frames = measure(video)
    assert (fps, frames) == (24, 121)  # a "5 s" clip is 121 frames, as the real service makes
    family = adapter.spec.models[model].family
    expected = {"seedance-1.0": (864, 480), "seedance-1.5": (864, 496)}[family]  # 480p, 16:9 image
    assert (width, height) == expected
    cost = adapter.actual_cost(request, state, (1280, 720))
    assert cost.usd > 0
    if provider != "segmind":
        assert cost.tokens == width * height * 24 * 5 // 1024
    audit = emulator.state.audit(provider)
    assert len(audit) == 1 and audit[0].model == model
    assert all(not d["sent_credentials"] for d in emulator.state.video_downloads)


def test_local_images_go_as_data_uris_and_urls_as_they_are(make_image: ImageFactory) -> None:
    image = make_image(640, 480, "JPEG")
    body = adapter_for("novita").build_submit(gen("novita", "seedance-v1-lite-i2v", image)).json
    assert body is not None
    prefix = "data:image/jpeg;base64,"
    assert body["image"].startswith(prefix)
    assert base64.b64decode(body["image"][len(prefix) :]) == image.read_bytes()
    url = "https://cdn.example.com/cat.png"
    body = adapter_for("novita").build_submit(gen("novita", "seedance-v1-lite-i2v", url)).json
    assert body is not None and body["image"] == url


def test_request_bodies_follow_each_providers_document(make_image: ImageFactory) -> None:
    image = make_image(640, 480)
    pro = adapter_for("novita").build_submit(
        gen(
            "novita",
            "seedance-v1.5-pro-i2v",
            image,
            aspect_ratio="1:1",
            generate_audio=False,
            seed=5,
        )
    )
    assert pro.path == "/v3/async/seedance-v1.5-pro-i2v"
    assert pro.json is not None and pro.json["ratio"] == "1:1" and "aspect_ratio" not in pro.json
    assert pro.json["generate_audio"] is False

    lite = adapter_for("modelark").build_submit(
        gen(
            "modelark",
            "seedance-1-0-lite-i2v-250428",
            image,
            aspect_ratio="16:9",
            duration=5,
            seed=11,
            camera_fixed=False,
            last_image=str(image),
        )
    )
    assert lite.json is not None
    text = lite.json["content"][0]["text"]
    assert text == f"{PROMPT} --rs 480p --rt 16:9 --dur 5 --seed 11 --cf false"
    assert [c.get("role") for c in lite.json["content"][1:]] == ["first_frame", "last_frame"]
    assert "resolution" not in lite.json  # 1.0 models take flags, not fields

    pro_ark = adapter_for("modelark").build_submit(
        gen("modelark", "seedance-1-5-pro-251215", image, seed=3)
    )
    assert (
        pro_ark.json is not None
        and pro_ark.json["seed"] == 3
        and pro_ark.json["resolution"] == "480p"
    )
    assert pro_ark.json["content"][0] == {"type": "text", "text": PROMPT}

    chained = adapter_for("modelark").build_submit(
        gen("modelark", "seedance-1-0-lite-i2v-250428", image, return_last_frame=True)
    )
    assert (
        chained.json is not None and chained.json["return_last_frame"] is True
    )  # a field, no flag
    assert "return_last_frame" not in chained.json["content"][0]["text"]
    refused = adapter_for("novita").validate(
        gen("novita", "seedance-v1-lite-i2v", image, return_last_frame=True)
    )
    assert [(v.field, v.rule) for v in refused] == [("return_last_frame", "unsupported")]

    aiml = adapter_for("aimlapi")
    model = "bytedance/seedance-1-0-lite-i2v"
    plain = aiml.build_submit(gen("aimlapi", model, image))
    unmarked = aiml.build_submit(gen("aimlapi", model, image, watermark=False))
    marked = aiml.build_submit(gen("aimlapi", model, image, watermark=True))
    assert plain.json is not None and unmarked.json is not None and marked.json is not None
    assert "watermark" not in plain.json and "watermark" not in unmarked.json  # deprecated
    assert marked.json["watermark"] is True
    refused = aiml.validate(gen("aimlapi", model, image, seed=-1))  # -1 is not documented there
    assert [v.field for v in refused] == ["seed"] and "leave it empty" in str(refused[0])

    seg = adapter_for("segmind").build_submit(
        gen("segmind", "seedance-v1-lite-image-to-video", image, last_image=str(image))
    )
    assert seg.json is not None
    assert "image_url" not in seg.json  # never together with first/last_frame_url
    assert {"first_frame_url", "last_frame_url"} <= set(seg.json)


def test_a_draft_is_asked_for_and_a_final_sends_only_the_draft_id_and_its_own_fields(
    make_image: ImageFactory,
) -> None:
    image = make_image(1280, 720)
    ark = adapter_for("modelark")
    pro = "seedance-1-5-pro-251215"
    draft = ark.build_submit(gen("modelark", pro, image, draft=True, seed=7))
    assert draft.json is not None and draft.json["draft"] is True
    assert draft.json["resolution"] == "480p" and draft.json["seed"] == 7
    final = ark.build_submit(
        gen("modelark", pro, image, from_draft="cgt-1", resolution="720p", seed=7, duration=6,
            aspect_ratio="16:9", generate_audio=True, camera_fixed=True, watermark=False)
    )  # fmt: skip
    assert final.json == {
        "model": pro,
        "content": [{"type": "draft_task", "draft_task": {"id": "cgt-1"}}],
        "resolution": "720p",
        "watermark": False,
    }  # the draft's text, image, seed, ratio, duration, audio and camera are reused, not sent
    refused = ark.validate(
        gen("modelark", pro, image, draft=True, resolution="720p", return_last_frame=True,
            service_tier="flex", from_draft="cgt-1")
    )  # fmt: skip
    assert sorted(v.field for v in refused) == [
        "draft", "resolution", "return_last_frame", "service_tier"
    ]  # fmt: skip
    other = ark.validate(gen("modelark", "seedance-1-0-pro-250528", image, draft=True))
    assert [(v.field, v.rule) for v in other] == [("draft", "unsupported")]


def test_first_and_last_frame_are_accepted_by_the_emulator(
    emulator: EmulatorServer, make_image: ImageFactory
) -> None:
    first, last = make_image(1280, 720), make_image(720, 1280)
    # Every API whose first model takes a last frame (AI/ML API's does not).
    both = [(p, MODEL_OF[p]) for p in PROVIDER_PER_API if "last_image" in adapter_for(p).spec.models[MODEL_OF[p]].options]  # fmt: skip
    assert len(both) >= 3

    async def go() -> list[TaskStatus]:
        results = []
        for provider, model in both:
            async with client_for(emulator, provider) as client:
                results.append(
                    (
                        await run_to_end(client, gen(provider, model, first, last_image=str(last)))
                    ).status
                )
        return results

    assert run(go()) == [TaskStatus.SUCCEEDED] * len(both)


# -- error kinds -------------------------------------------------------------------------------------


def submit_error(
    emulator: EmulatorServer,
    provider: str,
    image: object,
    api_key: str | None = None,
    **fields: object,
) -> ProviderError:
    model = MODEL_OF[provider]

    async def go() -> None:
        async with client_for(emulator, provider, api_key=api_key, retry=NO_RETRY) as client:
            await client.submit(gen(provider, model, image, **fields))

    with pytest.raises(ProviderError) as caught:
        run(go())
    return caught.value


EXPECTED_CODES = {
    "insufficient_credit": {"novita": (400, "BILLING_BALANCE_NOT_ENOUGH"), "aimlapi": (403, "403"),
                            "segmind": (406, "406"), "modelark": (403, "AccountOverdueError")},
    "rate_limited": {"novita": (429, "RATE_LIMIT_EXCEEDED"), "aimlapi": (429, "429"), "segmind": (429, "429"),
                     "modelark": (429, "RateLimitExceeded.EndpointRPMExceeded")},
    "content_rejected": {"novita": (400, "ILLEGAL_IMAGE_CONTENT"), "segmind": (400, "400"),
                         "aimlapi": (400, "400"), "modelark": (400, "InputImageSensitiveContentDetected")},
}  # fmt: skip


@pytest.mark.parametrize("provider", PROVIDER_PER_API)
def test_insufficient_credit_is_classified_from_each_providers_own_status(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str
) -> None:
    emulator.state.set_faults(provider, Faults(insufficient_credit=True))
    error = submit_error(emulator, provider, make_image())
    assert error.kind is ErrorKind.INSUFFICIENT_CREDIT and not error.retryable
    assert (error.http_status, error.code) == EXPECTED_CODES["insufficient_credit"][provider]
    assert not emulator.state.audit()


@pytest.mark.parametrize("provider", PROVIDER_PER_API)
@pytest.mark.parametrize("retry_after", [None, "7", "Wed, 21 Oct 2099 07:28:00 GMT"])
def test_rate_limits_are_retryable_and_carry_retry_after_when_sent(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str, retry_after: str | None
) -> None:
    emulator.state.set_faults(provider, Faults(rate_limit_burst=1, retry_after=retry_after))
    error = submit_error(emulator, provider, make_image())
    assert error.kind is ErrorKind.RATE_LIMITED and error.retryable and not error.outcome_unknown
    assert (error.http_status, error.code) == EXPECTED_CODES["rate_limited"][provider]
    if retry_after is None:
        assert error.retry_after_s is None
    elif retry_after == "7":
        assert error.retry_after_s == 7
    else:
        assert error.retry_after_s is not None and error.retry_after_s > 86400

    # the burst is over: the next call goes through
    async def again() -> TaskStatus:
        async with client_for(emulator, provider) as client:
            model = MODEL_OF[provider]
            return (await client.submit(gen(provider, model, make_image()))).status

    assert run(again()) in (TaskStatus.QUEUED, TaskStatus.SUCCEEDED)


@pytest.mark.parametrize("provider", PROVIDER_PER_API)
def test_content_rejection_is_its_own_kind_and_its_message_says_each_thing_once(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str
) -> None:
    emulator.state.set_faults(provider, Faults(reject_rate=1.0))
    error = submit_error(emulator, provider, make_image())
    assert error.kind is ErrorKind.CONTENT_REJECTED
    assert (error.http_status, error.code) == EXPECTED_CODES["content_rejected"][provider]
    assert "400 400" not in str(error) and str(error).count("HTTP 400") == 1
    assert "sensitive content" in str(error)


@pytest.mark.parametrize("provider", PROVIDER_PER_API)
def test_revoked_and_missing_keys_are_authentication_errors(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str
) -> None:
    emulator.state.revoked_keys.add("sk-revoked-123")
    error = submit_error(emulator, provider, make_image(), api_key="sk-revoked-123")
    assert error.kind is ErrorKind.AUTHENTICATION
    assert "sk-revoked-123" not in str(error) and "sk-revoked-123" not in repr(error.__dict__)


def test_a_client_without_a_key_refuses_before_calling(
    emulator: EmulatorServer, make_image: ImageFactory
) -> None:
    adapter = adapter_for("novita")
    config = ProviderConfig.from_env(adapter, env={"NOVITA_BASE_URL": emulator.base_url("novita")})
    assert config.api_key is None and not config.sandbox

    async def go() -> None:
        async with ProviderClient(adapter, config) as client:
            await client.submit(gen("novita", "seedance-v1-lite-i2v", make_image()))

    with pytest.raises(ProviderError, match="set NOVITA_API_KEY") as caught:
        run(go())
    assert caught.value.kind is ErrorKind.AUTHENTICATION and not emulator.state.audit()


@pytest.mark.parametrize("provider", PROVIDER_PER_API)
def test_the_emulator_refuses_what_validation_would_have_caught(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str
) -> None:
    error = submit_error(emulator, provider, make_image(1280, 200), duration=7)
    assert error.kind is ErrorKind.INVALID_REQUEST and error.http_status == 400
    assert not emulator.state.audit()


@pytest.mark.parametrize("provider", PROVIDER_PER_API)
def test_5xx_on_create_is_transient_with_unknown_outcome(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str
) -> None:
    emulator.state.set_faults(provider, Faults(server_error_rate=1.0))
    error = submit_error(emulator, provider, make_image())
    assert error.kind is ErrorKind.TRANSIENT and error.retryable
    assert error.outcome_unknown  # a 5xx on create may hide a task: never retried blindly
    assert error.http_status in (500, 502)


@pytest.mark.parametrize("fault", ["drop_rate", "malformed_rate"])
@pytest.mark.parametrize("provider", PROVIDER_PER_API)
def test_lost_or_garbled_create_answers_are_unknown_outcomes_and_the_task_exists(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str, fault: str
) -> None:
    emulator.state.set_faults(provider, Faults(**{fault: 1.0}))
    error = submit_error(emulator, provider, make_image())
    assert error.kind is ErrorKind.TRANSIENT and error.outcome_unknown
    assert len(emulator.state.audit(provider)) == 1  # the provider did create (and bill) it


def test_a_slow_create_times_out_as_an_unknown_outcome(
    emulator: EmulatorServer, make_image: ImageFactory
) -> None:
    emulator.state.set_faults("modelark", Faults(slow_s=1.0))

    async def go() -> None:
        async with client_for(emulator, "modelark", timeout_s=0.3, retry=NO_RETRY) as client:
            await client.submit(gen("modelark", "seedance-1-0-lite-i2v-250428", make_image()))

    with pytest.raises(ProviderError, match="timed out") as caught:
        run(go())
    assert caught.value.kind is ErrorKind.TRANSIENT and caught.value.outcome_unknown


def test_connection_refused_is_transient_and_known_not_sent(make_image: ImageFactory) -> None:
    adapter = adapter_for("novita")
    config = ProviderConfig(
        "novita", "http://127.0.0.1:9", Secret("k"), timeout_s=2, retry=NO_RETRY
    )

    async def go() -> None:
        async with ProviderClient(adapter, config) as client:
            await client.submit(gen("novita", "seedance-v1-lite-i2v", make_image()))

    with pytest.raises(ProviderError) as caught:
        run(go())
    assert caught.value.kind is ErrorKind.TRANSIENT and not caught.value.outcome_unknown


@pytest.mark.parametrize("provider", ASYNC_PROVIDERS)
def test_polls_of_unknown_tasks_are_not_found(emulator: EmulatorServer, provider: str) -> None:
    async def go() -> None:
        async with client_for(emulator, provider, retry=NO_RETRY) as client:
            await client.poll("cgt-20250101000000-nope0")

    with pytest.raises(ProviderError) as caught:
        run(go())
    assert caught.value.kind is ErrorKind.NOT_FOUND and caught.value.http_status == 404


@pytest.mark.parametrize("provider", ASYNC_PROVIDERS)
@pytest.mark.parametrize(
    "fault,kind",
    [("fail_rate", ErrorKind.TASK_FAILED), ("output_reject_rate", ErrorKind.CONTENT_REJECTED),
     ("expire_rate", ErrorKind.TASK_EXPIRED)],
)  # fmt: skip
def test_tasks_that_end_badly_are_classified(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str, fault: str, kind: ErrorKind
) -> None:
    emulator.state.set_faults(provider, Faults(**{fault: 1.0}))

    async def go():  # type: ignore[no-untyped-def]
        async with client_for(emulator, provider) as client:
            return await run_to_end(client, gen(provider, MODEL_OF[provider], make_image()))

    state = run(go())
    assert state.status in (TaskStatus.FAILED, TaskStatus.EXPIRED)
    assert state.error is not None and state.error.kind is kind and state.error.message
    assert adapter_for(provider).actual_cost(gen(provider, MODEL_OF[provider], "x"), state).usd == 0


@pytest.mark.parametrize("provider", ASYNC_PROVIDERS)
def test_polls_survive_transient_faults(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str
) -> None:
    """Polls are safe to retry: a 5xx, a drop or a garbled answer on a poll loses nothing."""

    async def go() -> tuple[list[ErrorKind], TaskStatus]:
        kinds: list[ErrorKind] = []
        async with client_for(emulator, provider, retry=NO_RETRY) as client:
            state = await client.submit(gen(provider, MODEL_OF[provider], make_image()))
            emulator.state.set_faults(
                provider,
                Faults(
                    server_error_rate=0.3, drop_rate=0.2, malformed_rate=0.2, apply_to=("poll",)
                ),
            )
            for _ in range(200):
                try:
                    state = await client.poll(state.task_id or "")
                except ProviderError as error:
                    kinds.append(error.kind)
                    assert not error.outcome_unknown
                if state.status.terminal:
                    break
                await asyncio.sleep(0.02)
        return kinds, state.status

    kinds, status = run(go())
    assert status is TaskStatus.SUCCEEDED
    assert kinds and set(kinds) == {ErrorKind.TRANSIENT}


# -- quirks ------------------------------------------------------------------------------------------


def test_myrouter_15_pro_answers_id_and_novita_answers_task_id(
    emulator: EmulatorServer, make_image: ImageFactory
) -> None:
    async def go() -> list[dict]:
        raws = []
        for provider in ("novita", "myrouter"):
            async with client_for(emulator, provider) as client:
                state = await client.submit(gen(provider, "seedance-v1.5-pro-i2v", make_image()))
                assert state.task_id
                raws.append(state.raw)
        return raws

    novita, myrouter = run(go())
    assert set(novita) == {"task_id"} and set(myrouter) == {"id"}


@pytest.mark.parametrize("provider", ASYNC_PROVIDERS)
def test_documented_quirks_parse_the_same_as_the_plain_shape(
    emulator: EmulatorServer, make_image: ImageFactory, provider: str
) -> None:
    """The emulator alternates plain and quirky answers (string numbers, `extra: {}`, `waiting` and
    `active`, TTL "0"); both must parse to the same facts. ModelArk's string numbers contradict
    its official client, so they are a fault the test turns on."""
    emulator.state.set_faults("modelark", Faults(string_numbers=True))

    async def go():  # type: ignore[no-untyped-def]
        async with client_for(emulator, provider) as client:
            return [
                await run_to_end(client, gen(provider, MODEL_OF[provider], make_image(), seed=77))
                for _ in range(2)
            ]

    plain, quirky = run(go())
    assert plain.status is quirky.status is TaskStatus.SUCCEEDED
    assert plain.tokens == quirky.tokens and plain.credits == quirky.credits
    if provider == "modelark":
        assert plain.tokens == 864 * 480 * 24 * 5 // 1024
        assert (
            isinstance(quirky.raw["duration"], str)
            and quirky.duration_s == 5.0
            and quirky.fps == 24
        )
        assert isinstance(quirky.raw["usage"]["completion_tokens"], str)
    if provider in ("novita", "myrouter"):
        assert plain.seed_used == 77 and isinstance(plain.raw["extra"]["seed"], str)
        assert quirky.raw["extra"] == {} and quirky.seed_used is None
        assert (
            plain.video_url_ttl_s == 3600 and quirky.video_url_ttl_s is None
        )  # "0" is not "expired"
    if provider == "aimlapi":
        assert (
            isinstance(quirky.raw["meta"]["usage"]["credits_used"], str)
            and quirky.credits == plain.credits
        )


def test_aimlapi_in_progress_words_from_samples_are_in_progress() -> None:
    from seedance_pipeline.providers.base import HttpAnswer

    adapter = adapter_for("aimlapi")
    for word, status in [
        ("waiting", TaskStatus.QUEUED),
        ("active", TaskStatus.RUNNING),
        ("generating", TaskStatus.RUNNING),
        ("failed", TaskStatus.FAILED),
    ]:
        answer = HttpAnswer(200, {}, f'{{"id": "g1", "status": "{word}"}}'.encode())
        assert adapter.parse_poll(answer).status is status


def test_novita_accepts_the_documented_sample_and_the_clients_forms() -> None:
    """The sample's empty `debug_info` strings and the client's integers; an undocumented
    `TASK_STATUS_EXPIRED` and the emulator's failure whose reason says the task expired."""
    import json

    from seedance_pipeline.providers.base import HttpAnswer

    adapter = adapter_for("novita")
    debug_forms = [
        {"submit_time_ms": "", "execute_time_ms": "", "complete_time_ms": ""},
        {"submit_time_ms": 1743414619000, "execute_time_ms": 0, "complete_time_ms": 0},
    ]
    for debug in debug_forms:
        body = {"extra": {"seed": "5", "debug_info": debug},
                "task": {"task_id": "t1", "status": "TASK_STATUS_QUEUED"}}  # fmt: skip
        state = adapter.parse_poll(HttpAnswer(200, {}, json.dumps(body).encode()))
        assert state.status is TaskStatus.QUEUED and state.seed_used == 5
    for status, reason in [
        ("TASK_STATUS_EXPIRED", ""),
        ("TASK_STATUS_FAILED", "task expired: execution_expires_after reached"),
    ]:
        body = {"task": {"task_id": "t1", "status": status, "reason": reason}}
        state = adapter.parse_poll(HttpAnswer(200, {}, json.dumps(body).encode()))
        assert state.status.terminal and state.status is not TaskStatus.SUCCEEDED
        assert state.error is not None and state.error.kind is ErrorKind.TASK_EXPIRED


def test_modelark_cancels_a_queued_task(emulator: EmulatorServer, make_image: ImageFactory) -> None:
    emulator.state.config.queued_s = 5

    async def go() -> TaskStatus:
        async with client_for(emulator, "modelark") as client:
            state = await client.submit(
                gen("modelark", "seedance-1-0-lite-i2v-250428", make_image())
            )
            assert await client.cancel(state.task_id or "")
            return (await client.poll(state.task_id or "")).status

    assert run(go()) is TaskStatus.CANCELLED


def test_providers_without_cancel_say_so(emulator: EmulatorServer) -> None:
    async def go() -> bool:
        async with client_for(emulator, "novita") as client:
            return await client.cancel("anything")

    assert run(go()) is False


def test_redirects_are_not_followed_so_the_key_stays_home(make_image: ImageFactory) -> None:
    """A provider answering with a redirect to another host must not receive our key there."""
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.headers))
        if request.url.host == "api.novita.ai":
            return httpx.Response(307, headers={"location": "https://evil.example.com/steal"})
        return httpx.Response(200, json={"task_id": "x"})

    adapter = adapter_for("novita")
    config = ProviderConfig("novita", "https://api.novita.ai", Secret("sk-live-secret"))
    transport = httpx.MockTransport(handler)
    http = httpx.AsyncClient(
        base_url=config.base_url,
        transport=transport,
        headers=adapter.auth_headers(config.api_key or ""),
        follow_redirects=False,
    )

    async def go() -> None:
        async with ProviderClient(adapter, config, http=http) as client:
            await client.submit(gen("novita", "seedance-v1-lite-i2v", make_image()))

    with pytest.raises(ProviderError, match="not followed") as caught:
        run(go())
    assert "sk-live-secret" not in str(caught.value)
    assert len(seen) == 1  # nothing went to evil.example.com


def test_the_default_client_sends_the_key_only_to_its_base_url(emulator: EmulatorServer) -> None:
    client = client_for(emulator, "novita", api_key="sk-abc")
    assert len(client._pools) == 8
    for http in client._pools:  # every pool: no redirects, the provider's base URL only
        assert http.follow_redirects is False
        assert str(http.base_url).startswith(emulator.base_url("novita"))
    assert "sk-abc" not in repr(client.config)
    run(client.aclose())


def test_secret_reprs_hide_the_key() -> None:
    config = ProviderConfig("novita", "https://api.novita.ai", Secret("sk-live-xyz"))
    assert "sk-live-xyz" not in repr(config) and "sk-live-xyz" not in repr(config.api_key)
