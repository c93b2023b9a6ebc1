"""Segmind's synchronous v1 endpoint as the emulator serves it: the call blocks for the whole
generation and answers with the MP4 itself, with an `x-remaining-credits` header."""

from __future__ import annotations

import asyncio
import secrets
from typing import ClassVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedance_pipeline.emulator.dialect import Dialect, DroppedConnection, Reject
from seedance_pipeline.providers.models import GenerationRequest, TaskStatus

STARTING_CREDITS = 1000.0


class SegmindDialect(Dialect):
    api: ClassVar[str] = "segmind"
    auth_missing = (401, "Unauthorized")
    auth_invalid = (401, "Unauthorized")
    rate_limited = (429, "Too Many Requests")
    server_error = (500, "Internal Server Error")
    no_credit = (406, "Not Acceptable")
    content_rejected = (400, "Bad Request")
    not_found = (404, "Not Found")
    too_many_tasks = (429, "Too Many Requests")

    remaining_credits: float = STARTING_CREDITS

    def routes(self) -> list[Route]:
        return [Route(f"{self.prefix}/v1/{{model}}", self.generate, methods=["POST"])]

    def error(
        self, request: Request, status: int, code: str, message: str, param: str = ""
    ) -> Response:
        if code == "Bad Request" and "sensitive" in message:
            message = f"NSFW content detected: {message}"
        return JSONResponse({"error": message}, status)

    def api_key(self, request: Request) -> str | None:
        return request.headers.get("x-api-key") or None

    def new_task_id(self) -> str:
        return f"segmind-{secrets.token_hex(8)}"  # internal only: Segmind shows no task id

    async def generate(self, request: Request) -> Response:
        try:
            key = await self.gate(request, "submit")
            model_id = request.path_params["model"]
            if model_id not in self.spec.models:
                raise Reject(self.error(request, 404, "Not Found", f"model {model_id} not found"))
            model = self.spec.models[model_id]
            raw = await request.body()
            body = await self.json_body(request)
            self.require(request, body, model)
            legacy, first, last = (
                body.get("image_url"),
                body.get("first_frame_url"),
                body.get("last_frame_url"),
            )
            if legacy is not None and (first is not None or last is not None):
                raise Reject(
                    self.error(
                        request,
                        400,
                        "Bad Request",
                        "image_url cannot be used together with first_frame_url or last_frame_url",
                    )
                )
            if last is not None and first is None:
                raise Reject(
                    self.error(
                        request, 400, "Bad Request", "last_frame_url requires first_frame_url"
                    )
                )
            first_ref = first if first is not None else legacy
            names = ("first_frame_url" if first is not None else "image_url", "last_frame_url")
            image, images = await self.load_images(request, first_ref, last, names)
            wire = GenerationRequest(
                provider=self.name,
                model=model_id,
                image=str(first_ref),
                last_image=last,
                prompt=self.take(request, body, "prompt", str) or "",
                resolution=self.take(request, body, "resolution", str),
                duration=self.take(request, body, "duration", int),
                seed=self.take(request, body, "seed", int),
                camera_fixed=self.take(request, body, "camera_fixed", bool),
            )
            self.check(request, wire, images)
            task = self.create(request, key, wire, model, image, images, raw)
        except Reject as reject:
            return reject.response
        await asyncio.sleep(max(0.0, task.finishes_at - task.created_at))
        outcome = task.outcome
        if outcome is not TaskStatus.SUCCEEDED:
            message = task.failure[1] if task.failure else "generation timed out"
            status = 400 if task.failure and "Sensitive" in task.failure[0] else 500
            return self.error(request, status, "Bad Request", message)
        if self.state.draw(self.name, "submit", "drop"):
            return DroppedConnection()
        if self.state.draw(self.name, "submit", "malformed"):
            return JSONResponse({"status": "ok", "output": None}, 200)  # a 200 without the video
        video = await run_in_threadpool(self.state.video, task.video)
        price = self.spec.prices[task.model].per_generation
        self.remaining_credits -= price.get(
            f"{task.params['resolution']}/{task.params['duration']}s", 0.0
        )
        return Response(
            video,
            200,
            media_type="video/mp4",
            headers={"x-remaining-credits": f"{max(0.0, self.remaining_credits):.3f}"},
        )
