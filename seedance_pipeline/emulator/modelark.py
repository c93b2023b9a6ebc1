"""BytePlus ModelArk's content-generation tasks API as the emulator serves it.

Parameters arrive as `--flags` in the text (1.0 models) or as top-level fields (newer models); fields
a model does not support are rejected, not ignored. Numbers are sometimes strings in answers
(`duration`, usage counts), as clients have seen.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedance_pipeline.emulator.dialect import Dialect, Reject
from seedance_pipeline.emulator.state import EmulatedTask
from seedance_pipeline.providers.cost import video_tokens
from seedance_pipeline.providers.models import GenerationRequest, TaskStatus, Violation

PATH = "/contents/generations/tasks"

# Text flag → request field. Long spellings are documented beside the short ones.
FLAGS = {
    "rs": "resolution", "resolution": "resolution",
    "rt": "aspect_ratio", "ratio": "aspect_ratio",
    "dur": "duration", "duration": "duration",
    "fps": "fps", "framespersecond": "fps",
    "seed": "seed",
    "cf": "camera_fixed", "camerafixed": "camera_fixed",
    "wm": "watermark", "watermark": "watermark",
}  # fmt: skip
FIELD_TYPES: dict[str, type] = {
    "resolution": str,
    "aspect_ratio": str,
    "duration": int,
    "fps": int,
    "seed": int,
    "camera_fixed": bool,
    "watermark": bool,
    "generate_audio": bool,
    "service_tier": str,
    "execution_expires_after": int,
}
TOP_LEVEL = {"ratio": "aspect_ratio"} | {
    name: name for name in FIELD_TYPES if name != "aspect_ratio"
}
ENVELOPE = {"model", "content", "callback_url", "return_last_frame"}
FLAG_PATTERN = re.compile(r"--(\w+)\s+(\S+)")


def _flag_value(kind: type, text: str) -> Any:
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    return kind(text)


class ModelArkDialect(Dialect):
    api: ClassVar[str] = "modelark"
    url_expiry_param: ClassVar[str] = "X-Tos-Expires"
    auth_missing = (401, "AuthenticationError")
    auth_invalid = (401, "AuthenticationError")
    rate_limited = (429, "RateLimitExceeded.EndpointRPMExceeded")
    server_error = (500, "InternalServiceError")
    no_credit = (403, "AccountOverdueError")
    content_rejected = (400, "InputImageSensitiveContentDetected")
    not_found = (404, "InvalidEndpointOrModel.NotFound")
    too_many_tasks = (429, "QuotaExceeded")

    def routes(self) -> list[Route]:
        return [
            Route(f"{self.prefix}{PATH}", self.submit, methods=["POST"]),
            Route(f"{self.prefix}{PATH}", self.list_tasks, methods=["GET"]),
            Route(f"{self.prefix}{PATH}/{{task_id}}", self.get_task, methods=["GET"]),
            Route(f"{self.prefix}{PATH}/{{task_id}}", self.delete_task, methods=["DELETE"]),
        ]

    def error(
        self, request: Request, status: int, code: str, message: str, param: str = ""
    ) -> Response:
        kind = {
            400: "BadRequest",
            401: "Unauthorized",
            403: "Forbidden",
            404: "NotFound",
            429: "TooManyRequests",
        }
        return JSONResponse(
            {
                "error": {
                    "code": code,
                    "message": message,
                    "param": param,
                    "type": kind.get(status, "InternalServerError"),
                }
            },
            status,
        )

    def new_task_id(self) -> str:
        return f"cgt-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}-{secrets.token_hex(3)[:5]}"

    def violation_code(self, violation: Violation) -> str:
        return "MissingParameter" if violation.rule == "missing" else "InvalidParameter"

    def _invalid(self, request: Request, param: str, message: str) -> Reject:
        return Reject(self.error(request, 400, "InvalidParameter", message, param))

    def _parameters(self, request: Request, body: dict[str, Any], text: str) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for flag, raw in FLAG_PATTERN.findall(text):
            if flag not in FLAGS:
                continue  # other --words are part of the prompt
            name = FLAGS[flag]
            try:
                values[name] = _flag_value(FIELD_TYPES[name], raw)
            except ValueError:
                raise self._invalid(request, flag, f"invalid value {raw!r} for --{flag}") from None
        for key in body:
            if key not in ENVELOPE and key not in TOP_LEVEL:
                raise self._invalid(request, key, f"the parameter {key} is not supported")
        for key, name in TOP_LEVEL.items():
            if key in body:
                values[name] = self.take(request, body, key, FIELD_TYPES[name])
        return values

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
                        404,
                        *self.not_found[1:],
                        f"the model {model_id} does not exist",
                        "model",
                    )
                )
            model = self.spec.models[model_id]
            self.require(request, body, model)
            content = body["content"]
            if not isinstance(content, list) or not all(isinstance(item, dict) for item in content):
                raise self._invalid(request, "content", "content must be a list of objects")
            texts = [item.get("text", "") for item in content if item.get("type") == "text"]
            frames = {item.get("role", "first_frame"): (item.get("image_url") or {}).get("url")
                      for item in content if item.get("type") == "image_url"}  # fmt: skip
            if "first_frame" not in frames:
                raise Reject(
                    self.error(
                        request,
                        400,
                        "MissingParameter",
                        "an image_url with role first_frame is required",
                        "content",
                    )
                )
            text = " ".join(texts)
            values = self._parameters(request, body, text)
            prompt = FLAG_PATTERN.sub(
                lambda m: "" if m.group(1) in FLAGS else m.group(0), text
            ).strip()
            image, images = await self.load_images(
                request, frames["first_frame"], frames.get("last_frame")
            )
            wire = GenerationRequest(
                provider=self.name,
                model=model_id,
                image=str(frames["first_frame"]),
                last_image=frames.get("last_frame"),
                prompt=prompt,
                **values,
            )
            self.check(request, wire, images)
            task = self.create(request, key, wire, model, image, images, raw)
        except Reject as reject:
            return reject.response
        return await self.answer("submit", {"id": task.id})

    def task_payload(self, request: Request, task: EmulatedTask) -> dict[str, Any]:
        now = time.time()
        status = task.status(now)
        p = task.params
        payload: dict[str, Any] = {
            "id": task.id,
            "model": task.model,
            "status": status.value,
            "content": None,
            "usage": None,
            "created_at": int(task.created_at),
            "updated_at": int(min(now, task.finishes_at)),
            "seed": p["seed"],
            "resolution": p["resolution"],
            "ratio": p["ratio"],
            "duration": str(p["duration"]) if task.quirky else p["duration"],
            "framespersecond": p["fps"],
            "error": None,
        }
        if status is TaskStatus.SUCCEEDED:
            tokens = video_tokens(p["width"], p["height"], p["fps"], p["duration"])
            payload["content"] = {"video_url": self.video_url(request, task)}
            count: Any = str(tokens) if task.quirky else tokens
            payload["usage"] = {"completion_tokens": count, "total_tokens": count}
        elif status is TaskStatus.FAILED and task.failure:
            payload["error"] = {"code": task.failure[0], "message": task.failure[1]}
        if p.get("generate_audio") is not None:
            payload["generate_audio"] = p["generate_audio"]
        if p.get("service_tier") is not None:
            payload["service_tier"] = p["service_tier"]
        return payload

    async def _task_of(self, request: Request) -> EmulatedTask:
        """The task named in the path, after the gate; a 404 in ModelArk's shape when unknown."""
        await self.gate(request, "poll")
        task = self.state.task(self.name, request.path_params["task_id"])
        if task is None:
            raise Reject(
                self.error(request, 404, "ResourceNotFound", "the task does not exist", "id")
            )
        return task

    async def get_task(self, request: Request) -> Response:
        try:
            task = await self._task_of(request)
        except Reject as reject:
            return reject.response
        return await self.answer("poll", self.task_payload(request, task))

    async def list_tasks(self, request: Request) -> Response:
        """`GET .../tasks?page_num=&page_size=&filter.status=&filter.task_ids=`: what an operator
        uses to find tasks whose creation answer was lost."""
        try:
            await self.gate(request, "poll")
        except Reject as reject:
            return reject.response
        query = request.query_params
        wanted_status = query.get("filter.status")
        wanted_ids = set(query.getlist("filter.task_ids"))
        now = time.time()
        tasks = sorted(self.state.tasks(self.name), key=lambda t: t.created_at, reverse=True)
        items = [
            t for t in tasks
            if (not wanted_status or t.status(now).value == wanted_status) and (not wanted_ids or t.id in wanted_ids)
        ]  # fmt: skip
        page_num = max(1, int(query.get("page_num", "1")))
        page_size = min(500, max(1, int(query.get("page_size", "10"))))
        page = items[(page_num - 1) * page_size : page_num * page_size]
        return await self.answer(
            "poll", {"items": [self.task_payload(request, t) for t in page], "total": len(items)}
        )

    async def delete_task(self, request: Request) -> Response:
        try:
            task = await self._task_of(request)
        except Reject as reject:
            return reject.response
        status = task.status(time.time())
        if status is TaskStatus.RUNNING:
            return self.error(
                request, 400, "InvalidParameter", "a running task cannot be cancelled", "id"
            )
        if status is TaskStatus.QUEUED:
            task.cancelled_at = time.time()  # queued → cancelled, still queryable
        else:
            self.state.delete_task(task.id)  # finished records are deleted
        return JSONResponse({})
