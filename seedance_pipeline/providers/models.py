"""Provider-neutral data: what we ask for, what a provider says back, and how it can go wrong."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GenerationRequest:
    """One image-to-video generation, independent of any provider's wire format.

    `None` means "the model's default" for every optional field: adapters omit such fields, so the
    provider's own default applies and the request stays valid for models that lack the option.
    """

    provider: str
    model: str
    image: str  # local path or http(s) URL
    prompt: str = ""
    last_image: str | None = None
    resolution: str | None = None
    aspect_ratio: str | None = None
    duration: int | None = None
    seed: int | None = None
    camera_fixed: bool | None = None
    generate_audio: bool | None = None
    service_tier: str | None = None
    watermark: bool | None = None
    fps: int | None = None
    execution_expires_after: int | None = None
    return_last_frame: bool | None = None  # ask for the video's last frame as an image (ModelArk)
    draft: bool | None = None  # a cheaper 480p preview (ModelArk 1.5 pro)
    from_draft: str | None = None  # the provider's task id of a draft this final is made from


class TaskStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self not in (TaskStatus.QUEUED, TaskStatus.RUNNING)


class ErrorKind(enum.StrEnum):
    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    INSUFFICIENT_CREDIT = "insufficient_credit"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    CONTENT_REJECTED = "content_rejected"
    NOT_FOUND = "not_found"
    TASK_FAILED = "task_failed"
    TASK_EXPIRED = "task_expired"
    # Kinds the pipeline records itself, never a provider's answer:
    VIDEO_LOST = "video_lost"  # paid for, but the video could not be copied
    OUTCOME_UNKNOWN = "outcome_unknown"  # a create call whose answer never came
    OUTCOME_UNKNOWN_UNDECIDED = "outcome_unknown_undecided"  # reconciliation could not tell
    BUDGET_STOP = "budget_stop"  # cancelled to bring the day's spend back under its cap
    MALFORMED_ANSWERS = "malformed_answers"  # the provider kept answering what we cannot read
    TOO_LONG_IN_FLIGHT = "too_long_in_flight"  # past the provider's documented task lifetime

    @property
    def retryable(self) -> bool:
        return self in (ErrorKind.RATE_LIMITED, ErrorKind.TRANSIENT)


class ProviderError(Exception):
    """A provider call that did not give what we asked for, classified so callers can act on it.

    `outcome_unknown` is true when the request may have reached the provider and created a task
    (a timeout or dropped connection after sending, a 5xx on create): such a submission must not be
    retried blindly. The message never contains request headers, so it never carries an API key.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        provider: str,
        http_status: int | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        self.kind = kind
        self.message = message
        self.provider = provider
        self.http_status = http_status
        self.code = code
        self.retry_after_s = retry_after_s
        self.outcome_unknown = outcome_unknown
        self.sent_at: float | None = None  # when the failing create call was sent
        status = f" HTTP {http_status}" if http_status is not None else ""
        # Said once: a code that only repeats the HTTP status ("HTTP 400 400") is left out.
        code_part = f" {code}" if code and code != str(http_status) else ""
        super().__init__(f"{provider}{status}{code_part} [{kind}]: {message}")

    @property
    def retryable(self) -> bool:
        return self.kind.retryable


@dataclass(frozen=True)
class TaskError:
    kind: ErrorKind
    code: str | None
    message: str


@dataclass(frozen=True)
class TaskState:
    """A task as last reported by its provider, normalised (strings parsed, statuses mapped)."""

    task_id: str | None
    status: TaskStatus
    video_url: str | None = None
    video_bytes: bytes | None = field(default=None, repr=False)  # Segmind returns the MP4 inline
    video_url_ttl_s: int | None = None
    last_frame_url: str | None = None  # the video's last frame, where it was asked for
    seed_used: int | None = None
    tokens: int | None = None  # billed tokens, where the provider reports them
    credits: int | None = None  # billed credits, where the provider reports them (AI/ML API)
    usage_anomaly: str | None = None  # a usage the provider reported that could not be read
    duration_s: float | None = None
    fps: int | None = None
    resolution: str | None = None
    ratio: str | None = None
    error: TaskError | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Violation:
    """One reason a request cannot be sent, worded for the person who wrote the catalog row."""

    field: str
    message: str
    rule: str = ""  # which documented rule, e.g. "format", "bytes", "ratio", "duration"

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class ImageInfo:
    """What the image header says; enough to validate without decoding pixels."""

    format: str | None  # Pillow's format name (JPEG, PNG, ...)
    width: int  # as displayed, after any EXIF rotation
    height: int
    bytes: int
    frames: int = 1
    mode: str = "RGB"  # Pillow's colour mode: "RGB", "CMYK", "I;16", ...
    truncated: bool = False  # only known when the whole file was read (bytes given)


@dataclass(frozen=True)
class CostEstimate:
    usd: float
    tokens: int | None  # None where billing is per generation
    basis: str  # how it was computed, for metadata and the ledger
    anomaly: str | None = None  # a reported usage that was not trusted, and why
