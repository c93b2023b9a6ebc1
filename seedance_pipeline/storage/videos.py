"""Keeping the videos: copy before the provider's URL expires, checksum, and measure with PyAV.

The download client carries no credentials: video hosts are not the provider's API host, and the
key must never reach them.

A video URL comes from the provider's answer, so it is untrusted: only `https` is fetched (`http`
only from a local provider such as the emulator), every redirect is checked again, and no
loopback, link-local, private or reserved address is reached unless the provider's own base URL is
local (`DownloadPolicy`). A download has a total deadline and a size cap, its bytes must start as an
MP4 (`ftyp`), and PyAV opens it as MP4 whatever the bytes say (no `ffconcat` or playlist).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import av
import fsspec
import httpx
from PIL import Image, UnidentifiedImageError

from seedance_pipeline.storage import is_local, local_path, replacing, write_bytes_atomic

MAX_VIDEO_BYTES = 2 * 2**30
MAX_FRAME_BYTES = 64 * 2**20
MAX_DOWNLOAD_S = 600.0  # one download, start to end, whatever the host's pace
MAX_REDIRECTS = 5
# Downloads are written here first, under a name of their own, so that those left by a killed
# process can be found and removed (`clean_stale_downloads`).
DOWNLOADS = Path(tempfile.gettempdir()) / "seedance-downloads"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownloadPolicy:
    """Where a video may be fetched from. `local_provider`: the provider's base URL is itself on
    loopback or a private network (the emulator, tests), so its video host may be too, over http."""

    local_provider: bool = False

    @classmethod
    def for_base_url(cls, base_url: str) -> DownloadPolicy:
        return cls(local_provider=is_local_host(urlsplit(base_url).hostname or ""))


def _address_is_local(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def is_local_host(host: str) -> bool:
    """Loopback, link-local, private, reserved or unspecified (by its literal address or name)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return _address_is_local(host)
    except ValueError:
        return False


async def check_destination(url: str, policy: DownloadPolicy) -> None:
    """Raise VideoLost for a URL outside the policy: a scheme other than https (http from a local
    provider only), or a host that is or resolves to a local address when the provider is not."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    allowed = ("https", "http") if policy.local_provider else ("https",)
    if parts.scheme not in allowed or not host:
        shown = url[:80] if parts.scheme in ("http", "https") else f"{parts.scheme}://…"
        raise VideoLost(f"refused to fetch {shown!r}: only https URLs are fetched")
    if policy.local_provider:
        return
    if is_local_host(host):
        raise VideoLost(f"refused to fetch from {host!r}: a local or private address")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or 443, type=socket.SOCK_STREAM
        )
    except OSError:
        return  # the GET itself will fail and be retried
    for info in infos:
        if _address_is_local(str(info[4][0])):
            raise VideoLost(f"refused to fetch from {host!r}: it resolves to a local address")


def clean_stale_downloads(
    folders: list[Path] | None = None, older_than_s: float = 2 * MAX_DOWNLOAD_S
) -> int:
    """Remove partial downloads and temporary siblings (`.*.tmp`) left by a killed process: older
    than any live download can be, so another process's download under way is never touched."""
    cutoff = time.time() - older_than_s
    removed = 0
    for folder in [DOWNLOADS, *(folders or [])]:
        if not folder.is_dir():
            continue
        # Temporary siblings sit beside what they replace: `<batch>/.<name>.<uuid>.tmp`.
        patterns = ["*"] if folder == DOWNLOADS else [".*.tmp", "*/.*.tmp"]
        for path in (p for pattern in patterns for p in folder.glob(pattern)):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
    if removed:
        log.warning("removed %d partial downloads left by a stopped process", removed)
    return removed


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
    """The provider's URL no longer serves the video (expired or gone), or serves something we
    refuse to keep (not an MP4, too large, a URL outside the download policy): final."""


class DownloadFailed(Exception):
    """A download that did not finish (its deadline passed, the connection dropped): worth another
    attempt, a bounded number of times."""


def measure(path: str | Path) -> tuple[int, int, float, float]:
    """Width, height, fps and duration of a video file, as PyAV reads them from the container."""
    with av.open(str(path), format="mp4") as container:  # never a format the bytes choose
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
    if data[4:8] != b"ftyp":
        raise VideoLost("the answer is not an MP4 (no ftyp box)")
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False, dir=DOWNLOADS) as tmp:
        tmp.write(data)
    return _finish(Path(tmp.name), hashlib.sha256(data).hexdigest(), len(data), destination)


async def download(
    http: httpx.AsyncClient,
    url: str,
    destination: str,
    policy: DownloadPolicy | None = None,
    deadline_s: float = MAX_DOWNLOAD_S,
    max_bytes: int | None = None,
) -> KeptVideo:
    """Stream `url` to a temporary file, hashing as it goes, then measure and store it; within
    `deadline_s` in all (DownloadFailed past it) and `max_bytes` (VideoLost past it)."""
    policy = policy or DownloadPolicy()
    max_bytes = MAX_VIDEO_BYTES if max_bytes is None else max_bytes
    digest = hashlib.sha256()
    size = 0
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(suffix=".mp4", dir=DOWNLOADS)
    local = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            async with asyncio.timeout(deadline_s):
                async with _GetStream(http, url, policy) as response:
                    head = b""
                    async for chunk in response.aiter_bytes():
                        if len(head) < 8:  # an endless text body is refused at its first bytes
                            head += chunk[: 8 - len(head)]
                            if len(head) == 8 and head[4:8] != b"ftyp":
                                raise VideoLost("the video URL did not answer an MP4 (no ftyp box)")
                        size += len(chunk)
                        if size > max_bytes:
                            raise VideoLost(f"the video is larger than {max_bytes} bytes")
                        digest.update(chunk)
                        out.write(chunk)
        return _finish(local, digest.hexdigest(), size, destination)
    except TimeoutError:
        raise DownloadFailed(f"the download did not finish within {deadline_s:.0f} s") from None
    except httpx.HTTPError as exc:
        raise DownloadFailed(f"the download failed ({type(exc).__name__})") from None
    finally:
        local.unlink(missing_ok=True)


class _GetStream:
    """`GET url` streamed, following at most MAX_REDIRECTS redirects, each checked against the
    policy; 403/404/410 mean the video is gone (VideoLost)."""

    def __init__(self, http: httpx.AsyncClient, url: str, policy: DownloadPolicy) -> None:
        self.http, self.url, self.policy = http, url, policy
        self.response: httpx.Response | None = None

    async def __aenter__(self) -> httpx.Response:
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            await check_destination(url, self.policy)
            request = self.http.build_request("GET", url)
            response = await self.http.send(request, stream=True, follow_redirects=False)
            if response.is_redirect and "location" in response.headers:
                await response.aclose()
                url = urljoin(url, response.headers["location"])
                continue
            if response.status_code in (403, 404, 410) or response.is_error:
                await response.aclose()
                if response.status_code in (403, 404, 410):
                    raise VideoLost(
                        f"the video URL answered HTTP {response.status_code} (expired or gone)"
                    )
                response.raise_for_status()
            self.response = response
            return response
        raise VideoLost(f"the video URL redirected more than {MAX_REDIRECTS} times")

    async def __aexit__(self, *exc: object) -> None:
        if self.response is not None:
            await self.response.aclose()


def _finish(local: Path, sha256: str, size: int, destination: str) -> KeptVideo:
    try:
        width, height, fps, duration = measure(local)
    except (av.error.FFmpegError, IndexError, ValueError, OSError) as exc:
        local.unlink(missing_ok=True)
        raise VideoLost(
            f"the downloaded file is not a readable video ({type(exc).__name__})"
        ) from None
    uri = _store(local, destination)
    return KeptVideo(uri, sha256, size, width, height, fps, duration)


async def download_frame(
    http: httpx.AsyncClient,
    url: str,
    destination: str,
    policy: DownloadPolicy | None = None,
    deadline_s: float = MAX_DOWNLOAD_S,
) -> str:
    """Keep a still image the provider made (a video's last frame, asked for with
    `return_last_frame`): checked to be a readable image, written whole or not at all."""
    chunks, size = [], 0
    try:
        async with (
            asyncio.timeout(deadline_s),
            _GetStream(http, url, policy or DownloadPolicy()) as response,
        ):
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_FRAME_BYTES:
                    raise VideoLost("the frame is larger than 64 MiB")
                chunks.append(chunk)
    except TimeoutError:
        raise DownloadFailed(f"the frame did not arrive within {deadline_s:.0f} s") from None
    data = b"".join(chunks)
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
