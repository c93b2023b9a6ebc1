"""The HTTP side of every adapter: one httpx client per provider, configured from the environment.

Why one place: the API key is attached here and only here, to the provider's own base URL, with
redirects not followed, so it never reaches another host. Transport failures are classified here
too, including the one that matters for money: a create call whose outcome is unknown.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import itertools
import logging
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import httpx

from seedance_pipeline.providers.base import HttpAnswer, HttpCall, MalformedAnswer, ProviderAdapter
from seedance_pipeline.providers.models import (
    ErrorKind,
    GenerationRequest,
    ProviderError,
    TaskState,
)

USER_AGENT = "seedance-pipeline/0.1"
POOLS, POOL_SIZE = 8, 8  # up to 64 requests in flight per provider and process
log = logging.getLogger(__name__)


class Secret(str):
    """A string that does not show itself in reprs, logs or tracebacks of dataclasses."""

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter for retryable errors (rate limits, transient faults).
    A `Retry-After` the provider sends wins over the backoff, up to `retry_after_cap_s`."""

    attempts: int = 4  # calls in all, the first included
    base_s: float = 0.5
    cap_s: float = 20.0
    retry_after_cap_s: float = 60.0

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.retry_after_cap_s)
        return rng.uniform(0, min(self.cap_s, self.base_s * 2 ** (attempt - 1)))


NO_RETRY = RetryPolicy(attempts=1)


@dataclass(frozen=True)
class ProviderConfig:
    """Where and how to reach one provider. `api_key` is None for an unauthenticated sandbox."""

    provider: str
    base_url: str
    api_key: Secret | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    sandbox: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_env(
        cls,
        adapter: ProviderAdapter,
        env: Mapping[str, str] | None = None,
        sandbox_base_url: str | None = None,
    ) -> ProviderConfig:
        """`<PREFIX>_API_KEY`, `<PREFIX>_BASE_URL` and `<PREFIX>_TIMEOUT_S` (prefix from facts.toml).

        Without a key and with `sandbox_base_url` given, the provider is served by the emulator and
        the config says so (`sandbox=True`): sandbox and real results are never mixed silently.
        """
        env = os.environ if env is None else env
        spec = adapter.spec
        prefix = spec.env_prefix
        key = env.get(f"{prefix}_API_KEY") or None
        timeout = float(env.get(f"{prefix}_TIMEOUT_S") or spec.timeout_s)
        if key is None and sandbox_base_url is not None:
            return cls(
                provider=spec.name,
                base_url=f"{sandbox_base_url.rstrip('/')}/{spec.name}",
                api_key=Secret(f"sandbox-{spec.name}"),
                timeout_s=timeout,
                sandbox=True,
            )
        return cls(
            provider=spec.name,
            base_url=(env.get(f"{prefix}_BASE_URL") or spec.base_url).rstrip("/"),
            api_key=Secret(key) if key else None,
            timeout_s=timeout,
        )


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: a number of seconds or an HTTP date. No provider documents
    the header, but a client must honour it if one ever appears."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context per process (httpx's default: certifi, or SSL_CERT_FILE / SSL_CERT_DIR):
    loading the CA bundle costs tens of milliseconds, and every pass opens its clients anew."""
    return httpx.create_ssl_context()


class ProviderClient:
    """Submit, poll and cancel through one adapter over HTTP (async, so polls run concurrently)."""

    def __init__(
        self,
        adapter: ProviderAdapter,
        config: ProviderConfig,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.adapter = adapter
        self.config = config
        self.on_rate_limited: Callable[[], None] | None = None  # adaptive concurrency hooks
        self.on_accepted: Callable[[], None] | None = None
        self._rng = random.Random()
        headers = {"User-Agent": USER_AGENT}
        if config.api_key:
            headers.update(adapter.auth_headers(config.api_key))
        # Several small connection pools instead of one large one: httpcore's pool walks (and polls)
        # every connection it holds on each request, so its cost per request grows with the pool
        # (encode/httpcore#924); eight pools of eight keep 64 requests in flight at a fraction of
        # the CPU (BENCHMARKS.md, polling).
        self._pools = [http] if http else [
            httpx.AsyncClient(
                base_url=config.base_url,
                verify=tls_context(),
                headers=headers,
                timeout=httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s)),
                follow_redirects=False,  # the key goes to the provider's host and nowhere else
                limits=httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
            )
            for _ in range(POOLS)
        ]  # fmt: skip
        self._next_pool = itertools.cycle(self._pools)

    async def __aenter__(self) -> ProviderClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()

    def _error(
        self, kind: ErrorKind, message: str, *, outcome_unknown: bool = False
    ) -> ProviderError:
        return ProviderError(
            kind, message, provider=self.adapter.name, outcome_unknown=outcome_unknown
        )

    async def _send(self, call: HttpCall, *, creates_task: bool) -> HttpAnswer:
        """One HTTP exchange. On a create call, any failure after the request may have reached the
        provider is flagged `outcome_unknown`: retrying it blindly could pay twice."""
        if not self.config.api_key:
            raise self._error(
                ErrorKind.AUTHENTICATION,
                f"no API key: set {self.adapter.spec.env_prefix}_API_KEY",
            )
        try:
            response = await next(self._next_pool).request(
                call.method, call.path, json=call.json, params=call.params
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise self._error(
                ErrorKind.TRANSIENT, f"could not connect ({type(exc).__name__})"
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            # Nothing was sent: the base URL itself is wrong. Retryable once it is fixed.
            raise self._error(
                ErrorKind.TRANSIENT, f"bad base URL {self.config.base_url!r} ({exc})"
            ) from None
        except httpx.TimeoutException as exc:
            raise self._error(
                ErrorKind.TRANSIENT,
                f"timed out waiting for the answer ({type(exc).__name__})",
                outcome_unknown=creates_task,
            ) from None
        except httpx.TransportError as exc:
            raise self._error(
                ErrorKind.TRANSIENT,
                f"connection dropped ({type(exc).__name__})",
                outcome_unknown=creates_task,
            ) from None
        answer = HttpAnswer(response.status_code, response.headers, response.content)
        if 300 <= response.status_code < 400:
            raise ProviderError(
                ErrorKind.INVALID_REQUEST,
                f"unexpected redirect to {response.headers.get('location', '?')} (not followed: "
                "the API key is only sent to the provider's own host)",
                provider=self.adapter.name,
                http_status=response.status_code,
            )
        if response.status_code >= 400:
            error = self.adapter.classify_error(answer)
            error.retry_after_s = retry_after_seconds(response.headers.get("retry-after"))
            # A 5xx on create may hide a task that was made: treat it as unknown.
            error.outcome_unknown = creates_task and response.status_code >= 500
            raise error
        return answer

    async def _retrying(
        self, call: Callable[[], Awaitable[TaskState]], *, creates_task: bool
    ) -> TaskState:
        """Retry rate limits and transient faults with backoff, except a create whose outcome is
        unknown: that one may have made (and billed) a task, so it is never retried here."""
        attempt = 0
        while True:
            attempt += 1
            try:
                state = await call()
            except ProviderError as error:
                if error.kind is ErrorKind.RATE_LIMITED:
                    self._notify(self.on_rate_limited)
                if (
                    not error.retryable
                    or error.outcome_unknown
                    or attempt >= self.config.retry.attempts
                ):
                    raise
                delay = self.config.retry.delay(attempt, error.retry_after_s, self._rng)
                log.info(
                    "%s: %s; retrying in %.1f s (attempt %d)",
                    self.adapter.name,
                    error.kind,
                    delay,
                    attempt,
                )
                await asyncio.sleep(delay)
                continue
            if creates_task:
                self._notify(self.on_accepted)
            return state

    def _notify(self, hook: Callable[[], None] | None) -> None:
        """Adaptive-concurrency hooks are best effort: a failing hook must never cost a task id."""
        if hook is None:
            return
        try:
            hook()
        except Exception:
            log.exception("%s: concurrency hook failed (ignored)", self.adapter.name)

    async def submit(self, request: GenerationRequest) -> TaskState:
        """Create a task (or, for a synchronous provider, the finished video)."""
        return await self._retrying(lambda: self._submit_once(request), creates_task=True)

    async def _submit_once(self, request: GenerationRequest) -> TaskState:
        call = self.adapter.build_submit(request)
        sent_at = time.time()
        try:
            answer = await self._send(call, creates_task=True)
        except ProviderError as error:
            error.sent_at = sent_at  # lets reconciliation look for the task at the right time
            raise
        try:
            return self.adapter.parse_submit(answer)
        except MalformedAnswer as exc:
            garbled = self._error(
                ErrorKind.TRANSIENT, f"malformed submit answer: {exc}", outcome_unknown=True
            )
            garbled.sent_at = sent_at
            raise garbled from None

    async def poll(self, task_id: str) -> TaskState:
        """A task's state; polls are safe to repeat, so every retryable error is retried."""
        return await self._retrying(lambda: self._poll_once(task_id), creates_task=False)

    async def _poll_once(self, task_id: str) -> TaskState:
        answer = await self._send(self.adapter.build_poll(task_id), creates_task=False)
        try:
            return self.adapter.parse_poll(answer)
        except MalformedAnswer as exc:
            raise self._error(ErrorKind.TRANSIENT, f"malformed task answer: {exc}") from None

    async def list_tasks(self, page_num: int = 1, page_size: int = 100) -> list[TaskState] | None:
        """Recent tasks, newest first; None where the provider cannot list them."""
        call = self.adapter.build_list(page_num, page_size)
        if call is None:
            return None
        answer = await self._send(call, creates_task=False)
        try:
            return self.adapter.parse_list(answer)
        except MalformedAnswer as exc:
            raise self._error(ErrorKind.TRANSIENT, f"malformed task list: {exc}") from None

    async def cancel(self, task_id: str) -> bool:
        """Cancel a queued task where the provider allows it; False where it has no cancel call."""
        call = self.adapter.build_cancel(task_id)
        if call is None:
            return False
        await self._send(call, creates_task=False)
        return True
