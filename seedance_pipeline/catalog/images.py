"""Fetching a catalog's images for their digest and header, local or over http(s).

Only the bytes' sha256 and the header (format, size) are kept: the digest makes request ids depend
on what the image is, not where it lives, and the header is what validation and cost need.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from seedance_pipeline.providers import ImageInfo
from seedance_pipeline.providers.images import ImageUnreadable, inspect_image, is_url

MAX_IMAGE_DOWNLOAD = 31 * 2**20


class ImageReader:
    """Reads image bytes once per reference (catalogs reuse images), local or over http(s)."""

    def __init__(self, base_dir: Path | None, timeout_s: float = 30.0) -> None:
        self.base_dir = base_dir
        self.timeout_s = timeout_s
        self._cache: dict[str, tuple[str, str, ImageInfo] | str] = {}
        self._resolved: dict[str, str] = {}  # `Path.resolve` stats every part: once per reference

    def resolve(self, ref: str) -> str:
        if ref not in self._resolved:
            self._resolved[ref] = self._resolve(ref)
        return self._resolved[ref]

    def _resolve(self, ref: str) -> str:
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
