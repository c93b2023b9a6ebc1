"""Novita AI's async API; myrouter mirrors it at another base URL.

`POST /v3/async/<model>` → `{"task_id"}` (Novita's page) or `{"id"}` (myrouter's 1.5 pro page);
`GET /v3/async/task-result?task_id=...` → `{"extra", "task", "videos"}` with strings for numbers.
"""

from __future__ import annotations

from typing import Any

from seedance_pipeline.providers.base import (
    HttpAnswer,
    HttpCall,
    MalformedAnswer,
    ProviderAdapter,
    as_int,
    failure_kind,
    kind_for_status,
    require_dict,
)
from seedance_pipeline.providers.facts import OPTIONS
from seedance_pipeline.providers.images import image_reference
from seedance_pipeline.providers.models import (
    ErrorKind,
    GenerationRequest,
    ProviderError,
    TaskError,
    TaskState,
    TaskStatus,
)

STATUSES = {
    "TASK_STATUS_QUEUED": TaskStatus.QUEUED,
    "TASK_STATUS_PROCESSING": TaskStatus.RUNNING,
    "TASK_STATUS_SUCCEED": TaskStatus.SUCCEEDED,
    "TASK_STATUS_FAILED": TaskStatus.FAILED,
    "TASK_STATUS_CANCELED": TaskStatus.CANCELLED,  # seen in clients, not in the docs
    # Documented nowhere and unknown to the official client; accepted in case it appears (the 1.5
    # pro page says "marked as expired"). An expiry reported as a failure is classified by its
    # reason (failure_kind) [guess].
    "TASK_STATUS_EXPIRED": TaskStatus.EXPIRED,
}

REASON_KINDS = {
    "INVALID_REQUEST_BODY": ErrorKind.INVALID_REQUEST,
    "IMAGE_FILE_EXCEEDS_MAX_SIZE": ErrorKind.INVALID_REQUEST,
    "INVALID_IMAGE_FORMAT": ErrorKind.INVALID_REQUEST,
    "IMAGE_EXCEEDS_MAX_RESOLUTION": ErrorKind.INVALID_REQUEST,
    "INVALID_IMAGE_SIZE": ErrorKind.INVALID_REQUEST,
    "API_NOT_FOUND": ErrorKind.INVALID_REQUEST,
    "ILLEGAL_PROMPT": ErrorKind.CONTENT_REJECTED,
    "ILLEGAL_IMAGE_CONTENT": ErrorKind.CONTENT_REJECTED,
    "BILLING_BALANCE_NOT_ENOUGH": ErrorKind.INSUFFICIENT_CREDIT,  # a 400, not a 402
    "MISSING_API_KEY": ErrorKind.AUTHENTICATION,
    "INVALID_API_KEY": ErrorKind.AUTHENTICATION,
    "BILLING_AUTH_FAILED": ErrorKind.AUTHENTICATION,
    "API_NOT_ALLOWED": ErrorKind.AUTHENTICATION,
    "TASK_NOT_FOUND": ErrorKind.NOT_FOUND,
    "RATE_LIMIT_EXCEEDED": ErrorKind.RATE_LIMITED,
    "BILLING_FAILED": ErrorKind.TRANSIENT,
    "CREATE_TASK_FAILED": ErrorKind.TRANSIENT,
    "GET_RESULT_FAILED": ErrorKind.TRANSIENT,
    "TASK_FAILED": ErrorKind.TRANSIENT,
}


class NovitaAdapter(ProviderAdapter):
    def build_submit(self, request: GenerationRequest) -> HttpCall:
        model = self.model(request)
        resolution, duration = self.resolved(request, model)
        body: dict[str, Any] = {
            "image": image_reference(request.image),
            "resolution": resolution,
            "duration": duration,
        }
        if request.prompt:
            body["prompt"] = request.prompt
        if request.aspect_ratio is not None:
            body[model.aspect_ratio_field] = request.aspect_ratio
        if request.last_image is not None:
            body["last_image"] = image_reference(request.last_image)
        for option in OPTIONS:  # the body uses the option names themselves
            if option == "last_image":
                continue
            value = getattr(request, option)
            if value is not None:
                body[option] = value
        return HttpCall("POST", f"/v3/async/{request.model}", json=body)

    def parse_submit(self, answer: HttpAnswer) -> TaskState:
        body = require_dict(self.body_json(answer), "submit answer")
        task_id = body.get("task_id") or body.get("id")  # the two documents disagree
        if not isinstance(task_id, str) or not task_id:
            raise MalformedAnswer("submit answer has neither task_id nor id")
        return TaskState(task_id=task_id, status=TaskStatus.QUEUED, raw=body)

    def build_poll(self, task_id: str) -> HttpCall:
        return HttpCall("GET", "/v3/async/task-result", params={"task_id": task_id})

    def parse_poll(self, answer: HttpAnswer) -> TaskState:
        body = require_dict(self.body_json(answer), "task result")
        task = require_dict(body.get("task"), "task")
        raw_status = task.get("status")
        if raw_status not in STATUSES:
            raise MalformedAnswer(f"unknown task status {raw_status!r}")
        status = STATUSES[raw_status]
        extra: dict[str, Any] = body["extra"] if isinstance(body.get("extra"), dict) else {}
        videos = body.get("videos") or []
        video = videos[0] if videos and isinstance(videos[0], dict) else {}
        error = None
        if status is TaskStatus.FAILED:
            reason = str(task.get("reason") or "task failed without a reason")
            error = TaskError(failure_kind(None, reason), None, reason)
        elif status is TaskStatus.EXPIRED:
            error = TaskError(
                ErrorKind.TASK_EXPIRED, None, str(task.get("reason") or "task expired")
            )
        if status is TaskStatus.SUCCEEDED and not video.get("video_url"):
            raise MalformedAnswer("succeeded task has no video_url")
        ttl = as_int(video.get("video_url_ttl"))
        return TaskState(
            task_id=task.get("task_id"),
            status=status,
            video_url=video.get("video_url"),
            video_url_ttl_s=ttl or None,  # real traffic showed "0": unknown, not "already expired"
            seed_used=as_int(extra.get("seed")),
            error=error,
            raw=body,
        )

    def classify_error(self, answer: HttpAnswer) -> ProviderError:
        reason: str | None = None
        message = answer.body[:500].decode("utf-8", "replace")
        try:
            body = answer.json()
            if isinstance(body, dict):
                reason = body.get("reason") or None
                message = str(body.get("message") or reason or message)
        except ValueError:
            pass
        kind = REASON_KINDS.get(reason or "", kind_for_status(answer.status))
        return self.error(kind, message, answer, code=reason)
