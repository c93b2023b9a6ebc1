"""Segmind's synchronous v1 API: `POST /v1/<model>` blocks until the video is made and answers
with the MP4 itself. There is no task id and no URL, so the bytes must be kept by the caller.
"""

from __future__ import annotations

from typing import Any, ClassVar

from seedance_pipeline.providers.base import (
    HttpAnswer,
    HttpCall,
    MalformedAnswer,
    ProviderAdapter,
    failure_kind,
    kind_for_status,
)
from seedance_pipeline.providers.images import image_reference
from seedance_pipeline.providers.models import (
    ErrorKind,
    GenerationRequest,
    ProviderError,
    TaskState,
    TaskStatus,
)


def looks_like_mp4(data: bytes) -> bool:
    """An ISO base media file starts with a box whose type is `ftyp`."""
    return len(data) > 12 and data[4:8] == b"ftyp"


class SegmindAdapter(ProviderAdapter):
    synchronous: ClassVar[bool] = True

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    def build_submit(self, request: GenerationRequest) -> HttpCall:
        resolution, duration = self.resolved(request, self.model(request))
        # `first_frame_url` is the documented field for new integrations; the legacy `image_url`
        # must not be sent with it. The docs say "uri"; a data: URI is one [guess that it is read].
        body: dict[str, Any] = {
            "first_frame_url": image_reference(request.image),
            "prompt": request.prompt,
            "duration": duration,
            "resolution": resolution,
        }
        if request.last_image is not None:
            body["last_frame_url"] = image_reference(request.last_image)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.camera_fixed is not None:
            body["camera_fixed"] = request.camera_fixed
        return HttpCall("POST", f"/v1/{request.model}", json=body)

    def parse_submit(self, answer: HttpAnswer) -> TaskState:
        if not looks_like_mp4(answer.body):
            content_type = answer.headers.get("content-type", "?")
            raise MalformedAnswer(f"200 answer is not an MP4 (content-type {content_type})")
        return TaskState(
            task_id=None,
            status=TaskStatus.SUCCEEDED,
            video_bytes=answer.body,
            raw={"x-remaining-credits": answer.headers.get("x-remaining-credits")},
        )

    def build_poll(self, task_id: str) -> HttpCall:
        raise NotImplementedError("Segmind v1 is synchronous: there is no task to poll")

    def parse_poll(self, answer: HttpAnswer) -> TaskState:
        raise NotImplementedError("Segmind v1 is synchronous: there is no task to poll")

    def classify_error(self, answer: HttpAnswer) -> ProviderError:
        message = answer.body[:500].decode("utf-8", "replace")
        try:
            body = answer.json()
            if isinstance(body, dict) and body.get("error"):
                message = str(body["error"])
        except ValueError:
            pass
        if answer.status == 406:
            kind = ErrorKind.INSUFFICIENT_CREDIT  # documented: 406 means not enough credits
        elif answer.status == 400 and failure_kind(None, message) is ErrorKind.CONTENT_REJECTED:
            kind = ErrorKind.CONTENT_REJECTED  # no documented code; recognised by its words [guess]
        else:
            kind = kind_for_status(answer.status)
        return self.error(kind, message, answer, code=str(answer.status))
