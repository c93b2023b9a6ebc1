"""From catalog rows to normalised, validated requests with stable ids.

A request id is a digest of the image bytes and of every parameter that changes the output, so the
same row read twice, or twice in one catalog, is the same request: it is submitted (and paid) once.
Invalid rows are kept with every reason, never dropped.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from seedance_pipeline.catalog.images import ImageReader
from seedance_pipeline.catalog.reading import batch_name, is_empty
from seedance_pipeline.providers import (
    ErrorKind,
    GenerationRequest,
    ImageInfo,
    adapter_for,
    provider_names,
)
from seedance_pipeline.providers.parsing import clean_text, has_control_characters
from seedance_pipeline.settings import CatalogDefaults
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.state.store import RequestRecord

COLUMNS = (
    "image",
    "prompt",
    "image_id",
    "batch",
    "provider",
    "model",
    "last_image",
    "resolution",
    "aspect_ratio",
    "duration",
    "seed",
    "camera_fixed",
    "generate_audio",
    "service_tier",
    "watermark",
    "return_last_frame",
    "draft",
    "from_draft",
)
# Fields of GenerationRequest that change the video, and so the request id.
OUTPUT_FIELDS = (
    "provider",
    "model",
    "prompt",
    "resolution",
    "aspect_ratio",
    "duration",
    "seed",
    "camera_fixed",
    "generate_audio",
    "service_tier",
    "watermark",
    "fps",
    "execution_expires_after",
)
BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass
class CatalogPlan:
    # Valid (pending) and rejected, one per distinct request; empty when the catalog was planned a
    # chunk at a time (`CatalogPlanner`), whose records went to the store chunk by chunk.
    records: list[RequestRecord]
    rows: int
    duplicates: int
    warnings: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)  # distinct requests per status
    batch_set: set[str] = field(default_factory=set)

    @property
    def batches(self) -> list[str]:
        return sorted(self.batch_set)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def count(self, status: str) -> int:
        return self.statuses[status]

    @property
    def valid(self) -> int:
        return self.count(RequestStatus.PENDING)

    @property
    def rejected(self) -> int:
        return self.count(RequestStatus.REJECTED)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("not a whole number")
    number = float(str(value).strip())
    if not number.is_integer():
        raise ValueError("not a whole number")
    return int(number)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in BOOL_WORDS:
        raise ValueError("use true or false")
    return BOOL_WORDS[word]


PARSERS: dict[str, Callable[[Any], Any]] = {
    "duration": _integer,
    "seed": _integer,
    "camera_fixed": _boolean,
    "generate_audio": _boolean,
    "watermark": _boolean,
    "return_last_frame": _boolean,
    "draft": _boolean,
}


def request_id_for(
    request: GenerationRequest,
    image_sha256: str | None,
    last_sha256: str | None,
    problems: Sequence[str] = (),
) -> str:
    """Digest of the image bytes and every output-changing parameter (not of paths, ids or batch).
    A rejected row's problems are part of it, so it never collapses into a valid row whose values
    its unparseable ones defaulted to."""
    identity: dict[str, Any] = {name: getattr(request, name) for name in OUTPUT_FIELDS}
    for name in ("return_last_frame", "draft", "from_draft"):
        if getattr(request, name) is not None:  # only when set: existing rows keep their ids
            identity[name] = getattr(request, name)
    identity |= {
        "image": image_sha256 or request.image,
        "last_image": last_sha256 or request.last_image,
    }
    if problems:
        identity["problems"] = list(problems)
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[
        :32
    ]


# Control characters a prompt may hold (line breaks, tabs); every other text field holds none.
PROMPT_WHITESPACE = "\t\n\r"


def control_character_problems(values: dict[str, Any]) -> list[str]:
    """Text cells holding NUL or other control characters, each refused with its column, and the
    cell replaced by a visible escape (`\\x00`) so the rejected row stores alike on SQLite and
    PostgreSQL (which refuses NUL in text)."""
    problems = []
    for column, value in values.items():
        allow = PROMPT_WHITESPACE if column == "prompt" else ""
        if isinstance(value, str) and has_control_characters(value, allow):
            values[column] = clean_text(value, limit=10_000)
            problems.append(f"{column}: holds a NUL or control character ({values[column][:80]!r})")
    return problems


def plan_row(
    index: int,
    row: Mapping[Any, Any],
    defaults: CatalogDefaults,
    images: ImageReader,
    column_problems: Sequence[str] = (),
) -> RequestRecord:
    """One catalog row as a request record: pending when valid, rejected with every reason otherwise."""
    problems: list[str] = list(column_problems)
    values: dict[str, Any] = {}
    for column in COLUMNS:
        raw = row.get(column)
        if is_empty(raw):
            values[column] = getattr(defaults, column, None)
            continue
        if isinstance(raw, bytes):  # Parquet byte strings
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{column}: not valid UTF-8 text")
                values[column] = None
                continue
        parser = PARSERS.get(column)
        if parser is None:
            values[column] = str(raw).strip() if column != "prompt" else str(raw)
            continue
        try:
            values[column] = parser(raw)
        except ValueError as exc:
            problems.append(f"{column}: {clean_text(repr(raw), 200)} is not valid ({exc})")
            values[column] = None
    problems += control_character_problems(values)
    provider = values["provider"]
    batch = batch_name(values["batch"], defaults.batch)
    image_id = values["image_id"] or (
        Path(str(values["image"])).stem if values["image"] else f"row-{index + 1}"
    )
    if provider not in provider_names():
        problems.append(f"provider: {provider!r} is unknown (use {', '.join(provider_names())})")
        adapter = None
    else:
        adapter = adapter_for(provider)
    model = values["model"] or (adapter.spec.default_model if adapter else "")

    infos: dict[str, ImageInfo] = {}
    digests: dict[str, str | None] = {"image": None, "last_image": None}
    refs: dict[str, str | None] = {"image": None, "last_image": None}
    for column in ("image", "last_image"):
        ref = values[column]
        if ref is None:
            if column == "image":
                problems.append("image: no image given")
            continue
        read = images.read(ref)
        if isinstance(read, str):
            problems.append(f"{column}: {read}")
            refs[column] = images.resolve(ref)
            continue
        refs[column], digests[column], info = read
        infos[refs[column] or ""] = info

    request = GenerationRequest(
        provider=provider or "",
        model=model,
        image=refs["image"] or "",
        prompt=values["prompt"] or "",
        last_image=refs["last_image"],
        resolution=values["resolution"],
        aspect_ratio=values["aspect_ratio"],
        duration=values["duration"],
        seed=values["seed"],
        camera_fixed=values["camera_fixed"],
        generate_audio=values["generate_audio"],
        service_tier=values["service_tier"],
        watermark=values["watermark"],
        return_last_frame=values["return_last_frame"],
        draft=values["draft"],
        from_draft=values["from_draft"],
    )
    spec = adapter.spec.models.get(model) if adapter else None
    if request.draft and request.resolution is None and spec and spec.draft_resolution:
        request = replace(request, resolution=spec.draft_resolution)  # the one a draft is made at
    first_info = infos.get(request.image)
    estimate = 0.0
    if adapter is not None:
        image_failed = any(p.startswith(("image:", "last_image:")) for p in problems)
        for violation in adapter.validate(request, infos):
            if image_failed and violation.field in ("image", "last_image"):
                continue  # already said why the image could not be read
            problems.append(str(violation))
        if not problems:
            size = (first_info.width, first_info.height) if first_info else None
            estimate = adapter.estimate_cost(request, size).usd

    return RequestRecord(
        request_id=request_id_for(request, digests["image"], digests["last_image"], problems),
        batch=batch,
        catalog_row=index + 1,
        image_id=str(image_id),
        provider=request.provider,
        model=request.model,
        request=dict(
            vars(request)
        ),  # its fields are scalars: `asdict`'s deep copy was a quarter of a row
        status=RequestStatus.REJECTED if problems else RequestStatus.PENDING,
        image_sha256=digests["image"],
        image_width=first_info.width if first_info else None,
        image_height=first_info.height if first_info else None,
        error_kind=ErrorKind.INVALID_REQUEST if problems else None,
        error_message="; ".join(problems) if problems else None,
        cost_usd_estimated=estimate,
        cost_usd=0.0 if problems else None,
    )


def plan_catalog(
    frame: pd.DataFrame,
    defaults: CatalogDefaults,
    base_dir: Path | None,
    image_timeout_s: float = 30.0,
    image_roots: Sequence[str] | None = None,
) -> CatalogPlan:
    """Every row planned, records kept; identical requests collapse to the first row that asked
    for them. A whole table at once: `CatalogPlanner` plans a streamed catalog in chunks."""
    planner = CatalogPlanner(list(frame.columns), defaults, base_dir, image_timeout_s, image_roots)
    planner.plan.records = planner.add(frame)
    return planner.plan


class CatalogPlanner:
    """Plans a catalog a chunk of rows at a time: each chunk's new distinct requests are returned
    (to be recorded) and only their ids are kept, so memory does not grow with the records.

    An unknown column that looks like a misspelt known one which is absent (`promt`) rejects every
    row: sending them without it would pay for videos nobody asked for."""

    def __init__(
        self,
        columns: Sequence[str],
        defaults: CatalogDefaults,
        base_dir: Path | None,
        image_timeout_s: float = 30.0,
        image_roots: Sequence[str] | None = None,
    ) -> None:
        self.defaults = defaults
        self.plan = CatalogPlan([], rows=0, duplicates=0)
        self._column_problems: list[str] = []
        for column in columns:
            if column not in COLUMNS:
                hint = difflib.get_close_matches(column, COLUMNS, n=1)
                if hint and hint[0] not in columns:
                    self._column_problems.append(
                        f"column {column!r} looks like a misspelling of {hint[0]!r}; rename it"
                    )
                else:
                    self.plan.warnings.append(f"column {column!r} is not used")
        self._images = ImageReader(base_dir, image_timeout_s, roots=image_roots)
        self._seen: set[bytes] = set()  # 16-byte ids: a million of them in under 100 MB

    def add(self, frame: pd.DataFrame) -> list[RequestRecord]:
        """The chunk's rows planned (numbered after the chunks before); returns the requests not
        seen in an earlier row."""
        plan, fresh = self.plan, []
        for row in frame.to_dict("records"):
            record = plan_row(plan.rows, row, self.defaults, self._images, self._column_problems)
            plan.rows += 1
            key = bytes.fromhex(record.request_id)
            if key in self._seen:
                plan.duplicates += 1
                continue
            self._seen.add(key)
            plan.statuses[record.status] += 1
            plan.batch_set.add(record.batch)
            fresh.append(record)
        return fresh
