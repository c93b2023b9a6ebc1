"""The HTTP side of every adapter: one httpx client per provider, configured from the environment.

Why one place: the API key is attached here and only here, to the provider's own base URL, with
redirects not followed, so it never reaches another host. Transport failures are classified here
too, including the one that matters for money: a create call whose outcome is unknown.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import itertools
import logging
import os
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import httpx

from seedance_pipeline.providers.base import HttpAnswer, HttpCall, MalformedAnswer, ProviderAdapter
from seedance_pipeline.providers.models import (
    ErrorKind,
    GenerationRequest,
    ProviderError,
    TaskState,
)
from seedance_pipeline.providers.parsing import (
    MAX_JSON_BYTES,
    clean_text,
    is_safe_task_id,
    redact,
    safe_task_id,
    safe_url,
)

USER_AGENT = "seedance-pipeline/0.1"
POOLS, POOL_SIZE = 8, 8  # up to 64 requests in flight per provider and process
MAX_INLINE_VIDEO_BYTES = 512 * 2**20  # Segmind's create answers the MP4 itself (tens of MB)
MAX_ERROR_BYTES = 64 * 2**10  # an error answer is read this far: its message is all we keep
MALFORMED = "malformed_answer"  # the code of a ProviderError made from an answer we could not read
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

    def __post_init__(self) -> None:
        if self.api_key and not self.sandbox and not key_may_travel_to(self.base_url):
            raise ValueError(
                f"{self.provider}: refusing to send an API key over plain http to "
                f"{urlsplit(self.base_url).hostname!r}; use an https:// base URL (plain http is "
                "allowed only to a loopback address, such as the emulator)"
            )

    @property
    def call_deadline_s(self) -> float:
        """How long one HTTP exchange may take in all, its body included: httpx's timeouts are
        per read, so an answer that drips a byte at a time would otherwise never end."""
        return 2 * self.timeout_s

    @property
    def submit_deadline_s(self) -> float:
        """How long a create call may run in all, every retry and `Retry-After` wait included.
        Recorded with the intent, it tells a later process when a submission in doubt can no
        longer be running (crash recovery in minutes, not a fixed quarter of an hour)."""
        retry = self.retry
        return retry.attempts * self.call_deadline_s + (retry.attempts - 1) * max(
            retry.cap_s, retry.retry_after_cap_s
        )

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


def key_may_travel_to(base_url: str) -> bool:
    """An API key goes over https, or over plain http to a loopback address only."""
    parts = urlsplit(base_url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        self,
        kind: ErrorKind,
        message: str,
        *,
        outcome_unknown: bool = False,
        code: str | None = None,
    ) -> ProviderError:
        return ProviderError(
            kind, self._scrub(message), provider=self.adapter.name, outcome_unknown=outcome_unknown,
            code=code,
        )  # fmt: skip

    def _scrub(self, text: str) -> str:
        """Provider text as we may log, store and show it: our key redacted (a provider may echo
        it back), control characters escaped, its length bounded."""
        return clean_text(redact(text, [self.config.api_key]))

    def _scrubbed(self, error: ProviderError) -> ProviderError:
        clean = ProviderError(
            error.kind,
            self._scrub(error.message),
            provider=error.provider,
            http_status=error.http_status,
            code=self._scrub(error.code)[:100] if error.code else None,
            retry_after_s=error.retry_after_s,
            outcome_unknown=error.outcome_unknown,
        )
        clean.sent_at = error.sent_at
        return clean

    def _malformed(self, what: str, exc: BaseException, *, creates_task: bool) -> ProviderError:
        """Whatever an adapter raised while reading a 2xx answer (a MalformedAnswer, or a
        TypeError/OverflowError/RecursionError from a body it did not expect): one classified
        error for this call, retryable, and an unknown outcome on a create."""
        detail = str(exc) if isinstance(exc, MalformedAnswer) else type(exc).__name__
        return self._error(
            ErrorKind.TRANSIENT, f"malformed {what}: {detail}", outcome_unknown=creates_task,
            code=MALFORMED,
        )  # fmt: skip

    async def _read_body(self, response: httpx.Response, limit: int) -> tuple[bytes, bool]:
        """The body, read streamed up to `limit` bytes; True when it was longer (and cut)."""
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                chunks.append(chunk[: max(0, limit - (size - len(chunk)))])
                return b"".join(chunks), True
            chunks.append(chunk)
        return b"".join(chunks), False

    async def _send(self, call: HttpCall, *, creates_task: bool) -> HttpAnswer:
        """One HTTP exchange. On a create call, any failure after the request may have reached the
        provider is flagged `outcome_unknown`: retrying it blindly could pay twice."""
        if not self.config.api_key:
            raise self._error(
                ErrorKind.AUTHENTICATION,
                f"no API key: set {self.adapter.spec.env_prefix}_API_KEY",
            )
        pool = next(self._next_pool)
        limit = (
            MAX_INLINE_VIDEO_BYTES if creates_task and self.adapter.synchronous else MAX_JSON_BYTES
        )
        try:
            async with asyncio.timeout(self.config.call_deadline_s):
                request = pool.build_request(
                    call.method, call.path, json=call.json, params=call.params
                )
                response = await pool.send(request, stream=True)
                try:
                    body_limit = limit if response.status_code < 400 else MAX_ERROR_BYTES
                    body, cut = await self._read_body(response, body_limit)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise self._error(
                ErrorKind.TRANSIENT,
                f"no whole answer within {self.config.call_deadline_s:g} s",
                outcome_unknown=creates_task,
            ) from None
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
        answer = HttpAnswer(response.status_code, response.headers, body)
        if 300 <= response.status_code < 400:
            location = self._scrub(response.headers.get("location", "?"))[:200]
            raise ProviderError(
                ErrorKind.INVALID_REQUEST,
                f"unexpected redirect to {location} (not followed: "
                "the API key is only sent to the provider's own host)",
                provider=self.adapter.name,
                http_status=response.status_code,
            )
        if response.status_code >= 400:
            try:
                error = self.adapter.classify_error(answer)
            except Exception as exc:  # a body no adapter expected: classify by status alone
                error = self._error(
                    ErrorKind.TRANSIENT if response.status_code >= 500 else ErrorKind.INVALID_REQUEST,
                    f"HTTP {response.status_code} with an unreadable body ({type(exc).__name__})",
                )  # fmt: skip
                error.http_status = response.status_code
            error = self._scrubbed(error)
            error.retry_after_s = retry_after_seconds(response.headers.get("retry-after"))
            # A 5xx on create may hide a task that was made: treat it as unknown.
            error.outcome_unknown = creates_task and response.status_code >= 500
            raise error
        if cut:
            raise self._malformed(
                "answer", MalformedAnswer(f"body over the {limit} byte limit"),
                creates_task=creates_task,
            )  # fmt: skip
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
        """Create a task (or, for a synchronous provider, the finished video), within
        `submit_deadline_s` in all: past it, the outcome is unknown."""
        started = time.time()
        try:
            async with asyncio.timeout(self.config.submit_deadline_s):
                return await self._retrying(lambda: self._submit_once(request), creates_task=True)
        except TimeoutError:
            error = self._error(
                ErrorKind.TRANSIENT,
                f"the create call did not end within {self.config.submit_deadline_s:g} s",
                outcome_unknown=True,
            )
            error.sent_at = started
            raise error from None

    async def _submit_once(self, request: GenerationRequest) -> TaskState:
        call = self.adapter.build_submit(request)
        sent_at = time.time()
        try:
            answer = await self._send(call, creates_task=True)
        except ProviderError as error:
            error.sent_at = sent_at  # lets reconciliation look for the task at the right time
            raise
        try:
            state = self.adapter.parse_submit(answer)
            if not self.adapter.synchronous:
                safe_task_id(state.task_id)
            return state
        except Exception as exc:
            garbled = self._malformed("submit answer", exc, creates_task=True)
            garbled.sent_at = sent_at
            raise garbled from None

    async def poll(self, task_id: str) -> TaskState:
        """A task's state; polls are safe to repeat, so every retryable error is retried."""
        return await self._retrying(lambda: self._poll_once(task_id), creates_task=False)

    async def _poll_once(self, task_id: str) -> TaskState:
        try:
            safe_task_id(task_id)  # it goes into a URL that carries our key
        except MalformedAnswer as exc:
            raise self._malformed("task id", exc, creates_task=False) from None
        answer = await self._send(self.adapter.build_poll(task_id), creates_task=False)
        try:
            return self._checked(self.adapter.parse_poll(answer))
        except Exception as exc:
            raise self._malformed("task answer", exc, creates_task=False) from None

    def _checked(self, state: TaskState) -> TaskState:
        """A parsed state fit to store and log: plain URLs, a scrubbed error message."""
        error = state.error
        if error is not None:
            error = replace(
                error,
                message=self._scrub(str(error.message)),
                code=self._scrub(str(error.code))[:100] if error.code else None,
            )
        return replace(
            state,
            video_url=safe_url(state.video_url),
            last_frame_url=safe_url(state.last_frame_url),
            error=error,
        )

    async def list_tasks(self, page_num: int = 1, page_size: int = 100) -> list[TaskState] | None:
        """Recent tasks, newest first; None where the provider cannot list them."""
        call = self.adapter.build_list(page_num, page_size)
        if call is None:
            return None
        answer = await self._send(call, creates_task=False)
        try:
            tasks = self.adapter.parse_list(answer)
        except Exception as exc:
            raise self._malformed("task list", exc, creates_task=False) from None
        return [task for task in tasks if is_safe_task_id(task.task_id)]  # others are never adopted

    async def cancel(self, task_id: str) -> bool:
        """Cancel a queued task where the provider allows it; False where it has no cancel call."""
        try:
            safe_task_id(task_id)
        except MalformedAnswer as exc:
            raise self._malformed("task id", exc, creates_task=False) from None
        call = self.adapter.build_cancel(task_id)
        if call is None:
            return False
        await self._send(call, creates_task=False)
        return True
