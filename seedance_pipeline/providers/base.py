"""The one small interface every provider API sits behind.

An adapter is pure: it turns a `GenerationRequest` into an `HttpCall`, and an HTTP answer into a
`TaskState` or a `ProviderError`. It does no I/O, so it is tested without a network and the HTTP
behaviour (timeouts, auth, redirects) lives once, in `client.py`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from seedance_pipeline.providers.cost import actual_cost_usd, estimate_cost_usd
from seedance_pipeline.providers.facts import ModelSpec, ProviderSpec
from seedance_pipeline.providers.models import (
    CostEstimate,
    ErrorKind,
    GenerationRequest,
    ImageInfo,
    ProviderError,
    TaskState,
    Violation,
)
from seedance_pipeline.providers.parsing import MalformedAnswer as MalformedAnswer
from seedance_pipeline.providers.parsing import as_float as as_float
from seedance_pipeline.providers.parsing import as_int as as_int
from seedance_pipeline.providers.parsing import bounded_json
from seedance_pipeline.providers.validation import validate_request


@dataclass(frozen=True)
class HttpCall:
    """A provider call, relative to the provider's base URL; auth headers are added by the client."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, bounded in size and depth (`MalformedAnswer`, a ValueError, if not)."""
        return bounded_json(self.body)


# HTTP status → error kind, where a provider's own code says nothing more precise.
STATUS_KINDS: dict[int, ErrorKind] = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.AUTHENTICATION,
    403: ErrorKind.AUTHENTICATION,
    404: ErrorKind.NOT_FOUND,
    405: ErrorKind.INVALID_REQUEST,
    408: ErrorKind.TRANSIENT,
    413: ErrorKind.INVALID_REQUEST,
    422: ErrorKind.INVALID_REQUEST,
    429: ErrorKind.RATE_LIMITED,
}


def kind_for_status(status: int) -> ErrorKind:
    if status >= 500:
        return ErrorKind.TRANSIENT
    return STATUS_KINDS.get(status, ErrorKind.INVALID_REQUEST)


_CONTENT_WORDS = ("sensitive", "illegal", "nsfw", "moderation", "content policy")


_EXPIRY_WORDS = ("expired", "timed out", "timeout")


def failure_kind(code: str | None, message: str | None) -> ErrorKind:
    """A failed task is a content rejection when its code or text says so (free of charge), an
    expiry when it says it ran out of time (providers without an `expired` status report it as a
    failure [guess]), otherwise a plain task failure."""
    text = f"{code or ''} {message or ''}".lower()
    if any(word in text for word in _CONTENT_WORDS):
        return ErrorKind.CONTENT_REJECTED
    if any(word in text for word in _EXPIRY_WORDS):
        return ErrorKind.TASK_EXPIRED
    return ErrorKind.TASK_FAILED


def require_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedAnswer(f"{what} is not a JSON object")
    return value


class ProviderAdapter(abc.ABC):
    """Validate, build requests, parse answers, classify errors, estimate and compute cost."""

    #: True when the submit call itself returns the finished video (no task to poll).
    synchronous: ClassVar[bool] = False

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    def model(self, request: GenerationRequest) -> ModelSpec:
        return self.spec.model(request.model)

    # -- validation and cost -------------------------------------------------------------------

    def validate(
        self, request: GenerationRequest, images: Mapping[str, ImageInfo] | None = None
    ) -> list[Violation]:
        if request.model not in self.spec.models:
            known = ", ".join(self.spec.models)
            return [
                Violation(
                    "model",
                    f"{request.model!r} is not offered by {self.name} (use {known})",
                    "enum",
                )
            ]
        return validate_request(request, self.model(request), images)

    def estimate_cost(
        self, request: GenerationRequest, image_size: tuple[int, int] | None = None
    ) -> CostEstimate:
        return estimate_cost_usd(self.spec, request, image_size)

    def actual_cost(
        self,
        request: GenerationRequest,
        state: TaskState,
        image_size: tuple[int, int] | None = None,
    ) -> CostEstimate:
        return actual_cost_usd(self.spec, request, state, image_size)

    # -- the wire ------------------------------------------------------------------------------

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """`Authorization: Bearer <key>`, as Novita, myrouter, AI/ML API and ModelArk document."""
        return {"Authorization": f"Bearer {api_key}"}

    @abc.abstractmethod
    def build_submit(self, request: GenerationRequest) -> HttpCall: ...

    @abc.abstractmethod
    def parse_submit(self, answer: HttpAnswer) -> TaskState:
        """The state right after a 2xx submit: a queued task id, or (Segmind) the finished video."""

    @abc.abstractmethod
    def build_poll(self, task_id: str) -> HttpCall: ...

    @abc.abstractmethod
    def parse_poll(self, answer: HttpAnswer) -> TaskState: ...

    def build_list(self, page_num: int, page_size: int) -> HttpCall | None:
        """The call that lists recent tasks (newest first), or None where the provider has none.
        Listing is how a create whose answer was lost can be found again."""
        return None

    def parse_list(self, answer: HttpAnswer) -> list[TaskState]:
        raise NotImplementedError(f"{self.name} cannot list tasks")

    def build_cancel(self, task_id: str) -> HttpCall | None:
        """The call that cancels a queued task, or None where the provider has none."""
        return None

    @abc.abstractmethod
    def classify_error(self, answer: HttpAnswer) -> ProviderError:
        """A non-2xx answer as a `ProviderError`, keeping the provider's code and message."""

    def error(
        self,
        kind: ErrorKind,
        message: str,
        answer: HttpAnswer | None = None,
        code: str | None = None,
    ) -> ProviderError:
        return ProviderError(
            kind,
            message,
            provider=self.name,
            http_status=answer.status if answer else None,
            code=code,
        )

    # -- helpers shared by the adapters ----------------------------------------------------------

    @staticmethod
    def resolved(request: GenerationRequest, model: ModelSpec) -> tuple[str, int]:
        """Resolution and duration are always sent explicitly, so the cost we estimate from our
        table's defaults cannot drift from a provider's own defaults."""
        return (
            request.resolution or model.default_resolution,
            request.duration or model.default_duration,
        )

    @staticmethod
    def body_json(answer: HttpAnswer) -> Any:
        return answer.json()
