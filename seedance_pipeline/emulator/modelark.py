"""BytePlus ModelArk's content-generation tasks API as the emulator serves it.

Parameters arrive as `--flags` in the text (1.0 models) or as top-level fields (newer models); fields
a model does not support are rejected, not ignored. A null field is an absent one: BytePlus's official
client sends every create field it knows, null when unset, so the real service must accept that.
Answers carry the types that client declares (integers for `duration` and token counts); strings
there, which some third-party reports mention, are the explicit fault `Faults.string_numbers`.
1.5 pro makes drafts (`draft: true`, 480p, fewer tokens) and finals from them (a `draft_task` content
item), as the create API and the tutorial's "Draft mode" describe.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from seedance_pipeline.emulator.dialect import Dialect, Reject
from seedance_pipeline.emulator.state import EmulatedTask
from seedance_pipeline.providers.cost import draft_tokens, video_tokens
from seedance_pipeline.providers.models import GenerationRequest, ImageInfo, TaskStatus, Violation

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
    "frames": "frames",
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
    "frames": int,
    "draft": bool,
}
TOP_LEVEL = {"ratio": "aspect_ratio"} | {
    name: name for name in FIELD_TYPES if name not in ("aspect_ratio", "frames")
}
# Accepted for every model: `callback_url` (webhooks are not emulated) and `safety_identifier` (an
# end-user id for abuse tracing), both strings, both in the official client [client].
ENVELOPE = {"model", "content", "callback_url", "safety_identifier"}
# Fields outside the neutral request's parameters, accepted where the model's `api_options` (fields the
# pipeline does not send) or `options` (return_last_frame) name them in facts.toml.
API_OPTIONS: dict[str, type] = {"return_last_frame": bool, "frames": int}
# Documented fields of the tasks API for the Seedance 2.x models, which the official client sends for
# every model: `priority` [0, 9], `output_format` mp4 or mov, `omni_reference_task_type` [doc: the
# create API]. Typed and checked against their documented values, then ignored: the API says a
# parameter that does not fit the model "is ignored or triggers an error"; ignored is the [guess].
IGNORED: dict[str, tuple[type, tuple[Any, ...]]] = {
    "priority": (int, tuple(range(10))),
    "output_format": (str, ("mp4", "mov")),
    "omni_reference_task_type": (str, ("auto", "reference", "edit", "extend")),
}
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
            if key in IGNORED:
                kind, allowed = IGNORED[key]
                if self.take(request, body, key, kind) not in allowed:
                    raise self._invalid(request, key, f"{key} must be one of {list(allowed)}")
            elif key not in ENVELOPE and key not in TOP_LEVEL and key not in API_OPTIONS:
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
            body = {key: value for key, value in body.items() if value is not None}
            self.require(request, body, model)
            draft = self._draft_of(request, body["content"], model_id)
            if draft is not None:
                values = self._parameters(request, body, "")
                extras = self._api_options(request, body, model, values)
                wire, image, images = self._final_from(draft, values, extras)
                self.check(request, wire, images)
                task = self.create(request, key, wire, model, image, images, raw)
                task.params["draft_task_id"] = draft.id
                return await self._created(task, body, extras, wire, images)
            frames = self._frames(request, body["content"])
            texts = [item.get("text", "") for item in body["content"] if item.get("type") == "text"]
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
            text = " ".join(str(t) for t in texts)
            values = self._parameters(request, body, text)
            extras = self._api_options(request, body, model, values)
            if values.get("draft") and values.get("resolution") is None:
                values["resolution"] = model.draft_resolution  # a draft is made at 480p
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
                return_last_frame=extras.get("return_last_frame"),
                **values,
            )
            self.check(request, wire, images)
            task = self.create(request, key, wire, model, image, images, raw)
        except Reject as reject:
            return reject.response
        return await self._created(task, body, extras, wire, images)

    async def _created(
        self,
        task: EmulatedTask,
        body: dict[str, Any],
        extras: dict[str, Any],
        wire: GenerationRequest,
        images: dict[str, ImageInfo],
    ) -> Response:
        """The create's answer; the task keeps what a final made from it reuses."""
        task.params.update(extras, safety_identifier=body.get("safety_identifier"))
        task.params.update(draft=wire.draft, inputs=(wire, images))
        if extras.get(
            "frames"
        ):  # the video is as long as its frames; 121 frames are "5 s" [client]
            seconds = max(1, round(extras["frames"] / 24))
            task.params["duration"] = seconds
            task.video = dataclasses.replace(task.video, duration_s=seconds)
        return await self.answer("submit", {"id": task.id})

    def _draft_of(self, request: Request, content: Any, model_id: str) -> EmulatedTask | None:
        """The draft a `draft_task` content item names, or None without one. It must be a finished
        draft of the same model, alone in `content` (text, images or a draft: one of the three
        documented combinations)."""
        if not isinstance(content, list):
            return None
        items = [item for item in content if isinstance(item, dict)]
        named = [item for item in items if item.get("type") == "draft_task"]
        if not named:
            return None
        if len(named) != 1 or len(content) != 1:
            raise self._invalid(
                request, "content", "a draft_task item goes alone, without text or images"
            )
        ref = named[0].get("draft_task")
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            raise self._invalid(
                request, "content.draft_task", 'draft_task must be an object: {"id": "..."}'
            )
        draft = self.state.task(self.name, ref["id"])
        problem = None
        if draft is None:
            problem = "does not exist"
        elif not draft.params.get("draft"):
            problem = "is not a draft"
        elif draft.model != model_id:
            problem = f"was made by {draft.model}, not {model_id}"
        elif draft.status(time.time()) is not TaskStatus.SUCCEEDED:
            problem = "has not succeeded"
        if draft is None or problem:
            raise self._invalid(
                request, "content.draft_task.id", f"the draft task {ref['id']} {problem}"
            )
        return draft

    def _final_from(
        self, draft: EmulatedTask, values: dict[str, Any], extras: dict[str, Any]
    ) -> tuple[GenerationRequest, bytes | None, dict[str, ImageInfo]]:
        """The final's request: the draft's text, image, generate_audio, seed (the one it used),
        ratio, duration and camera_fixed; the rest as this create gives them or the model's
        defaults [doc]. Reused fields given again are ignored [guess: undocumented for 1.5 pro]."""
        used, images = draft.params["inputs"]
        p = draft.params
        wire = dataclasses.replace(
            used,
            aspect_ratio=p["ratio"],
            duration=p["duration"],
            seed=p["seed"],
            resolution=values.get("resolution"),
            watermark=values.get("watermark"),
            fps=values.get("fps"),
            service_tier=values.get("service_tier"),
            execution_expires_after=values.get("execution_expires_after"),
            return_last_frame=extras.get("return_last_frame"),
            draft=values.get("draft"),
            from_draft=draft.id,
        )
        return wire, draft.video.image, images

    def _frames(self, request: Request, content: Any) -> dict[str, Any]:
        """The image references of `content` by role; a malformed item is a 400, as the API says."""
        if not isinstance(content, list) or not all(isinstance(item, dict) for item in content):
            raise self._invalid(request, "content", "content must be a list of objects")
        frames: dict[str, Any] = {}
        for item in content:
            if item.get("type") != "image_url":
                continue
            image_url = item.get("image_url")
            if not isinstance(image_url, dict) or not isinstance(image_url.get("url"), str):
                raise self._invalid(
                    request,
                    "content.image_url",
                    'image_url must be an object with a url string: {"url": "..."}',
                )
            frames[item.get("role") or "first_frame"] = image_url["url"]
        return frames

    def _api_options(
        self, request: Request, body: dict[str, Any], model: Any, values: dict[str, Any]
    ) -> dict[str, Any]:
        """`return_last_frame`, `draft` and `frames` where the model takes them, else refused."""
        extras: dict[str, Any] = {}
        for name, kind in API_OPTIONS.items():
            if name in values:  # `--frames` in the text
                body = {**body, name: values.pop(name)}
            value = self.take(request, body, name, kind)
            if value is None:
                continue
            if name not in model.api_options and name not in model.options:
                raise self._invalid(request, name, f"{name} is not supported by {model.id}")
            extras[name] = value
        frames = extras.get("frames")
        if frames is not None:
            low, high = model.frames_range or (0, 0)
            if not low <= frames <= high or (frames - 25) % 4:
                raise self._invalid(
                    request, "frames", f"frames must be 25 + 4n within [{low}, {high}]"
                )
            if values.get("duration") is not None:
                raise self._invalid(request, "frames", "give either duration or frames, not both")
        return extras

    def task_payload(self, request: Request, task: EmulatedTask) -> dict[str, Any]:
        now = time.time()
        status = task.status(now)
        p = task.params
        strings = task.quirky and self.state.faults(self.name).string_numbers
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
            "duration": str(p["duration"]) if strings else p["duration"],
            "framespersecond": p["fps"],
            "service_tier": p.get("service_tier") or "default",
            "execution_expires_after": p["execution_expires_after"],
            "error": None,
        }
        if status is TaskStatus.SUCCEEDED:
            tokens = video_tokens(p["width"], p["height"], p["fps"], p["duration"])
            if p.get("draft"):
                model = self.spec.models[task.model]
                tokens = draft_tokens(model, tokens, p.get("generate_audio"))
            payload["content"] = {"video_url": self.video_url(request, task)}
            if p.get("return_last_frame"):
                payload["content"]["last_frame_url"] = self.video_url(request, task, "png")
            count: Any = str(tokens) if strings else tokens
            payload["usage"] = {"completion_tokens": count, "total_tokens": count}
        elif status is TaskStatus.FAILED and task.failure:
            payload["error"] = {"code": task.failure[0], "message": task.failure[1]}
        for name in ("generate_audio", "frames", "safety_identifier", "draft_task_id"):
            if p.get(name) is not None:
                payload[name] = p[name]
        if "draft" in self.spec.models[task.model].options:  # "only 1.5 pro returns it" [doc]
            payload["draft"] = bool(p.get("draft"))
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
        """`GET .../tasks?page_num=&page_size=&filter.status=&filter.task_ids=&filter.model=
        &filter.service_tier=`: what an operator uses to find tasks whose creation answer was lost."""
        try:
            await self.gate(request, "poll")
        except Reject as reject:
            return reject.response
        query = request.query_params
        wanted_status = query.get("filter.status")
        wanted_ids = set(query.getlist("filter.task_ids"))
        wanted_model = query.get("filter.model")
        wanted_tier = query.get("filter.service_tier")
        now = time.time()
        tasks = sorted(self.state.tasks(self.name), key=lambda t: t.created_at, reverse=True)
        items = [
            t for t in tasks
            if (not wanted_status or t.status(now).value == wanted_status)
            and (not wanted_ids or t.id in wanted_ids)
            and (not wanted_model or t.model == wanted_model)
            and (not wanted_tier or (t.params.get("service_tier") or "default") == wanted_tier)
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
