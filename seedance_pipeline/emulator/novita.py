"""Novita AI's async API as the emulator serves it (myrouter is the same dialect at its own prefix).

Faithful to the documents and to real traffic: seeds and TTLs as strings, `extra: {}` and
`progress_percent: 0` on some successes, `{"id"}` instead of `{"task_id"}` where myrouter documents it.
Where the documentation's sample and Novita's official client (`novita-client`) disagree, the client
wins: `debug_info` times are integers (the sample's empty strings are placeholders), and only the four
documented statuses are sent.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedance_pipeline.emulator.dialect import Dialect, Reject
from seedance_pipeline.providers.models import GenerationRequest, TaskStatus, Violation

STATUS_WORDS = {
    TaskStatus.QUEUED: "TASK_STATUS_QUEUED",
    TaskStatus.RUNNING: "TASK_STATUS_PROCESSING",
    TaskStatus.SUCCEEDED: "TASK_STATUS_SUCCEED",
    TaskStatus.FAILED: "TASK_STATUS_FAILED",
    TaskStatus.CANCELLED: "TASK_STATUS_CANCELED",
    # No status for expiry is documented (the 1.5 pro page only says "marked as expired"), and the
    # official client knows none: an expired task is a failed one whose reason says so [guess].
    TaskStatus.EXPIRED: "TASK_STATUS_FAILED",
}
IMAGE_REASONS = {
    "format": "INVALID_IMAGE_FORMAT",
    "unreadable": "INVALID_IMAGE_FORMAT",
    "bytes": "IMAGE_FILE_EXCEEDS_MAX_SIZE",
    "long_side": "IMAGE_EXCEEDS_MAX_RESOLUTION",
    "short_side": "INVALID_IMAGE_SIZE",
    "ratio": "INVALID_IMAGE_SIZE",
}


class NovitaDialect(Dialect):
    api: ClassVar[str] = "novita"
    auth_missing = (400, "MISSING_API_KEY")
    auth_invalid = (403, "INVALID_API_KEY")
    rate_limited = (429, "RATE_LIMIT_EXCEEDED")
    server_error = (500, "CREATE_TASK_FAILED")
    no_credit = (400, "BILLING_BALANCE_NOT_ENOUGH")
    content_rejected = (400, "ILLEGAL_IMAGE_CONTENT")
    not_found = (404, "API_NOT_FOUND")
    too_many_tasks = (429, "RATE_LIMIT_EXCEEDED")

    def routes(self) -> list[Route]:
        return [
            Route(f"{self.prefix}/v3/async/task-result", self.task_result, methods=["GET"]),
            Route(f"{self.prefix}/v3/async/{{model}}", self.submit, methods=["POST"]),
        ]

    def error(
        self, request: Request, status: int, code: str, message: str, param: str = ""
    ) -> Response:
        return JSONResponse(
            {"code": status, "reason": code, "message": message, "metadata": {}}, status
        )

    def new_task_id(self) -> str:
        return f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-4{secrets.token_hex(2)[1:]}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"

    def violation_code(self, violation: Violation) -> str:
        if violation.field in ("image", "last_image"):
            return IMAGE_REASONS.get(violation.rule, "INVALID_REQUEST_BODY")
        return "INVALID_REQUEST_BODY"

    async def submit(self, request: Request) -> Response:
        try:
            key = await self.gate(request, "submit")
            model_id = request.path_params["model"]
            if model_id not in self.spec.models:
                raise Reject(
                    self.error(request, 404, "API_NOT_FOUND", f"no API at /v3/async/{model_id}")
                )
            model = self.spec.models[model_id]
            raw = await request.body()
            body = await self.json_body(request)
            self.require(request, body, model)
            last_ref = self.take(request, body, "last_image", str)
            image, images = await self.load_images(request, body.get("image"), last_ref)
            wire = GenerationRequest(
                provider=self.name,
                model=model_id,
                image=body["image"],
                last_image=last_ref,
                prompt=self.take(request, body, "prompt", str) or "",
                resolution=self.take(request, body, "resolution", str),
                aspect_ratio=self.take(request, body, model.aspect_ratio_field, str),
                duration=self.take(request, body, "duration", int),
                seed=self.take(request, body, "seed", int),
                camera_fixed=self.take(request, body, "camera_fixed", bool),
                **{
                    option: self.take(request, body, option, kind)
                    for option, kind in (
                        ("watermark", bool),
                        ("generate_audio", bool),
                        ("service_tier", str),
                        ("fps", int),
                        ("execution_expires_after", int),
                    )
                    if option in model.options  # other fields are ignored, as the API does
                },
            )
            self.check(request, wire, images)
            task = self.create(request, key, wire, model, image, images, raw)
        except Reject as reject:
            return reject.response
        id_field = self.spec.submit_id_field.get(model_id, "task_id")
        return await self.answer("submit", {id_field: task.id})

    async def task_result(self, request: Request) -> Response:
        try:
            await self.gate(request, "poll")
        except Reject as reject:
            return reject.response
        task = self.state.task(self.name, request.query_params.get("task_id", ""))
        if task is None:
            return self.error(request, 404, "TASK_NOT_FOUND", "task not found")
        status = task.status(time.time())
        succeeded = status is TaskStatus.SUCCEEDED
        reason = ""
        if status is TaskStatus.FAILED and task.failure:
            reason = task.failure[1]
        elif status is TaskStatus.EXPIRED:
            reason = "task expired: execution_expires_after reached"
        ttl = str(int(self.state.config.url_ttl(self.name)))
        now = time.time()
        extra: dict[str, Any] = {
            "seed": str(task.params["seed"]),
            # Integers, as the official client types them; their meaning (epoch ms, 0 until
            # reached) is a [guess]: the documentation's sample has only empty strings.
            "debug_info": {
                "submit_time_ms": int(task.created_at * 1000),
                "execute_time_ms": int(task.runs_at * 1000) if now >= task.runs_at else 0,
                "complete_time_ms": int(task.finishes_at * 1000) if status.terminal else 0,
            },
        }
        task_part: dict[str, Any] = {
            "task_id": task.id,
            "status": STATUS_WORDS[status],
            "reason": reason,
            "task_type": task.model.upper().replace("-", "_").replace(".", "_"),
            "eta": 0 if status.terminal else max(0, int(task.finishes_at - time.time())),
            "progress_percent": 100 if succeeded else 0,
        }
        payload: dict[str, Any] = {
            "extra": extra,
            "task": task_part,
            "images": [],
            "audios": [],
            "videos": [],
        }
        if succeeded:
            payload["videos"] = [
                {
                    "video_url": self.video_url(request, task),
                    "video_url_ttl": ttl,
                    "video_type": "mp4",
                }
            ]
            if task.quirky:  # as seen in real traffic
                payload["extra"] = {}
                task_part["progress_percent"] = 0
                payload["videos"][0]["video_url_ttl"] = "0"
                payload["videos"][0]["nsfw_detection_result"] = None
        return await self.answer("poll", payload)
