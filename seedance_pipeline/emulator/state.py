"""The emulator's memory: tasks, their clock, the audit of every task created, and injected faults.

A task's status is derived from wall-clock time when it is read (queued for `queued_s`, running for
`running_s`, then its outcome), so no background thread advances anything and a test can reason
about exactly when a task finishes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import random
import secrets
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from seedance_pipeline.emulator.video import BAD_VIDEOS, render_mp4
from seedance_pipeline.providers.facts import load_facts
from seedance_pipeline.providers.models import TaskStatus

_VIDEO_CACHE_SIZE = 32


@dataclass
class Faults:
    """What can go wrong at one provider. Rates are probabilities per call or per task, drawn from
    the emulator's seeded random generator, so a faulty run is reproducible."""

    rate_limit_burst: int = 0  # the next N API calls answer 429
    retry_after: str | None = (
        None  # Retry-After sent with those 429s (None: no header, as documented)
    )
    rate_limit_rate: float = 0.0  # share of API calls answered 429 after the burst
    server_error_rate: float = 0.0  # share of API calls answered 5xx (no task is created)
    slow_s: float = 0.0  # delay before every API call is handled
    answer_delay_s: float = 0.0  # delay after a call did its work, before the answer
    drop_rate: float = (
        0.0  # share of API calls whose connection drops (a submit still creates the task)
    )
    malformed_rate: float = (
        0.0  # share of 2xx answers with a broken body (a submit still creates the task)
    )
    fail_rate: float = 0.0  # share of tasks that end failed
    expire_rate: float = 0.0  # share of tasks that end expired
    reject_rate: float = 0.0  # share of submissions refused for their content (input review)
    output_reject_rate: float = 0.0  # share of tasks that fail on output content review
    insufficient_credit: bool = False  # every submission refused for lack of credit
    # every other ModelArk task answers `duration` and usage counts as strings: some third-party
    # reports say so, the official client types them as integers, so it is a fault, not a default
    string_numbers: bool = False
    apply_to: tuple[str, ...] = ("submit", "poll")  # which calls the per-call faults hit
    # succeeded tasks deliver a bad video of this kind (video.BAD_VIDEOS: black, frozen,
    # wrong_duration, unrelated), this share of them: what QC must catch
    bad_video: str | None = None
    bad_video_rate: float = 1.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Faults:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}; known: {sorted(names)}")
        values = dict(raw)
        if "apply_to" in values:
            values["apply_to"] = tuple(values["apply_to"])
        if values.get("bad_video") not in (None, *BAD_VIDEOS):
            raise ValueError(
                f"unknown bad_video {values['bad_video']!r}; known: {list(BAD_VIDEOS)}"
            )
        return cls(**values)


@dataclass
class EmulatorConfig:
    queued_s: float = 0.2  # how long a new task stays queued
    running_s: float = 0.8  # then how long it runs
    max_in_flight: dict[str, int] = field(
        default_factory=dict
    )  # per provider, per key; default facts.toml
    video_url_ttl_s: dict[str, float] = field(
        default_factory=dict
    )  # per provider; default facts.toml
    expiry_scale: float = 1.0  # execution_expires_after is multiplied by this (tests shrink it)
    seed: int = 0  # of the random generator behind fault rates

    def in_flight_limit(self, provider: str) -> int:
        return self.max_in_flight.get(provider, load_facts().providers[provider].max_in_flight)

    def url_ttl(self, provider: str) -> float:
        return self.video_url_ttl_s.get(provider, load_facts().providers[provider].video_url_ttl_s)


@dataclass(frozen=True)
class AuditRecord:
    """One task the emulator created: what a test compares the pipeline's ledger with."""

    provider: str
    model: str
    task_id: str
    key_fingerprint: str  # sha256 prefix of the API key: proves which key, never shows it
    body_sha256: str
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class VideoSpec:
    """What the emulator will render when a task's video is downloaded."""

    image: bytes | None  # the first frame image, None when it was a URL the emulator cannot fetch
    width: int
    height: int
    duration_s: int
    fps: int = 24
    last_image: bytes | None = None  # the clip fades into it and ends on it
    audio: bool = False  # a (silent) audio track, where audio was asked for
    defect: str | None = None  # a bad video of this kind (Faults.bad_video)


@dataclass
class EmulatedTask:
    id: str
    provider: str
    model: str
    key_fingerprint: str
    created_at: float
    runs_at: float
    finishes_at: float
    outcome: TaskStatus  # what the task becomes once it finishes
    video: VideoSpec
    params: dict[str, Any]  # resolution, ratio, duration, seed... as the provider reports them
    failure: tuple[str, str] | None = None  # (code, message) for failed tasks
    cancelled_at: float | None = None
    video_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    quirky: bool = False  # alternate the documented quirks from task to task

    def status(self, now: float) -> TaskStatus:
        if self.cancelled_at is not None:
            return TaskStatus.CANCELLED
        if now < self.runs_at:
            return TaskStatus.QUEUED
        if now < self.finishes_at:
            return TaskStatus.RUNNING
        return self.outcome


def key_fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:12]


class EmulatorState:
    """Thread-safe: the HTTP handlers and the tests reading the audit run in different threads."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._lock = threading.Lock()
        self._tasks: dict[str, EmulatedTask] = {}
        self._audit: list[AuditRecord] = []
        self._faults: dict[str, Faults] = {}
        self._random = random.Random(self.config.seed)
        self._counter = 0
        self.revoked_keys: set[str] = set()
        self._url_key = secrets.token_bytes(16)
        self.calls: Counter[tuple[str, str]] = (
            Counter()
        )  # (provider, "submit" | "poll") → API calls seen
        self.last_call_at = time.time()
        self.video_downloads: list[dict[str, Any]] = []
        self.video_cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()

    # -- faults ----------------------------------------------------------------------------------

    def set_faults(self, provider: str, faults: Faults | None) -> None:
        with self._lock:
            if faults is None:
                self._faults.pop(provider, None)
            else:
                self._faults[provider] = faults

    def faults(self, provider: str) -> Faults:
        with self._lock:
            return self._faults.get(provider) or Faults()

    def draw(self, provider: str, call: str, name: str) -> bool:
        """Whether the fault `name` strikes this `call` ("submit", "poll" or "task")."""
        with self._lock:
            faults = self._faults.get(provider)
            if faults is None:
                return False
            if name == "rate_limit" and call in faults.apply_to:
                if faults.rate_limit_burst > 0:
                    faults.rate_limit_burst -= 1
                    return True
                return self._random.random() < faults.rate_limit_rate
            if call != "task" and call not in faults.apply_to:
                return False
            rate = float(getattr(faults, f"{name}_rate"))
            return rate > 0 and self._random.random() < rate

    # -- tasks -----------------------------------------------------------------------------------

    def in_flight(self, provider: str, fingerprint: str, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self._lock:
            return sum(
                1
                for t in self._tasks.values()
                if t.provider == provider
                and t.key_fingerprint == fingerprint
                and not t.status(now).terminal
            )

    def next_number(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def create_task(
        self,
        *,
        task_id: str,
        provider: str,
        model: str,
        api_key: str,
        body: bytes,
        video: VideoSpec,
        params: dict[str, Any],
        expires_after_s: float | None = None,
    ) -> EmulatedTask:
        now = time.time()
        outcome = TaskStatus.SUCCEEDED
        failure = None
        if self.draw(provider, "task", "fail"):
            outcome, failure = (
                TaskStatus.FAILED,
                ("InternalServiceError", "the generation failed, please retry"),
            )
        elif self.draw(provider, "task", "output_reject"):
            outcome, failure = (
                TaskStatus.FAILED,
                (
                    "OutputVideoSensitiveContentDetected",
                    "the output video may contain sensitive content",
                ),
            )
        elif self.draw(provider, "task", "expire"):
            outcome = TaskStatus.EXPIRED
        defect = self.faults(provider).bad_video
        if defect is not None and self.draw(provider, "task", "bad_video"):
            video = dataclasses.replace(video, defect=defect)
        runs_at = now + self.config.queued_s
        duration = self.config.queued_s + self.config.running_s
        finishes_at = now + duration
        if expires_after_s is not None and expires_after_s * self.config.expiry_scale < duration:
            outcome, finishes_at = (
                TaskStatus.EXPIRED,
                now + expires_after_s * self.config.expiry_scale,
            )
        fingerprint = key_fingerprint(api_key)
        task = EmulatedTask(
            id=task_id,
            provider=provider,
            model=model,
            key_fingerprint=fingerprint,
            created_at=now,
            runs_at=min(runs_at, finishes_at),
            finishes_at=finishes_at,
            outcome=outcome,
            video=video,
            params=params,
            failure=failure,
        )
        with self._lock:
            task.quirky = len(self._audit) % 2 == 1
            self._tasks[task_id] = task
            self._audit.append(
                AuditRecord(
                    provider=provider,
                    model=model,
                    task_id=task_id,
                    key_fingerprint=fingerprint,
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    created_at=now,
                )
            )
        return task

    def task(self, provider: str, task_id: str) -> EmulatedTask | None:
        with self._lock:
            task = self._tasks.get(task_id)
        return task if task is not None and task.provider == provider else None

    def tasks(self, provider: str) -> list[EmulatedTask]:
        with self._lock:
            return [t for t in self._tasks.values() if t.provider == provider]

    def delete_task(self, task_id: str) -> None:
        with self._lock:
            self._tasks.pop(task_id, None)

    def task_for_video(self, token: str) -> EmulatedTask | None:
        with self._lock:
            return next((t for t in self._tasks.values() if t.video_token == token), None)

    def video(self, spec: VideoSpec) -> bytes:
        """The MP4 for `spec`, rendered once and kept in a small cache (renders take ~1 s)."""
        digest, last = (
            hashlib.sha256(image).hexdigest() if image is not None else None
            for image in (spec.image, spec.last_image)
        )
        key = (digest, spec.width, spec.height, spec.duration_s, spec.fps, last, spec.audio,
               spec.defect)  # fmt: skip
        with self._lock:
            if key in self.video_cache:
                self.video_cache.move_to_end(key)
                return self.video_cache[key]
        data = render_mp4(spec.image, spec.width, spec.height, spec.duration_s, spec.fps,
                          last_image=spec.last_image, audio=spec.audio, defect=spec.defect)  # fmt: skip
        with self._lock:
            self.video_cache[key] = data
            while len(self.video_cache) > _VIDEO_CACHE_SIZE:
                self.video_cache.popitem(last=False)
        return data

    def sign_video(self, token: str, expires: float) -> str:
        return hmac.new(
            self._url_key, f"{token}:{expires:.3f}".encode(), hashlib.sha256
        ).hexdigest()[:32]

    def video_url_valid(self, token: str, expires: str, signature: str) -> bool:
        """A video URL is served while its signed expiry is in the future."""
        try:
            when = float(expires)
        except ValueError:
            return False
        expected = self.sign_video(token, when)
        return hmac.compare_digest(expected, signature) and time.time() <= when

    # -- what tests read -------------------------------------------------------------------------

    def audit(self, provider: str | None = None) -> list[AuditRecord]:
        with self._lock:
            return [r for r in self._audit if provider is None or r.provider == provider]

    def record_video_download(self, token: str, headers: dict[str, str]) -> None:
        sent_credentials = any(h in headers for h in ("authorization", "x-api-key"))
        with self._lock:
            self.video_downloads.append({"token": token, "sent_credentials": sent_credentials})
