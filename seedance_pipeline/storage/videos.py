"""Keeping the videos: copy before the provider's URL expires, checksum, and measure with PyAV.

The download client carries no credentials: video hosts are not the provider's API host, and the
key must never reach them.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import fsspec
import httpx
from PIL import Image, UnidentifiedImageError

from seedance_pipeline.storage import is_local, local_path, replacing, write_bytes_atomic

MAX_VIDEO_BYTES = 2 * 2**30
MAX_FRAME_BYTES = 64 * 2**20


@dataclass(frozen=True)
class KeptVideo:
    uri: str
    sha256: str
    bytes: int
    width: int
    height: int
    fps: float
    duration_s: float


class VideoLost(Exception):
    """The provider's URL no longer serves the video (expired or gone)."""


def measure(path: str | Path) -> tuple[int, int, float, float]:
    """Width, height, fps and duration of a video file, as PyAV reads them from the container."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 0)
        if container.duration is not None:
            duration = container.duration / av.time_base
        elif stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = (stream.frames or 0) / fps if fps else 0.0
        return stream.width, stream.height, fps, round(duration, 3)


def _store(local: Path, destination: str) -> str:
    """Move a finished local file to its destination (a path or any fsspec URL) atomically: a
    rename on one filesystem; on an object store the object appears only once its upload is whole."""
    if is_local(destination):
        target = local_path(destination)
        with replacing(target) as temporary:
            shutil.move(local, temporary)  # a rename, or a copy when /tmp is another filesystem
        return str(target)
    fs, path = fsspec.core.url_to_fs(destination)
    fs.put_file(str(local), path)
    local.unlink(missing_ok=True)
    return destination


def keep_bytes(data: bytes, destination: str) -> KeptVideo:
    with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as tmp:
        tmp.write(data)
    return _finish(Path(tmp.name), hashlib.sha256(data).hexdigest(), len(data), destination)


async def download(http: httpx.AsyncClient, url: str, destination: str) -> KeptVideo:
    """Stream `url` to a temporary file, hashing as it goes, then measure and store it."""
    digest = hashlib.sha256()
    size = 0
    fd, name = tempfile.mkstemp(suffix=".mp4")
    local = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            async with http.stream("GET", url) as response:
                if response.status_code in (403, 404, 410):
                    raise VideoLost(
                        f"the video URL answered HTTP {response.status_code} (expired or gone)"
                    )
                response.raise_for_status()
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_VIDEO_BYTES:
                        raise VideoLost("the video is larger than 2 GiB")
                    digest.update(chunk)
                    out.write(chunk)
        return _finish(local, digest.hexdigest(), size, destination)
    finally:
        local.unlink(missing_ok=True)


def _finish(local: Path, sha256: str, size: int, destination: str) -> KeptVideo:
    try:
        width, height, fps, duration = measure(local)
    except (av.error.FFmpegError, IndexError) as exc:
        local.unlink(missing_ok=True)
        raise VideoLost(
            f"the downloaded file is not a readable video ({type(exc).__name__})"
        ) from None
    uri = _store(local, destination)
    return KeptVideo(uri, sha256, size, width, height, fps, duration)


async def download_frame(http: httpx.AsyncClient, url: str, destination: str) -> str:
    """Keep a still image the provider made (a video's last frame, asked for with
    `return_last_frame`): checked to be a readable image, written whole or not at all."""
    response = await http.get(url)
    if response.status_code in (403, 404, 410):
        raise VideoLost(f"the frame URL answered HTTP {response.status_code} (expired or gone)")
    response.raise_for_status()
    data = response.content
    if len(data) > MAX_FRAME_BYTES:
        raise VideoLost("the frame is larger than 64 MiB")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise VideoLost(f"the frame is not a readable image ({type(exc).__name__})") from None
    return write_bytes_atomic(destination, data)


def file_sha256(uri: str) -> str | None:
    """Checksum of a stored copy, or None when it is missing (for the ledger's asset check)."""
    try:
        with fsspec.open(uri, "rb") as f:
            digest = hashlib.sha256()
            for chunk in iter(lambda: f.read(2**20), b""):
                digest.update(chunk)
            return digest.hexdigest()
    except FileNotFoundError:
        return None
