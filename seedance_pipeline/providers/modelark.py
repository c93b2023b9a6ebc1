"""BytePlus ModelArk (and Volcengine Ark), the official Seedance API every reseller wraps.

`POST /contents/generations/tasks` with a `content` list; 1.0 models take their parameters as
`--flags` inside the text, newer models as top-level fields (unsupported fields are rejected, not
ignored). `GET .../{id}` reports usage in tokens; `DELETE .../{id}` cancels a queued task.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from seedance_pipeline.providers.base import (
    HttpAnswer,
    HttpCall,
    MalformedAnswer,
    ProviderAdapter,
    as_float,
    as_int,
    failure_kind,
    kind_for_status,
    require_dict,
)
from seedance_pipeline.providers.images import image_reference
from seedance_pipeline.providers.models import (
    ErrorKind,
    GenerationRequest,
    ProviderError,
    TaskError,
    TaskState,
    TaskStatus,
)
from seedance_pipeline.providers.parsing import reported_usage

PATH = "/contents/generations/tasks"
log = logging.getLogger(__name__)

STATUSES = {s.value: s for s in TaskStatus}  # the API's words are ours

# Inline text flags of the 1.0 models, by request field.
INLINE_FLAGS = {
    "resolution": "--rs",
    "aspect_ratio": "--rt",
    "duration": "--dur",
    "fps": "--fps",
    "seed": "--seed",
    "camera_fixed": "--cf",
    "watermark": "--wm",
}
TOP_LEVEL_FIELDS = {
    "resolution": "resolution",
    "aspect_ratio": "ratio",
    "duration": "duration",
    "fps": "fps",
    "seed": "seed",
    "camera_fixed": "camera_fixed",
    "watermark": "watermark",
    "generate_audio": "generate_audio",
    "service_tier": "service_tier",
    "execution_expires_after": "execution_expires_after",
    "return_last_frame": "return_last_frame",
    "draft": "draft",
}
# What a final made from a draft takes from the draft, never from its own request [doc: create API
# `content.draft_task.id`].
REUSED_FROM_DRAFT = ("aspect_ratio", "duration", "seed", "camera_fixed", "generate_audio")


def _flag_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def error_kind(code: str, status: int) -> ErrorKind:
    if "SensitiveContent" in code:
        return ErrorKind.CONTENT_REJECTED
    if code.startswith(("RateLimitExceeded", "QuotaExceeded")) or code == "ServerOverloaded":
        return ErrorKind.RATE_LIMITED
    if code == "AccountOverdueError":
        return ErrorKind.INSUFFICIENT_CREDIT
    if code in ("AuthenticationError", "AccessDenied"):
        return ErrorKind.AUTHENTICATION
    if code in ("MissingParameter", "InvalidParameter", "InvalidEndpointOrModel.NotFound"):
        return ErrorKind.INVALID_REQUEST
    if code.startswith("NotFound") or code.endswith("NotFound"):
        return ErrorKind.NOT_FOUND
    return kind_for_status(status)


class ModelArkAdapter(ProviderAdapter):
    def build_submit(self, request: GenerationRequest) -> HttpCall:
        model = self.model(request)
        resolution, duration = self.resolved(request, model)
        values: dict[str, Any] = {
            name: getattr(request, name)
            for name in TOP_LEVEL_FIELDS
            if getattr(request, name) is not None
        }
        values.update(resolution=resolution, duration=duration)
        body: dict[str, Any] = {"model": request.model}
        if request.from_draft is not None:  # the draft's text, image and reused fields
            for name in REUSED_FROM_DRAFT:
                values.pop(name, None)
            body.update({TOP_LEVEL_FIELDS[name]: value for name, value in values.items()})
            draft_task = {"type": "draft_task", "draft_task": {"id": request.from_draft}}
            body["content"] = [draft_task]
            return HttpCall("POST", PATH, json=body)
        text = request.prompt
        if model.parameter_style == "inline":
            flags = " ".join(
                f"{flag} {_flag_value(values.pop(name))}"
                for name, flag in INLINE_FLAGS.items()
                if name in values
            )
            text = f"{text} {flags}".strip()
        # Top-level: every field of a newer model; those without a text flag (service_tier,
        # execution_expires_after, return_last_frame) of an inline one.
        body.update({TOP_LEVEL_FIELDS[name]: value for name, value in values.items()})
        content: list[dict[str, Any]] = []
        if text:
            content.append({"type": "text", "text": text})
        content.append(
            {
                "type": "image_url",
                "image_url": {"url": image_reference(request.image)},
                "role": "first_frame",
            }
        )
        if request.last_image is not None:
            content.append(
                {
                    "type": "image_url",
                    "image_url": {"url": image_reference(request.last_image)},
                    "role": "last_frame",
                }
            )
        body["content"] = content
        return HttpCall("POST", PATH, json=body)

    def parse_submit(self, answer: HttpAnswer) -> TaskState:
        body = require_dict(self.body_json(answer), "submit answer")
        task_id = body.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise MalformedAnswer("submit answer has no id")
        return TaskState(task_id=task_id, status=TaskStatus.QUEUED, raw=body)

    def build_poll(self, task_id: str) -> HttpCall:
        return HttpCall("GET", f"{PATH}/{quote(task_id, safe='')}")  # `../admin` stays one segment

    def build_cancel(self, task_id: str) -> HttpCall:
        return HttpCall("DELETE", f"{PATH}/{quote(task_id, safe='')}")

    def build_list(self, page_num: int, page_size: int) -> HttpCall:
        return HttpCall(
            "GET", PATH, params={"page_num": str(page_num), "page_size": str(page_size)}
        )

    def parse_list(self, answer: HttpAnswer) -> list[TaskState]:
        body = require_dict(self.body_json(answer), "task list")
        items = body.get("items") or []
        if not isinstance(items, list):
            raise MalformedAnswer("task list items is not a list")
        tasks = []
        for item in items:
            try:  # one unreadable item must not hide the others from reconciliation
                tasks.append(self._task_state(require_dict(item, "task")))
            except (MalformedAnswer, TypeError, ValueError, OverflowError) as exc:
                log.warning("%s: skipped an unreadable task list item (%s)", self.name,
                            type(exc).__name__)  # fmt: skip
        return tasks

    def parse_poll(self, answer: HttpAnswer) -> TaskState:
        return self._task_state(require_dict(self.body_json(answer), "task"))

    def _task_state(self, body: dict[str, Any]) -> TaskState:
        raw_status = body.get("status")
        if raw_status not in STATUSES:
            raise MalformedAnswer(f"unknown task status {raw_status!r}")
        status = STATUSES[raw_status]
        content = body.get("content") if isinstance(body.get("content"), dict) else {}
        url = (content or {}).get("video_url")
        if status is TaskStatus.SUCCEEDED and not url:
            raise MalformedAnswer("succeeded task has no content.video_url")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        error = None
        if status is TaskStatus.FAILED:
            raw_error = body.get("error") if isinstance(body.get("error"), dict) else {}
            code = (raw_error or {}).get("code")
            message = str((raw_error or {}).get("message") or "task failed without a message")
            error = TaskError(failure_kind(code, message), code, message)
        elif status is TaskStatus.EXPIRED:
            error = TaskError(ErrorKind.TASK_EXPIRED, None, "task passed execution_expires_after")
        # Judged by the cost: negative, NaN or absurd usage falls back to the formula.
        tokens, tokens_anomaly = reported_usage(
            (usage or {}).get("completion_tokens"), "completion_tokens"
        )
        return TaskState(
            task_id=body.get("id"),
            status=status,
            video_url=url,
            last_frame_url=(content or {}).get("last_frame_url") or None,
            seed_used=as_int(body.get("seed")),
            tokens=tokens,
            usage_anomaly=tokens_anomaly,
            duration_s=as_float(body.get("duration")),
            fps=as_int(body.get("framespersecond") or body.get("fps")),
            resolution=body.get("resolution"),
            ratio=body.get("ratio"),
            error=error,
            raw=body,
        )

    def classify_error(self, answer: HttpAnswer) -> ProviderError:
        code = ""
        message = answer.body[:500].decode("utf-8", "replace")
        try:
            body = answer.json()
            raw_error = body.get("error") if isinstance(body, dict) else None
            if isinstance(raw_error, dict):
                code = str(raw_error.get("code") or "")
                message = str(raw_error.get("message") or message)
        except ValueError:
            pass
        return self.error(error_kind(code, answer.status), message, answer, code=code or None)
