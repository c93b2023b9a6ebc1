"""From catalog rows to normalised, validated requests with stable ids.

A request id is a digest of the image bytes and of every parameter that changes the output, so the
same row read twice, or twice in one catalog, is the same request: it is submitted (and paid) once.
Invalid rows are kept with every reason, never dropped.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pandas as pd

from seedance_pipeline.providers import GenerationRequest, ImageInfo, adapter_for, provider_names
from seedance_pipeline.providers.images import ImageUnreadable, inspect_image, is_url
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
MAX_IMAGE_DOWNLOAD = 31 * 2**20
_BATCH_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class CatalogError(ValueError):
    """The catalog as a whole cannot be read; the message says what to fix."""


@dataclass(frozen=True)
class CatalogDefaults:
    """Values for optional columns left empty. None means the model's own documented default."""

    provider: str = "novita"
    model: str | None = None
    batch: str = "default"
    resolution: str | None = None
    aspect_ratio: str | None = None
    duration: int | None = None
    seed: int | None = None
    camera_fixed: bool | None = None
    generate_audio: bool | None = None
    service_tier: str | None = None
    watermark: bool | None = None


@dataclass
class CatalogPlan:
    records: list[RequestRecord]  # valid (pending) and rejected, one per distinct request
    rows: int
    duplicates: int
    warnings: list[str] = field(default_factory=list)

    @property
    def batches(self) -> list[str]:
        return sorted({r.batch for r in self.records})

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.status == status)


def read_catalog(url: str) -> pd.DataFrame:
    """A CSV or Parquet table from a local path or any fsspec URL, all columns as text/objects."""
    suffix = Path(url.split("?", 1)[0]).suffix.lower()
    try:
        with fsspec.open(url, "rb") as f:
            if suffix in (".parquet", ".pq"):
                frame = pd.read_parquet(f)
            elif suffix in (".csv", ".txt", ""):
                frame = pd.read_csv(f, dtype=str, keep_default_na=True, encoding="utf-8")
            else:
                raise CatalogError(
                    f"catalog {url}: unknown format {suffix!r}; use .csv or .parquet"
                )
    except FileNotFoundError:
        raise CatalogError(f"catalog {url}: file not found") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(
            f"catalog {url}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        if isinstance(exc, CatalogError):
            raise
        raise CatalogError(f"catalog {url}: cannot be read as {suffix or 'CSV'} ({exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if "image" not in frame.columns:
        hint = difflib.get_close_matches("image", frame.columns, n=1)
        also = f" (is {hint[0]!r} meant to be 'image'?)" if hint else ""
        raise CatalogError(
            f"catalog {url}: the required column 'image' is missing{also}; columns: {list(frame.columns)}"
        )
    return frame


def _empty(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


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
    identity |= {
        "image": image_sha256 or request.image,
        "last_image": last_sha256 or request.last_image,
    }
    if problems:
        identity["problems"] = list(problems)
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[
        :32
    ]


class ImageReader:
    """Reads image bytes once per reference (catalogs reuse images), local or over http(s)."""

    def __init__(self, base_dir: Path | None, timeout_s: float = 30.0) -> None:
        self.base_dir = base_dir
        self.timeout_s = timeout_s
        self._cache: dict[str, tuple[str, str, ImageInfo] | str] = {}

    def resolve(self, ref: str) -> str:
        if is_url(ref) or "://" in ref or self.base_dir is None or Path(ref).is_absolute():
            return ref
        return str((self.base_dir / ref).resolve())

    def read(self, ref: str) -> tuple[str, str, ImageInfo] | str:
        """(resolved reference, sha256, header info), or the reason it cannot be read."""
        resolved = self.resolve(ref)
        if resolved not in self._cache:
            self._cache[resolved] = self._read(resolved)
        return self._cache[resolved]

    def _read(self, ref: str) -> tuple[str, str, ImageInfo] | str:
        if "://" in ref and not is_url(ref):
            return f"scheme {ref.split('://', 1)[0]}:// is not supported (use an http(s) URL or a local path)"
        try:
            if is_url(ref):
                data = self._download(ref)
            else:
                path = Path(ref)
                if not path.is_file():
                    return f"file not found: {ref}"
                data = path.read_bytes()
            return ref, hashlib.sha256(data).hexdigest(), inspect_image(data)
        except ImageUnreadable as exc:
            return str(exc)
        except httpx.TimeoutException:
            return f"could not download {ref}: no answer within {self.timeout_s:g} s"
        except httpx.HTTPError as exc:
            return f"could not download {ref}: {type(exc).__name__}"
        except OSError as exc:
            return f"could not read {ref}: {exc.strerror or exc}"

    def _download(self, url: str) -> bytes:
        with httpx.stream("GET", url, timeout=self.timeout_s, follow_redirects=True) as response:
            if response.status_code != 200:
                raise ImageUnreadable(f"could not download {url}: HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_IMAGE_DOWNLOAD:
                    raise ImageUnreadable(f"{url} is larger than {MAX_IMAGE_DOWNLOAD // 2**20} MiB")
                chunks.append(chunk)
            return b"".join(chunks)


def _batch_name(value: str | None, default: str) -> str:
    name = _BATCH_CHARS.sub("_", value.strip()).strip("_.") if value else ""
    return name or default


def batch_names(frame: pd.DataFrame, default: str) -> list[str]:
    """The batches a catalog's rows name, as partitions will be called (cheap: no image is read)."""
    values = frame["batch"] if "batch" in frame.columns else [None] * len(frame)
    texts = (v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values)
    return sorted({_batch_name(None if _empty(v) else str(v), default) for v in texts})


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
        if _empty(raw):
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
            problems.append(f"{column}: {raw!r} is not valid ({exc})")
            values[column] = None
    provider = values["provider"]
    batch = _batch_name(values["batch"], defaults.batch)
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
    )
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
        request=asdict(request),
        status=RequestStatus.REJECTED if problems else RequestStatus.PENDING,
        image_sha256=digests["image"],
        image_width=first_info.width if first_info else None,
        image_height=first_info.height if first_info else None,
        error_kind="invalid_request" if problems else None,
        error_message="; ".join(problems) if problems else None,
        cost_usd_estimated=estimate,
        cost_usd=0.0 if problems else None,
    )


def plan_catalog(
    frame: pd.DataFrame,
    defaults: CatalogDefaults,
    base_dir: Path | None,
    image_timeout_s: float = 30.0,
) -> CatalogPlan:
    """Every row planned; identical requests collapse to the first row that asked for them.

    An unknown column that looks like a misspelt known one which is absent (`promt`) rejects every
    row: sending them without it would pay for videos nobody asked for."""
    warnings: list[str] = []
    column_problems: list[str] = []
    for column in frame.columns:
        if column not in COLUMNS:
            hint = difflib.get_close_matches(column, COLUMNS, n=1)
            if hint and hint[0] not in frame.columns:
                column_problems.append(
                    f"column {column!r} looks like a misspelling of {hint[0]!r}; rename it"
                )
            else:
                warnings.append(f"column {column!r} is not used")
    images = ImageReader(base_dir, image_timeout_s)
    records: dict[str, RequestRecord] = {}
    duplicates = 0
    for index, row in enumerate(frame.to_dict("records")):
        record = plan_row(index, row, defaults, images, column_problems)
        if record.request_id in records:
            duplicates += 1
            continue
        records[record.request_id] = record
    return CatalogPlan(
        list(records.values()), rows=len(frame), duplicates=duplicates, warnings=warnings
    )


def catalog_base_dir(url: str) -> Path | None:
    """Relative image paths are read relative to a local catalog's folder."""
    if "://" in url and not url.startswith("file://"):
        return None
    return Path(url.removeprefix("file://")).resolve().parent
