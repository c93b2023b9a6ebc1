"""The emulator as a curl sees it: documented request checks, shapes, status codes and behaviour."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import httpx
import pytest

from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer, Faults
from seedance_pipeline_tests.conftest import ImageFactory

BEARER = {"Authorization": "Bearer sk-test"}


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


@pytest.fixture
def http(emulator: EmulatorServer) -> httpx.Client:
    with httpx.Client(base_url=emulator.url, timeout=30) as client:
        yield client


def wait_for(http: httpx.Client, path: str, done: str, key: str = "status", **kw: object) -> dict:
    for _ in range(200):
        body = http.get(path, **kw).json()  # type: ignore[arg-type]
        status = body["task"]["status"] if "task" in body else body[key]
        if status == done:
            return body
        time.sleep(0.03)
    raise AssertionError(f"{path} never reached {done}")


def test_tasks_move_queued_running_succeeded(make_image: ImageFactory) -> None:
    with (
        EmulatorServer(EmulatorConfig(queued_s=0.4, running_s=0.4)) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        created = http.post(
            "/modelark/contents/generations/tasks",
            headers=BEARER,
            json={
                "model": "seedance-1-0-lite-i2v-250428",
                "content": [{"type": "image_url", "image_url": {"url": data_uri(make_image())}}],
            },
        )
        task_id = created.json()["id"]
        seen = []
        for _ in range(60):
            status = http.get(
                f"/modelark/contents/generations/tasks/{task_id}", headers=BEARER
            ).json()["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == "succeeded":
                break
            time.sleep(0.05)
        assert seen == ["queued", "running", "succeeded"]


def test_novita_documented_shapes_and_errors(http: httpx.Client, make_image: ImageFactory) -> None:
    body = {"image": data_uri(make_image()), "resolution": "480p", "prompt": "p"}
    created = http.post("/novita/v3/async/seedance-v1-lite-i2v", headers=BEARER, json=body)
    assert created.status_code == 200 and set(created.json()) == {"task_id"}
    result = wait_for(
        http,
        "/novita/v3/async/task-result",
        "TASK_STATUS_SUCCEED",
        headers=BEARER,
        params={"task_id": created.json()["task_id"]},
    )
    assert set(result) == {"extra", "task", "images", "audios", "videos"}
    assert result["videos"][0]["video_type"] == "mp4"
    assert "X-Amz-Expires=3600" in result["videos"][0]["video_url"]

    missing = http.post("/novita/v3/async/seedance-v1-lite-i2v", json=body)
    assert (missing.status_code, missing.json()["reason"]) == (400, "MISSING_API_KEY")
    assert set(missing.json()) == {"code", "reason", "message", "metadata"}
    no_resolution = http.post(
        "/novita/v3/async/seedance-v1-lite-i2v", headers=BEARER, json={"image": body["image"]}
    )
    assert (no_resolution.status_code, no_resolution.json()["reason"]) == (
        400,
        "INVALID_REQUEST_BODY",
    )
    tiny = http.post(
        "/novita/v3/async/seedance-v1-lite-i2v",
        headers=BEARER,
        json=body | {"image": data_uri(make_image(300, 300))},
    )
    assert (tiny.status_code, tiny.json()["reason"]) == (400, "INVALID_IMAGE_SIZE")
    unknown_model = http.post("/novita/v3/async/seedance-v9", headers=BEARER, json=body)
    assert (unknown_model.status_code, unknown_model.json()["reason"]) == (404, "API_NOT_FOUND")
    unknown_task = http.get(
        "/novita/v3/async/task-result", headers=BEARER, params={"task_id": "nope"}
    )
    assert (unknown_task.status_code, unknown_task.json()["reason"]) == (404, "TASK_NOT_FOUND")


def test_aimlapi_accepts_string_durations_and_camerafixed(
    http: httpx.Client, make_image: ImageFactory
) -> None:
    created = http.post(
        "/aimlapi/v2/generate/video/bytedance/generation",
        headers=BEARER,
        json={
            "model": "bytedance/seedance-1-0-lite-i2v",
            "image_url": data_uri(make_image()),
            "prompt": "p",
            "duration": "5",
            "camerafixed": True,
            "resolution": "480p",
        },
    )
    assert created.status_code == 200 and created.json()["status"] == "queued"
    done = wait_for(
        http,
        "/aimlapi/v2/generate/video/bytedance/generation",
        "completed",
        headers=BEARER,
        params={"generation_id": created.json()["id"]},
    )
    assert (
        done["video"]["url"]
        and done["error"] is None
        and int(done["meta"]["usage"]["credits_used"]) > 0
    )

    no_prompt = http.post(
        "/aimlapi/v2/generate/video/bytedance/generation",
        headers=BEARER,
        json={"model": "bytedance/seedance-1-0-lite-i2v", "image_url": data_uri(make_image())},
    )
    assert no_prompt.status_code == 400
    assert set(no_prompt.json()) == {"message", "path", "requestId", "statusCode", "timestamp"}
    assert (
        http.get(
            "/aimlapi/v2/generate/video/bytedance/generation", params={"generation_id": "x"}
        ).status_code
        == 401
    )


def test_segmind_is_synchronous_and_enforces_its_field_exclusions(
    http: httpx.Client, make_image: ImageFactory
) -> None:
    url = "/segmind/v1/seedance-v1-lite-image-to-video"
    key = {"x-api-key": "sk-test"}
    image = data_uri(make_image())
    base = {"prompt": "p", "duration": 5, "resolution": "480p"}
    legacy = http.post(url, headers=key, json=base | {"image_url": image})
    assert legacy.status_code == 200 and legacy.headers["content-type"] == "video/mp4"
    assert legacy.content[4:8] == b"ftyp" and float(legacy.headers["x-remaining-credits"]) < 1000
    both = http.post(url, headers=key, json=base | {"image_url": image, "first_frame_url": image})
    assert both.status_code == 400 and "cannot be used together" in both.json()["error"]
    last_only = http.post(
        url, headers=key, json=base | {"last_frame_url": image, "image_url": image}
    )
    assert last_only.status_code == 400
    last_without_first = http.post(url, headers=key, json=base | {"last_frame_url": image})
    assert (
        last_without_first.status_code == 400
        and "requires first_frame_url" in last_without_first.json()["error"]
    )
    bad_seed = http.post(url, headers=key, json=base | {"first_frame_url": image, "seed": 0})
    assert bad_seed.status_code == 400
    assert http.post(url, json=base | {"first_frame_url": image}).status_code == 401


def test_modelark_rejects_unsupported_fields_and_reads_inline_flags(
    http: httpx.Client, make_image: ImageFactory
) -> None:
    path = "/modelark/contents/generations/tasks"
    image = {
        "type": "image_url",
        "image_url": {"url": data_uri(make_image(1280, 720))},
        "role": "first_frame",
    }
    audio = http.post(
        path,
        headers=BEARER,
        json={"model": "seedance-1-0-lite-i2v-250428", "content": [image], "generate_audio": True},
    )
    assert audio.status_code == 400
    assert (
        audio.json()["error"]["code"] == "InvalidParameter"
        and audio.json()["error"]["param"] == "generate_audio"
    )
    unknown = http.post(
        path,
        headers=BEARER,
        json={"model": "seedance-1-0-lite-i2v-250428", "content": [image], "colour": "red"},
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "colour"
    nulls = {"colour": None, "draft": None, "frames": None, "priority": None, "seed": None}
    # draft is 1.5 pro's alone; priority, output_format outside their documented values
    for name, value in [("draft", True), ("priority", 10), ("output_format", "webm"),
                        ("omni_reference_task_type", "remix"), ("priority", "1")]:  # fmt: skip
        refused = http.post(
            path,
            headers=BEARER,
            json={"model": "seedance-1-0-lite-i2v-250428", "content": [image], name: value},
        )
        assert refused.status_code == 400 and refused.json()["error"]["param"] == name
    # documented fields of the API (for the 2.x models) are taken and ignored, as null or not
    documented = {"priority": 9, "output_format": "mp4", "omni_reference_task_type": "auto"}
    taken = http.post(
        path,
        headers=BEARER,
        json={"model": "seedance-1-0-lite-i2v-250428", "content": [image], **documented},
    )
    assert taken.status_code == 200, taken.text
    as_null = http.post(
        path,
        headers=BEARER,
        json={"model": "seedance-1-0-lite-i2v-250428", "content": [image], **nulls},
    )
    assert as_null.status_code == 200  # null is absent: the official client sends it for all
    plain_string = http.post(
        path,
        headers=BEARER,
        json={
            "model": "seedance-1-0-lite-i2v-250428",
            "content": [{"type": "image_url", "image_url": "https://example.com/a.png"}],
        },
    )
    assert plain_string.status_code == 400
    assert plain_string.json()["error"]["code"] == "InvalidParameter"
    for frames in (30, 293):  # not 25 + 4n; beyond 289
        bad_frames = http.post(
            path,
            headers=BEARER,
            json={"model": "seedance-1-0-lite-i2v-250428", "content": [image], "frames": frames},
        )
        assert bad_frames.status_code == 400 and bad_frames.json()["error"]["param"] == "frames"
    bad_flag = http.post(
        path,
        headers=BEARER,
        json={
            "model": "seedance-1-0-lite-i2v-250428",
            "content": [{"type": "text", "text": "a dog --dur 99"}, image],
        },
    )
    assert bad_flag.status_code == 400

    created = http.post(
        path,
        headers=BEARER,
        json={
            "model": "seedance-1-0-lite-i2v-250428",
            "content": [
                {
                    "type": "text",
                    "text": "a dog runs --rs 480p --rt 9:16 --dur 3 --seed 11 --cf false",
                },
                image,
            ],
        },
    )
    assert created.status_code == 200 and created.json()["id"].startswith("cgt-")
    task = wait_for(http, f"{path}/{created.json()['id']}", "succeeded", headers=BEARER)
    assert (task["resolution"], task["ratio"], int(task["duration"]), task["seed"]) == (
        "480p",
        "9:16",
        3,
        11,
    )
    assert int(task["usage"]["completion_tokens"]) == 480 * 864 * 24 * 3 // 1024
    listed = http.get(path, headers=BEARER, params={"filter.status": "succeeded"}).json()
    assert created.json()["id"] in {item["id"] for item in listed["items"]}
    unauthorised = http.get(f"{path}/{created.json()['id']}")
    assert (
        unauthorised.status_code == 401
        and unauthorised.json()["error"]["code"] == "AuthenticationError"
    )


def test_per_key_limit_on_tasks_in_flight(make_image: ImageFactory) -> None:
    config = EmulatorConfig(queued_s=5, running_s=5, max_in_flight={"novita": 2})
    with EmulatorServer(config) as server, httpx.Client(base_url=server.url) as http:
        body = {"image": data_uri(make_image()), "resolution": "480p"}
        url = "/novita/v3/async/seedance-v1-lite-i2v"
        assert [http.post(url, headers=BEARER, json=body).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        assert (
            http.post(url, headers={"Authorization": "Bearer other-key"}, json=body).status_code
            == 200
        )
        assert len(server.state.audit("novita")) == 3


def test_video_urls_really_expire(make_image: ImageFactory) -> None:
    config = EmulatorConfig(queued_s=0, running_s=0.1, video_url_ttl_s={"modelark": 0.5})
    with EmulatorServer(config) as server, httpx.Client(base_url=server.url) as http:
        created = http.post(
            "/modelark/contents/generations/tasks",
            headers=BEARER,
            json={
                "model": "seedance-1-0-lite-i2v-250428",
                "content": [
                    {"type": "text", "text": "--rs 480p"},
                    {"type": "image_url", "image_url": {"url": data_uri(make_image())}},
                ],
            },
        )
        task = wait_for(
            http,
            f"/modelark/contents/generations/tasks/{created.json()['id']}",
            "succeeded",
            headers=BEARER,
        )
        url = task["content"]["video_url"]
        assert httpx.get(url).status_code == 200
        time.sleep(0.6)
        expired = httpx.get(url)
        assert expired.status_code == 403 and b"Request has expired" in expired.content


def test_execution_expires_after_expires_the_task(make_image: ImageFactory) -> None:
    config = EmulatorConfig(queued_s=0.5, running_s=0.5, expiry_scale=0.0001)  # 3600 s → 0.36 s
    with EmulatorServer(config) as server, httpx.Client(base_url=server.url) as http:
        created = http.post(
            "/modelark/contents/generations/tasks",
            headers=BEARER,
            json={
                "model": "seedance-1-5-pro-251215",
                "execution_expires_after": 3600,
                "content": [{"type": "image_url", "image_url": {"url": data_uri(make_image())}}],
            },
        )
        assert created.status_code == 200
        task = wait_for(
            http,
            f"/modelark/contents/generations/tasks/{created.json()['id']}",
            "expired",
            headers=BEARER,
        )
        assert task["content"] is None


def test_faults_and_audit_are_reachable_over_http(
    http: httpx.Client, make_image: ImageFactory
) -> None:
    assert (
        http.put(
            "/_emulator/faults/novita", json={"rate_limit_burst": 2, "retry_after": "3"}
        ).status_code
        == 200
    )
    body = {"image": data_uri(make_image()), "resolution": "480p"}
    url = "/novita/v3/async/seedance-v1-lite-i2v"
    answers = [http.post(url, headers=BEARER, json=body) for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["retry-after"] == "3"
    assert http.put("/_emulator/faults/novita", json={"nonsense": 1}).status_code == 400
    audit = http.get("/_emulator/audit").json()
    assert len(audit) == 1 and audit[0]["provider"] == "novita"
    assert "sk-test" not in str(audit) and len(audit[0]["key_fingerprint"]) == 12
    assert http.get("/_emulator/health").json()["sandbox"] is True


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_the_emulator_refuses_to_listen_off_loopback(host: str) -> None:
    with pytest.raises(ValueError, match="only listens on loopback"):
        EmulatorServer(host=host)


def test_novita_reports_an_expired_task_as_failed_with_its_reason(
    http: httpx.Client, emulator: EmulatorServer, make_image: ImageFactory
) -> None:
    """No expiry status is documented, and Novita's official client knows only four statuses."""
    emulator.state.set_faults("novita", Faults(expire_rate=1.0))
    body = {"image": data_uri(make_image()), "resolution": "480p"}
    created = http.post("/novita/v3/async/seedance-v1-lite-i2v", headers=BEARER, json=body)
    path = f"/novita/v3/async/task-result?task_id={created.json()['task_id']}"
    result = wait_for(http, path, "TASK_STATUS_FAILED", headers=BEARER)
    assert "expired" in result["task"]["reason"]
    assert all(isinstance(v, int) for v in result["extra"]["debug_info"].values())
