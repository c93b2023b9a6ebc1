"""AI/ML API: `POST /v2/generate/video/bytedance/generation`, polled with `?generation_id=`.

Both calls answer `{"id", "status", "video": {"url"}, "error": {name, message}, "meta": {"usage":
{"credits_used"}}}`; out of credit is a 403, not a 402.
"""

from __future__ import annotations

from typing import Any

from seedance_pipeline.providers.base import (
    HttpAnswer,
    HttpCall,
    MalformedAnswer,
    ProviderAdapter,
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

PATH = "/v2/generate/video/bytedance/generation"

STATUSES = {
    "queued": TaskStatus.QUEUED,
    "waiting": TaskStatus.QUEUED,  # samples treat it as in progress
    "generating": TaskStatus.RUNNING,
    "active": TaskStatus.RUNNING,
    "completed": TaskStatus.SUCCEEDED,
    "error": TaskStatus.FAILED,
    "failed": TaskStatus.FAILED,  # old specs
}


class AimlApiAdapter(ProviderAdapter):
    def build_submit(self, request: GenerationRequest) -> HttpCall:
        resolution, duration = self.resolved(request, self.model(request))
        body: dict[str, Any] = {
            "model": request.model,
            "image_url": image_reference(request.image),
            "prompt": request.prompt,
            "resolution": resolution,
            "duration": duration,
        }
        for option in ("seed", "camera_fixed"):  # `camera_fixed` as documented
            value = getattr(request, option)
            if value is not None:
                body[option] = value
        if request.watermark:  # deprecated [doc]; false is its default, so only true is sent
            body["watermark"] = True
        return HttpCall("POST", PATH, json=body)

    def parse_submit(self, answer: HttpAnswer) -> TaskState:
        body = require_dict(self.body_json(answer), "submit answer")
        task_id = body.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise MalformedAnswer("submit answer has no id")
        # The id is what matters: an unexpected status word must not throw a paid task away.
        return TaskState(task_id=task_id, status=TaskStatus.QUEUED, raw=body)

    def build_poll(self, task_id: str) -> HttpCall:
        return HttpCall("GET", PATH, params={"generation_id": task_id})

    def parse_poll(self, answer: HttpAnswer) -> TaskState:
        body = require_dict(self.body_json(answer), "generation")
        raw_status = str(body.get("status") or "").lower()
        if raw_status not in STATUSES:
            raise MalformedAnswer(f"unknown generation status {body.get('status')!r}")
        status = STATUSES[raw_status]
        video = body.get("video") if isinstance(body.get("video"), dict) else {}
        url = video.get("url") if video else None
        if status is TaskStatus.SUCCEEDED and not url:
            raise MalformedAnswer("completed generation has no video.url")
        error = None
        if status is TaskStatus.FAILED:
            raw_error = body.get("error") if isinstance(body.get("error"), dict) else {}
            name = raw_error.get("name") if raw_error else None
            message = str((raw_error or {}).get("message") or "generation failed without a message")
            error = TaskError(failure_kind(name, message), name, message)
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        usage = meta.get("usage") if meta and isinstance(meta.get("usage"), dict) else {}
        # Judged by the cost: negative, NaN or absurd usage falls back to the formula.
        credits, credits_anomaly = reported_usage((usage or {}).get("credits_used"), "credits_used")
        return TaskState(
            task_id=body.get("id"),
            status=status,
            video_url=url,
            credits=credits,
            usage_anomaly=credits_anomaly,
            error=error,
            raw=body,
        )

    def classify_error(self, answer: HttpAnswer) -> ProviderError:
        message = answer.body[:500].decode("utf-8", "replace")
        try:
            body = answer.json()
            if isinstance(body, dict) and body.get("message"):
                raw = body["message"]
                message = "; ".join(map(str, raw)) if isinstance(raw, list) else str(raw)
        except ValueError:
            pass
        if answer.status == 403:
            kind = ErrorKind.INSUFFICIENT_CREDIT  # documented: 403 means out of credits
        elif answer.status == 400 and failure_kind(None, message) is ErrorKind.CONTENT_REJECTED:
            kind = ErrorKind.CONTENT_REJECTED  # no documented code; recognised by its words [guess]
        else:
            kind = kind_for_status(answer.status)
        return self.error(kind, message, answer, code=str(answer.status))
