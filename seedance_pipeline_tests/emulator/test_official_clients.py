"""The providers' own Python clients, unmodified, against the emulator over real HTTP.

They run against the real services every day, so they are independent evidence of the wire format:
where the emulator and a client disagree, the emulator is wrong. Each model is exercised twice in a
row, because the emulator alternates its answers (plain, then with the quirks real traffic showed)
from task to task.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pydantic
import pytest
from byteplussdkarkruntime import Ark
from byteplussdkarkruntime._exceptions import ArkBadRequestError, ArkNotFoundError
from byteplussdkarkruntime._models import BaseModel as ArkModel
from novita_client import NovitaClient
from novita_client.proto import V3TaskResponse, V3TaskResponseStatus

from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer, Faults
from seedance_pipeline.providers.facts import ModelSpec, load_facts
from seedance_pipeline_tests.conftest import ImageFactory

FACTS = load_facts()
ARK_MODELS = list(FACTS.providers["modelark"].models)
# Every (provider, model) served with Novita's API (Novita itself and myrouter).
NOVITA_MODELS = [
    (name, model)
    for name, spec in FACTS.providers.items()
    if spec.api == "novita"
    for model in spec.models
]
KEY = "sk-official-client"
T = TypeVar("T")


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """Long enough in each state that a task is reliably seen queued, then running."""
    with EmulatorServer(EmulatorConfig(queued_s=0.8, running_s=0.8)) as server:
        yield server


@pytest.fixture
def image_uri(make_image: ImageFactory) -> str:
    return "data:image/png;base64," + base64.b64encode(make_image(1280, 720).read_bytes()).decode()


def wait_until(read: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 15) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def assert_typed(model: ArkModel, where: str = "task") -> None:
    """Every field the answer carried has the type the client declares. The client constructs its
    models without validation, so a string where it declares an integer passes through unnoticed
    and breaks its users later: check each value strictly."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        if isinstance(value, ArkModel):
            assert_typed(value, f"{where}.{name}")
            continue
        try:
            pydantic.TypeAdapter(field.annotation).validate_python(value, strict=True)
        except pydantic.ValidationError:
            raise AssertionError(
                f"{where}.{name} = {value!r} is not the client's {field.annotation}"
            ) from None


# -- BytePlus ModelArk: byteplus-python-sdk-v2 ------------------------------------------------------


@pytest.fixture
def ark(emulator: EmulatorServer) -> Iterator[Ark]:
    client = Ark(base_url=emulator.base_url("modelark"), api_key=KEY, max_retries=0)
    yield client
    client.close()


def ark_create(ark: Ark, spec: ModelSpec, image_uri: str, **extra: Any) -> str:
    """One create as a user of the client writes it: the parameters as keyword arguments, each
    one the model takes; the client sends every other field as null."""
    kwargs: dict[str, Any] = {"resolution": "720p", "duration": 5, "seed": 11}
    kwargs["ratio"] = "16:9"
    kwargs["camera_fixed"] = False
    kwargs["watermark"] = False
    if "execution_expires_after" in spec.options:
        kwargs["execution_expires_after"] = 3600
    if "generate_audio" in spec.options:
        kwargs["generate_audio"] = False
    kwargs.update(extra)
    created = ark.content_generation.tasks.create(
        model=spec.id,
        content=[
            {"type": "text", "text": "a quiet harbour at dawn"},
            {"type": "image_url", "image_url": {"url": image_uri}, "role": "first_frame"},
        ],
        **kwargs,
    )
    assert isinstance(created.id, str) and created.id.startswith("cgt-")
    return created.id


@pytest.mark.parametrize("model", ARK_MODELS)
def test_the_ark_client_creates_gets_and_lists_tasks_of_every_model(
    ark: Ark, model: str, image_uri: str
) -> None:
    spec = FACTS.providers["modelark"].models[model]
    tiers = list(spec.service_tiers[:2]) if "service_tier" in spec.options else []
    task_ids = [  # two in a row: plain, then quirky answers
        ark_create(ark, spec, image_uri, **({"service_tier": tiers[n]} if tiers else {}))
        for n in range(2)
    ]
    tasks = ark.content_generation.tasks
    for task_id in task_ids:
        queued = tasks.get(task_id=task_id)
        assert (queued.id, queued.model, queued.status) == (task_id, model, "queued")
        assert_typed(queued)
    for n, task_id in enumerate(task_ids):
        done = wait_until(partial(tasks.get, task_id=task_id), lambda t: t.status == "succeeded")
        assert done.status == "succeeded", done
        assert_typed(done)
        assert done.content.video_url.startswith("http")
        assert (done.duration, done.seed, done.resolution, done.ratio) == (5, 11, "720p", "16:9")
        assert done.framespersecond == 24
        assert done.usage.completion_tokens == 1248 * 704 * 24 * 5 // 1024 or model.startswith(
            "seedance-1-5"
        )
        assert done.service_tier == (tiers[n] if tiers else "default")
        assert done.execution_expires_after == 3600
    # Each filter of the list, as the client sends it.
    by_ids = tasks.list(task_ids=task_ids)
    assert sorted(t.id for t in by_ids.items) == sorted(task_ids) and by_ids.total == 2
    for item in by_ids.items:
        assert_typed(item)
    assert {t.id for t in tasks.list(status="succeeded", page_size=50).items} >= set(task_ids)
    assert tasks.list(status="queued", task_ids=task_ids).total == 0
    assert {t.id for t in tasks.list(model=model).items} == set(task_ids)
    assert tasks.list(model="seedance-no-such-model").total == 0
    for tier in ("default", "flex"):
        expected = {i for i, t in zip(task_ids, tiers or ["default"] * 2, strict=True) if t == tier}
        assert {t.id for t in tasks.list(service_tier=tier, model=model).items} == expected
    paged = [tasks.list(page_num=n, page_size=1, model=model) for n in (1, 2)]
    assert [len(p.items) for p in paged] == [1, 1] and {p.items[0].id for p in paged} == set(
        task_ids
    )


@pytest.mark.parametrize("model", ARK_MODELS)
def test_the_ark_client_cancels_a_queued_task_and_deletes_a_finished_one(
    ark: Ark, model: str, image_uri: str
) -> None:
    spec = FACTS.providers["modelark"].models[model]
    tasks = ark.content_generation.tasks
    queued, finished = (ark_create(ark, spec, image_uri) for _ in range(2))
    tasks.delete(queued)
    cancelled = tasks.get(task_id=queued)
    assert cancelled.status == "cancelled"
    assert_typed(cancelled)
    assert [t.id for t in tasks.list(status="cancelled").items] == [queued]
    wait_until(partial(tasks.get, task_id=finished), lambda t: t.status == "succeeded")
    tasks.delete(finished)
    with pytest.raises(ArkNotFoundError):
        tasks.get(task_id=finished)


def test_the_ark_client_reads_a_failed_task_with_its_error(
    emulator: EmulatorServer, ark: Ark, image_uri: str
) -> None:
    emulator.state.set_faults("modelark", Faults(output_reject_rate=1.0))
    spec = FACTS.providers["modelark"].models[ARK_MODELS[0]]
    tasks = ark.content_generation.tasks
    for task_id in [ark_create(ark, spec, image_uri) for _ in range(2)]:
        failed = wait_until(partial(tasks.get, task_id=task_id), lambda t: t.status == "failed")
        assert failed.status == "failed"
        assert failed.error.code == "OutputVideoSensitiveContentDetected"
        assert_typed(failed)


@pytest.mark.parametrize("model", ARK_MODELS)
def test_the_ark_client_can_send_each_option_the_model_takes(
    ark: Ark, model: str, image_uri: str
) -> None:
    """`return_last_frame` and `frames` where the model takes them; the rest stay null."""
    spec = FACTS.providers["modelark"].models[model]
    extra: dict[str, Any] = {"return_last_frame": True, "safety_identifier": "user-42"}
    task_id = ark_create(ark, spec, image_uri, **extra)
    done = wait_until(
        partial(ark.content_generation.tasks.get, task_id=task_id),
        lambda t: t.status == "succeeded",
    )
    assert_typed(done)
    assert done.content.last_frame_url.startswith("http")
    if "frames" in spec.api_options:
        by_frames = ark_create(ark, spec, image_uri, duration=None, frames=121)
        framed = wait_until(
            partial(ark.content_generation.tasks.get, task_id=by_frames),
            lambda t: t.status == "succeeded",
        )
        assert (framed.frames, framed.duration) == (121, 5)


DRAFT_MODELS = [
    m for m, spec in FACTS.providers["modelark"].models.items() if "draft" in spec.options
]


@pytest.mark.parametrize("model", DRAFT_MODELS)
def test_the_ark_client_makes_a_draft_and_a_final_from_it(
    ark: Ark, model: str, image_uri: str
) -> None:
    """The documented two steps: `draft: true` makes a 480p preview; a create whose content is
    only `{"type": "draft_task", "draft_task": {"id": ...}}` makes the final, reusing the draft's
    seed, ratio and duration, and says which draft it came from."""
    spec = FACTS.providers["modelark"].models[model]
    tasks = ark.content_generation.tasks
    audio = {"generate_audio": True, "seed": None}  # with audio, the documented factor is 0.6
    normal = ark_create(ark, spec, image_uri, resolution="480p", **audio)
    draft_id = ark_create(ark, spec, image_uri, resolution=None, draft=True, **audio)
    draft, plain = (
        wait_until(partial(tasks.get, task_id=t), lambda t: t.status == "succeeded")
        for t in (draft_id, normal)
    )
    assert_typed(draft)
    assert (draft.draft, plain.draft) == (True, False)
    assert draft.resolution == "480p" and draft.seed >= 0
    assert draft.usage.completion_tokens == int(plain.usage.completion_tokens * 0.6)
    final_id = tasks.create(
        model=spec.id,
        content=[{"type": "draft_task", "draft_task": {"id": draft_id}}],
        resolution="720p",
        return_last_frame=True,
    ).id
    final = wait_until(partial(tasks.get, task_id=final_id), lambda t: t.status == "succeeded")
    assert_typed(final)
    assert final.draft is False and final.draft_task_id == draft_id
    assert (final.seed, final.ratio, final.duration) == (draft.seed, draft.ratio, draft.duration)
    assert final.resolution == "720p" and final.content.last_frame_url.startswith("http")
    with pytest.raises(ArkBadRequestError):  # a draft is made at 480p only
        ark_create(ark, spec, image_uri, resolution="720p", draft=True)
    with pytest.raises(ArkBadRequestError):  # and without its last frame
        ark_create(ark, spec, image_uri, resolution=None, draft=True, return_last_frame=True)
    with pytest.raises(ArkBadRequestError):  # a final comes from a draft, not a normal video
        tasks.create(model=spec.id, content=[{"type": "draft_task", "draft_task": {"id": normal}}])


def test_the_ark_client_hears_invalid_parameter_for_an_image_url_as_a_plain_string(
    ark: Ark,
) -> None:
    with pytest.raises(ArkBadRequestError) as caught:
        ark.content_generation.tasks.create(
            model=ARK_MODELS[0],
            content=[{"type": "image_url", "image_url": "https://example.com/a.png"}],  # type: ignore[list-item, typeddict-item]
        )
    assert caught.value.code == "InvalidParameter"


# -- Novita and myrouter: novita-client ------------------------------------------------------------


def novita_submit(emulator: EmulatorServer, provider: str, model: str, image: Path) -> str:
    """A create as Novita's page documents it (the client has no Seedance create)."""
    body = {
        "image": "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode(),
        "prompt": "a quiet harbour at dawn",
        "resolution": "720p",
        "duration": 5,
        "seed": 7,
    }
    answer = httpx.post(
        f"{emulator.base_url(provider)}/v3/async/{model}",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    return str(payload.get("task_id") or payload["id"])


def check_novita_result(result: V3TaskResponse, task_id: str) -> None:
    assert result.task.task_id == task_id
    assert isinstance(result.task.status, V3TaskResponseStatus)
    debug = result.extra.debug_info if result.extra is not None else None
    if debug is not None:
        for name in ("submit_time_ms", "execute_time_ms", "complete_time_ms"):
            assert isinstance(getattr(debug, name), int), (name, getattr(debug, name))


@pytest.mark.parametrize(("provider", "model"), NOVITA_MODELS)
def test_the_novita_client_reads_queued_processing_and_succeeded_results(
    emulator: EmulatorServer, provider: str, model: str, make_image: ImageFactory
) -> None:
    client = NovitaClient(KEY, base_url=emulator.base_url(provider))
    task_ids = [novita_submit(emulator, provider, model, make_image(1280, 720)) for _ in range(2)]
    for task_id in task_ids:
        result = client.async_task_result(task_id)
        check_novita_result(result, task_id)
        assert result.task.status is V3TaskResponseStatus.TASK_STATUS_QUEUED
    for task_id in task_ids:
        result = wait_until(
            partial(client.async_task_result, task_id),
            lambda r: r.task.status is not V3TaskResponseStatus.TASK_STATUS_QUEUED,
        )
        check_novita_result(result, task_id)
        assert result.task.status is V3TaskResponseStatus.TASK_STATUS_PROCESSING
    for task_id in task_ids:
        result = wait_until(partial(client.async_task_result, task_id), lambda r: r.finished())
        check_novita_result(result, task_id)
        assert result.task.status is V3TaskResponseStatus.TASK_STATUS_SUCCEED
        assert result.extra is None or result.extra.seed in (None, 7)
        assert result.videos and result.videos[0].video_url.startswith("http")
        assert isinstance(result.videos[0].video_url_ttl, int)


@pytest.mark.parametrize(("provider", "model"), NOVITA_MODELS)
def test_the_novita_client_reads_failed_results_with_their_reason(
    emulator: EmulatorServer, provider: str, model: str, make_image: ImageFactory
) -> None:
    emulator.state.set_faults(provider, Faults(fail_rate=1.0))
    client = NovitaClient(KEY, base_url=emulator.base_url(provider))
    for task_id in [
        novita_submit(emulator, provider, model, make_image(1280, 720)) for _ in range(2)
    ]:
        result = wait_until(partial(client.async_task_result, task_id), lambda r: r.finished())
        check_novita_result(result, task_id)
        assert result.task.status is V3TaskResponseStatus.TASK_STATUS_FAILED
        assert result.task.reason
