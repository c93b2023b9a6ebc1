"""A hostile provider: a small HTTP server on 127.0.0.1 whose every answer a test scripts.

The emulator behaves like the providers' documents; this server behaves like whatever a bug on
their side, a proxy or a man in the middle might send: wrong types, absurd numbers, bodies that
never end or drip a byte at a time, redirects, echoes of our key. A test scripts answers per route
(`server.script("GET", "/modelark/api/v3/contents/generations/tasks/*", Answer(json=...))`) and
reads back what was asked (`server.calls`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.types import Receive, Scope, Send


@dataclass(frozen=True)
class Call:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Answer:
    """What the server sends: a status, headers and either `json`, `body` or a streamed `chunks`
    (an async iterator factory, for bodies that never end or drip)."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Callable[[], AsyncIterator[bytes]] | None = None


Responder = Answer | Callable[[Call], Answer]


def endless(chunk: bytes = b"x" * 65536, first: bytes = b"") -> Callable[[], AsyncIterator[bytes]]:
    """A body that never ends (until the client hangs up)."""

    async def chunks() -> AsyncIterator[bytes]:
        if first:
            yield first
        while True:
            yield chunk

    return chunks


def drip(every_s: float, first: bytes = b"") -> Callable[[], AsyncIterator[bytes]]:
    """A body of one byte every `every_s` seconds: never idle long enough for a read timeout."""

    async def chunks() -> AsyncIterator[bytes]:
        if first:
            yield first
        while True:
            yield b"\0"
            await asyncio.sleep(every_s)

    return chunks


class HostileServer:
    """The server in a daemon thread on a free loopback port; a context manager."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Responder]] = {}
        self.calls: list[Call] = []
        self.bytes_sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(self._app, log_level="error", access_log=False, lifespan="off", interface="asgi3",
                                timeout_graceful_shutdown=1)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        daemon=True)  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, method: str, path: str, *answers: Responder) -> None:
        """Answers for `method path` (a trailing `*` matches any rest), in turn; the last repeats."""
        with self._lock:
            self.routes[(method.upper(), path)] = list(answers)

    def calls_to(self, prefix: str) -> list[Call]:
        return [c for c in self.calls if c.path.startswith(prefix)]

    def _responder(self, method: str, path: str) -> Responder | None:
        with self._lock:
            queue = self.routes.get((method, path))
            if queue is None:
                matches = [
                    (len(p), q)
                    for (m, p), q in self.routes.items()
                    if m == method and p.endswith("*") and path.startswith(p[:-1])
                ]
                queue = max(matches, key=lambda pair: pair[0])[1] if matches else None
            if not queue:
                return None
            return queue.pop(0) if len(queue) > 1 else queue[0]

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        call = Call(
            method=scope["method"],
            path=scope["path"],
            query=dict(parse_qsl(scope["query_string"].decode())),
            headers={k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
        )
        self.calls.append(call)
        responder = self._responder(call.method, call.path)
        if responder is None:
            answer = Answer(404, json={"error": f"not scripted: {call.method} {call.path}"})
        else:
            answer = responder(call) if callable(responder) else responder
        await self._send(answer, call.path, receive, send)

    async def _send(self, answer: Answer, path: str, receive: Receive, send: Send) -> None:
        headers = dict(answer.headers)
        content = answer.body
        if answer.json is not None:
            content = json.dumps(answer.json).encode()
            headers.setdefault("content-type", "application/json")
        raw_headers = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
        if answer.chunks is None:
            content = content or b""
            raw_headers.append((b"content-length", str(len(content)).encode()))
            await send({"type": "http.response.start", "status": answer.status,
                        "headers": raw_headers})  # fmt: skip
            await send({"type": "http.response.body", "body": content})
            self.bytes_sent[path] = self.bytes_sent.get(path, 0) + len(content)
            return
        await send({"type": "http.response.start", "status": answer.status, "headers": raw_headers})
        gone = asyncio.create_task(_hung_up(receive))
        try:
            async for chunk in answer.chunks():
                if gone.done() or self._server.should_exit:
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self.bytes_sent[path] = self.bytes_sent.get(path, 0) + len(chunk)
                await asyncio.sleep(0)
        except (OSError, RuntimeError):
            return  # the client hung up
        finally:
            gone.cancel()

    def __enter__(self) -> HostileServer:
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the hostile server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()


async def _hung_up(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
