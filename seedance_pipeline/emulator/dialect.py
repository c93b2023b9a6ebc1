"""What every emulated provider API shares: auth, faults, request checks, task creation, answers.

Each provider module (`novita.py`, `aimlapi.py`, `segmind.py`, `modelark.py`) is a `Dialect`: it
knows its paths, how its bodies map onto a `GenerationRequest`, and how its answers and errors look.
The checks themselves are the documented limits in `providers/facts.toml`, applied through the same
validation the pipeline uses, so the emulator cannot accept what the facts say a provider refuses.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import binascii
import ipaddress
import json
import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from seedance_pipeline.emulator.state import EmulatedTask, EmulatorState, VideoSpec, key_fingerprint
from seedance_pipeline.providers.facts import ModelSpec, ProviderSpec, load_facts, output_size
from seedance_pipeline.providers.images import ImageUnreadable, inspect_image
from seedance_pipeline.providers.models import GenerationRequest, ImageInfo, Violation
from seedance_pipeline.providers.validation import validate_request


class DroppedConnection(Response):
    """Starts a 200 answer, then hangs up: the client cannot tell whether its call took effect."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"', "more_body": True})
        # Returning now makes the server close the connection mid-body.


class Reject(Exception):
    """Stop handling a call and answer with `response`."""

    def __init__(self, response: Response) -> None:
        self.response = response


def decode_data_uri(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    if not header.startswith("data:") or ";base64" not in header:
        raise ValueError("not a base64 data: URI")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("data: URI payload is not valid base64") from None


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Dialect(abc.ABC):
    """One provider API as the emulator serves it, mounted under `/<provider name>`."""

    api: ClassVar[str]
    url_expiry_param: ClassVar[str] = "X-Amz-Expires"

    def __init__(self, spec: ProviderSpec, state: EmulatorState) -> None:
        self.spec = spec
        self.state = state

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def prefix(self) -> str:
        return f"/{self.spec.name}"

    # -- what each dialect supplies ----------------------------------------------------------------

    @abc.abstractmethod
    def routes(self) -> list[Route]: ...

    @abc.abstractmethod
    def error(
        self, request: Request, status: int, code: str, message: str, param: str = ""
    ) -> Response:
        """An error answer in this provider's documented shape."""

    def api_key(self, request: Request) -> str | None:
        """The key the caller sent as `Authorization: Bearer <key>`, or None when it sent none."""
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return None
        return header.removeprefix("Bearer ").strip() or None

    @abc.abstractmethod
    def new_task_id(self) -> str: ...

    def violation_code(self, violation: Violation) -> str:
        return "InvalidParameter"

    # -- codes each dialect names for the common faults -------------------------------------------

    auth_missing: ClassVar[tuple[int, str]] = (401, "AuthenticationError")
    auth_invalid: ClassVar[tuple[int, str]] = (401, "AuthenticationError")
    rate_limited: ClassVar[tuple[int, str]] = (429, "RateLimitExceeded")
    server_error: ClassVar[tuple[int, str]] = (500, "InternalServiceError")
    no_credit: ClassVar[tuple[int, str]] = (403, "AccountOverdueError")
    content_rejected: ClassVar[tuple[int, str]] = (400, "InputImageSensitiveContentDetected")
    not_found: ClassVar[tuple[int, str]] = (404, "NotFound")
    too_many_tasks: ClassVar[tuple[int, str]] = (429, "RateLimitExceeded")

    # -- the shared flow ---------------------------------------------------------------------------

    def _fail(
        self, request: Request, status_code: tuple[int, str], message: str, param: str = ""
    ) -> Reject:
        status, code = status_code
        return Reject(self.error(request, status, code, message, param))

    async def gate(self, request: Request, call: str) -> str:
        """Slowness, auth and the per-call faults, in the order a real gateway applies them.
        Returns the API key."""
        self.state.calls[(self.name, call)] += 1
        faults = self.state.faults(self.name)
        if faults.slow_s and call in faults.apply_to:
            await asyncio.sleep(faults.slow_s)
        key = self.api_key(request)
        if not key:
            raise self._fail(request, self.auth_missing, "no API key was sent")
        if key in self.state.revoked_keys:
            raise self._fail(request, self.auth_invalid, "the API key is invalid")
        if self.state.draw(self.name, call, "rate_limit"):
            response = self.error(request, *self.rate_limited, "rate limit exceeded, slow down")
            if faults.retry_after is not None:
                response.headers["Retry-After"] = faults.retry_after
            raise Reject(response)
        if self.state.draw(self.name, call, "server_error"):
            if self.state.draw(self.name, call, "server_error"):  # half of them come from a gateway
                raise Reject(
                    Response(
                        "<html><body>502 Bad Gateway</body></html>", 502, media_type="text/html"
                    )
                )
            raise self._fail(request, self.server_error, "internal error, please retry")
        return key

    async def json_body(self, request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise self._fail(
                request, (400, self.violation_code(Violation("body", ""))), "body is not JSON"
            ) from None
        if not isinstance(body, dict):
            raise self._fail(
                request, (400, self.violation_code(Violation("body", ""))), "body must be an object"
            )
        return body

    def require(self, request: Request, body: dict[str, Any], model: ModelSpec) -> None:
        for name in model.required_fields:
            if body.get(name) in (None, "", []):
                violation = Violation(name, "is required", "missing")
                raise self._fail(
                    request, (400, self.violation_code(violation)), f"{name} is required", name
                )

    def take(self, request: Request, body: dict[str, Any], name: str, kind: type) -> Any:
        """A wire field of the documented JSON type, or None when absent (bools are not ints)."""
        value = body.get(name)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            violation = Violation(name, "wrong type", "type")
            message = f"{name} must be of type {kind.__name__}, got {type(value).__name__}"
            raise self._fail(request, (400, self.violation_code(violation)), message, name)
        return value

    async def load_image(
        self, request: Request, field: str, ref: Any
    ) -> tuple[bytes | None, ImageInfo | None]:
        """The bytes and header of an image reference: a data: URI, or a URL on this machine.
        URLs elsewhere cannot be fetched here; they are accepted unchecked."""
        if not isinstance(ref, str) or not ref:
            raise self._fail(
                request,
                (400, self.violation_code(Violation(field, "", "missing"))),
                f"{field} is required",
                field,
            )
        try:
            if ref.startswith("data:"):
                data = decode_data_uri(ref)
            elif ref.startswith(("http://", "https://")):
                if not _is_loopback(ref):
                    return None, None
                async with httpx.AsyncClient(timeout=10) as client:
                    answer = await client.get(ref)
                if answer.status_code != 200:
                    raise ValueError(f"could not download {field}: HTTP {answer.status_code}")
                data = answer.content
            else:
                raise ValueError(f"{field} must be a URL or a base64 data: URI")
            return data, inspect_image(data)
        except (ValueError, ImageUnreadable, httpx.HTTPError) as exc:
            violation = Violation(field, str(exc), "format")
            raise self._fail(
                request, (400, self.violation_code(violation)), f"{field}: {exc}", field
            ) from None

    async def load_images(
        self,
        request: Request,
        first: Any,
        last: Any,
        names: tuple[str, str] = ("image", "last_image"),
    ) -> tuple[bytes | None, dict[str, ImageInfo]]:
        """The first image's bytes (for the video) and the headers of both, keyed by reference."""
        image, info = await self.load_image(request, names[0], first)
        images = {first: info} if info else {}
        if last is not None:
            last_bytes, last_info = await self.load_image(request, names[1], last)
            if last_info:
                images[last] = last_info
            # For the video's ending (`create`), without changing what the dialects are handed.
            request.state.last_image_bytes = last_bytes
        return image, images

    def check(
        self, request: Request, wire: GenerationRequest, images: dict[str, ImageInfo]
    ) -> ModelSpec:
        """The documented limits (facts.toml) applied to what came over the wire."""
        if wire.model not in self.spec.models:
            raise self._fail(request, self.not_found, f"model {wire.model!r} not found")
        model = self.spec.models[wire.model]
        violations = validate_request(wire, model, images)
        if violations:
            first = violations[0]
            message = "; ".join(str(v) for v in violations)
            raise self._fail(request, (400, self.violation_code(first)), message, first.field)
        return model

    def create(
        self,
        request: Request,
        key: str,
        wire: GenerationRequest,
        model: ModelSpec,
        image: bytes | None,
        images: dict[str, ImageInfo],
        raw_body: bytes,
    ) -> EmulatedTask:
        """Credit, content review, the per-key limit on tasks in flight; then the task itself."""
        if self.state.faults(self.name).insufficient_credit:
            raise self._fail(request, self.no_credit, "your balance is not enough for this request")
        if self.state.draw(self.name, "submit", "reject"):
            raise self._fail(
                request, self.content_rejected, "the input image may contain sensitive content"
            )
        limit = self.state.config.in_flight_limit(self.name)
        if self.state.in_flight(self.name, key_fingerprint(key)) >= limit:
            raise self._fail(
                request,
                self.too_many_tasks,
                f"too many tasks in flight for this key (limit {limit})",
            )
        info = images.get(wire.image)
        resolution = wire.resolution or model.default_resolution
        ratio = wire.aspect_ratio or model.default_aspect_ratio
        size = (info.width, info.height) if info else None
        width, height = output_size(model.family, resolution, ratio, size)
        duration = wire.duration or model.default_duration
        table = load_facts().pixel_sizes[model.family][resolution]
        reported_ratio = next(r for r, wh in table.items() if wh == (width, height))
        params = {
            "resolution": resolution,
            "ratio": reported_ratio,
            "duration": duration,
            "seed": wire.seed if wire.seed not in (None, -1) else 1000 + self.state.next_number(),
            "fps": 24,
            "width": width,
            "height": height,
            "generate_audio": wire.generate_audio,
            "service_tier": wire.service_tier,
        }
        expires = wire.execution_expires_after
        if expires is None and model.execution_expires_after_default is not None:
            expires = model.execution_expires_after_default
        params["execution_expires_after"] = expires
        return self.state.create_task(
            task_id=self.new_task_id(),
            provider=self.name,
            model=wire.model,
            api_key=key,
            body=raw_body,
            video=VideoSpec(
                image=image,
                width=width,
                height=height,
                duration_s=duration,
                last_image=getattr(request.state, "last_image_bytes", None),
                audio=model.with_audio(wire.generate_audio),
            ),
            params=params,
            expires_after_s=expires,
        )

    def video_url(self, request: Request, task: EmulatedTask, suffix: str = "mp4") -> str:
        """A signed URL that really expires: `ttl` after the task finished, or after this answer
        where the provider re-signs URLs on every query. `png` is the video's last frame."""
        ttl = self.state.config.url_ttl(self.name)
        start = time.time() if self.spec.refreshes_video_url else task.finishes_at
        expires = start + ttl
        signature = self.state.sign_video(task.video_token, expires)
        base = str(request.base_url).rstrip("/")
        return (f"{base}/_videos/{task.video_token}.{suffix}?{self.url_expiry_param}={int(ttl)}"
                f"&expires={expires:.3f}&signature={signature}")  # fmt: skip

    async def answer(self, call: str, payload: Any, status: int = 200) -> Response:
        """A JSON answer, unless a drop or malformed-body fault strikes it. `answer_delay_s` holds
        it back after the work is done (a create has made its task): the caller may die waiting."""
        delay = self.state.faults(self.name).answer_delay_s
        if delay and call in self.state.faults(self.name).apply_to:
            await asyncio.sleep(delay)
        if self.state.draw(self.name, call, "drop"):
            return DroppedConnection()
        if self.state.draw(self.name, call, "malformed"):
            text = json.dumps(payload)
            return Response(text[: max(1, len(text) // 2)], status, media_type="application/json")
        return JSONResponse(payload, status)
