"""The emulator's ASGI app: every provider API under `/<provider>`, videos under `/_videos`, and a
small admin surface under `/_emulator` (audit, faults, health) for tests and operators."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from seedance_pipeline.emulator.aimlapi import AimlApiDialect
from seedance_pipeline.emulator.dialect import Dialect
from seedance_pipeline.emulator.modelark import ModelArkDialect
from seedance_pipeline.emulator.novita import NovitaDialect
from seedance_pipeline.emulator.segmind import SegmindDialect
from seedance_pipeline.emulator.state import EmulatorState, Faults
from seedance_pipeline.emulator.video import render_last_frame
from seedance_pipeline.providers.facts import load_facts

# One dialect per provider API (the `api` of a provider in facts.toml), as in providers.ADAPTERS.
DIALECTS: dict[str, type[Dialect]] = {
    "novita": NovitaDialect,
    "aimlapi": AimlApiDialect,
    "segmind": SegmindDialect,
    "modelark": ModelArkDialect,
}

_EXPIRED = """<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"""


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")


def loopback_host(scope: Scope) -> bool:
    """Whether the request's `Host` header names a loopback address (or is absent, as in HTTP/1.0)."""
    host = ""
    for name, value in scope.get("headers", []):
        if name == b"host":
            host = value.decode("latin-1").strip().lower()
            break
    if not host:
        return True
    if host.startswith("["):
        hostname = host[: host.find("]") + 1] if "]" in host else host
    else:
        hostname = host.rsplit(":", 1)[0]
    if hostname in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def dialect_class(api: str) -> type[Dialect]:
    """The emulated provider API (`api` in facts.toml)."""
    return DIALECTS[api]


def build_app(state: EmulatorState) -> ASGIApp:
    dialects = [dialect_class(spec.api)(spec, state) for spec in load_facts().providers.values()]

    async def video(request: Request) -> Response:
        name = request.path_params["token"]
        token = name.removesuffix(".mp4").removesuffix(".png")
        state.record_video_download(token, dict(request.headers))
        task = state.task_for_video(token)
        if task is None:
            return Response(
                "<Error><Code>NoSuchKey</Code></Error>", 404, media_type="application/xml"
            )
        query = request.query_params
        if not state.video_url_valid(token, query.get("expires", ""), query.get("signature", "")):
            return Response(_EXPIRED, 403, media_type="application/xml")
        if name.endswith(".png"):
            spec = task.video
            frame = await run_in_threadpool(
                render_last_frame, spec.image, spec.width, spec.height, spec.last_image
            )
            return Response(frame, 200, media_type="image/png")
        data = await run_in_threadpool(state.video, task.video)
        return Response(data, 200, media_type="video/mp4")

    async def audit(request: Request) -> Response:
        provider = request.query_params.get("provider")
        return JSONResponse([r.as_dict() for r in state.audit(provider)])

    async def video_downloads(request: Request) -> Response:
        return JSONResponse(state.video_downloads)

    async def faults(request: Request) -> Response:
        provider = request.path_params["provider"]
        if provider not in load_facts().providers:
            return JSONResponse({"error": f"unknown provider {provider}"}, 404)
        if request.method == "DELETE":
            state.set_faults(provider, None)
        elif request.method == "PUT":
            try:
                state.set_faults(provider, Faults.from_dict(await request.json()))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, 400)
        current: dict[str, Any] = vars(state.faults(provider))
        return JSONResponse(current)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "sandbox": True, "providers": [d.name for d in dialects]})

    routes = [route for dialect in dialects for route in dialect.routes()]
    routes += [
        Route("/_videos/{token}", video, methods=["GET"]),
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/audit", audit, methods=["GET"]),
        Route("/_emulator/video-downloads", video_downloads, methods=["GET"]),
        Route("/_emulator/faults/{provider}", faults, methods=["GET", "PUT", "DELETE"]),
    ]
    app = Starlette(routes=routes)

    async def note_calls(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if not loopback_host(scope):
                # DNS rebinding: a web page whose name now points at 127.0.0.1 reaches us with
                # its own name in `Host`; the emulator only answers to loopback names.
                refusal = JSONResponse({"error": "the emulator answers loopback Host names only"},
                                       421)  # fmt: skip
                await refusal(scope, receive, send)
                return
            state.last_call_at = time.time()  # for --idle-exit-s
        await app(scope, receive, send)

    return note_calls
