"""AI/ML API's Seedance endpoint as the emulator serves it.

Both the POST and the GET answer a generation object; durations may arrive as the string "5" (the
docs' own examples send it), `camerafixed` is accepted beside `camera_fixed`, and in-progress states
alternate between the documented words and those seen in samples (`waiting`, `active`).
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedance_pipeline.emulator.dialect import Dialect, Reject
from seedance_pipeline.emulator.state import EmulatedTask
from seedance_pipeline.providers.cost import usd_for_tokens, video_tokens
from seedance_pipeline.providers.models import GenerationRequest, TaskStatus

PATH = "/v2/generate/video/bytedance/generation"


class AimlApiDialect(Dialect):
    api: ClassVar[str] = "aimlapi"
    url_expiry_param: ClassVar[str] = "X-Tos-Expires"
    auth_missing = (401, "Unauthorized")
    auth_invalid = (401, "Unauthorized")
    rate_limited = (429, "Too Many Requests")
    server_error = (500, "Internal Server Error")
    no_credit = (403, "Forbidden")
    content_rejected = (400, "Bad Request")
    not_found = (404, "Not Found")
    too_many_tasks = (429, "Too Many Requests")

    def routes(self) -> list[Route]:
        return [
            Route(f"{self.prefix}{PATH}", self.submit, methods=["POST"]),
            Route(f"{self.prefix}{PATH}", self.generation, methods=["GET"]),
        ]

    def error(
        self, request: Request, status: int, code: str, message: str, param: str = ""
    ) -> Response:
        return JSONResponse(
            {
                "message": message,
                "path": PATH,
                "requestId": str(uuid.uuid4()),
                "statusCode": status,
                "timestamp": datetime.now(UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
            },
            status,
        )

    def new_task_id(self) -> str:
        return f"cgt-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"

    async def submit(self, request: Request) -> Response:
        try:
            key = await self.gate(request, "submit")
            raw = await request.body()
            body = await self.json_body(request)
            model_id = body.get("model")
            if model_id not in self.spec.models:
                raise Reject(
                    self.error(
                        request,
                        400,
                        "Bad Request",
                        f"model must be one of {list(self.spec.models)}",
                    )
                )
            model = self.spec.models[model_id]
            self.require(request, body, model)
            duration = body.get("duration")
            if isinstance(duration, str) and duration.isdigit():
                duration = int(duration)  # the docs' examples send "5"
            camera_fixed = body.get("camera_fixed", body.get("camerafixed"))
            image, images = await self.load_images(
                request, body.get("image_url"), None, ("image_url", "")
            )
            wire = GenerationRequest(
                provider=self.name,
                model=model_id,
                image=body["image_url"],
                prompt=self.take(request, body, "prompt", str) or "",
                resolution=self.take(request, body, "resolution", str),
                duration=self.take(request, {"duration": duration}, "duration", int),
                seed=self.take(request, body, "seed", int),
                camera_fixed=self.take(
                    request, {"camera_fixed": camera_fixed}, "camera_fixed", bool
                ),
                watermark=self.take(request, body, "watermark", bool),
            )
            self.check(request, wire, images)
            task = self.create(request, key, wire, model, image, images, raw)
        except Reject as reject:
            return reject.response
        return await self.answer("submit", {"id": task.id, "status": "queued"})

    def credits_used(self, task: EmulatedTask) -> int:
        """Credits as the real service bills them: the token price converted at its credit rate."""
        price = self.spec.prices[task.model]
        model = self.spec.models[task.model]
        p = task.params
        tokens = video_tokens(p["width"], p["height"], p["fps"], p["duration"])
        usd = usd_for_tokens(price, model, GenerationRequest(self.name, task.model, ""), tokens)
        return round(usd / (price.usd_per_credit or 1))

    async def generation(self, request: Request) -> Response:
        try:
            await self.gate(request, "poll")
        except Reject as reject:
            return reject.response
        task = self.state.task(self.name, request.query_params.get("generation_id", ""))
        if task is None:
            return self.error(request, 404, "Not Found", "generation not found")
        status = task.status(time.time())
        word = {
            TaskStatus.QUEUED: "waiting" if task.quirky else "queued",
            TaskStatus.RUNNING: "active" if task.quirky else "generating",
            TaskStatus.SUCCEEDED: "completed",
            TaskStatus.FAILED: "error",
            TaskStatus.CANCELLED: "error",
            TaskStatus.EXPIRED: "error",
        }[status]
        payload: dict[str, Any] = {"id": task.id, "status": word}
        if status is TaskStatus.SUCCEEDED:
            payload["video"] = {"url": self.video_url(request, task)}
            payload["error"] = None
            credits = self.credits_used(task)
            payload["meta"] = {"usage": {"credits_used": str(credits) if task.quirky else credits}}
        elif status.terminal:
            code, message = task.failure or ("GenerationExpired", "the generation timed out")
            payload["error"] = {"name": code, "message": message}
        return await self.answer("poll", payload)
