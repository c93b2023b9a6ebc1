"""Fetching a catalog's images for their digest and header, local or over http(s).

Only the bytes' sha256 and the header (format, size) are kept: the digest makes request ids depend
on what the image is, not where it lives, and the header is what validation and cost need.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from seedance_pipeline.providers import ImageInfo
from seedance_pipeline.providers.images import ImageUnreadable, inspect_image, is_url
from seedance_pipeline.storage.videos import is_local_host

MAX_IMAGE_DOWNLOAD = 31 * 2**20
MAX_IMAGE_FILE = MAX_IMAGE_DOWNLOAD  # a local file is sized before it is read


class ImageReader:
    """Reads image bytes once per reference (catalogs reuse images), local or over http(s).

    Image paths are the catalog author's to choose: relative to the catalog's folder, absolute,
    `../` and symlinks all work, as whoever writes the catalog can read those files anyway. Where
    catalogs come from less trusted hands, `roots` (`SEEDANCE_IMAGE_ROOTS`) confines local images
    to those folders, checked after symlinks are resolved."""

    def __init__(
        self, base_dir: Path | None, timeout_s: float = 30.0, roots: Sequence[str] | None = None
    ) -> None:
        self.base_dir = base_dir
        self.timeout_s = timeout_s
        self.roots = [Path(root).resolve() for root in roots] if roots else None
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
                if self.roots is not None and not any(
                    path.resolve().is_relative_to(root) for root in self.roots
                ):
                    return f"{ref} is outside the image folders allowed by SEEDANCE_IMAGE_ROOTS"
                if not path.is_file():
                    return f"file not found: {ref}"
                size = path.stat().st_size
                if size > MAX_IMAGE_FILE:  # before reading: a 3 GiB file is never loaded
                    return f"{ref} is {size / 2**20:.0f} MiB, over the {MAX_IMAGE_FILE // 2**20} MiB limit"
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
        except ValueError as exc:  # a path Python cannot pass to the OS (a NUL byte)
            return f"could not read {ref!r}: {exc}"

    def _download(self, url: str) -> bytes:
        """The image's bytes, following at most 5 redirects, none of them to a scheme other than
        http(s) nor from a public host to a local one (a blind GET into the internal network)."""
        public = not is_local_host(urlsplit(url).hostname or "")
        for _ in range(6):
            with httpx.stream(
                "GET", url, timeout=self.timeout_s, follow_redirects=False
            ) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    host = urlsplit(url).hostname or ""
                    if not is_url(url) or (public and is_local_host(host)):
                        raise ImageUnreadable(f"refused a redirect to {url[:80]!r}")
                    continue
                return self._body(url, response)
        raise ImageUnreadable(f"{url} redirected more than 5 times")

    def _body(self, url: str, response: httpx.Response) -> bytes:
        """At most MAX_IMAGE_DOWNLOAD bytes within twice the timeout in all (a body that drips a
        byte at a time never trips a per-read timeout)."""
        if response.status_code != 200:
            raise ImageUnreadable(f"could not download {url}: HTTP {response.status_code}")
        deadline = time.monotonic() + 2 * self.timeout_s
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_IMAGE_DOWNLOAD:
                raise ImageUnreadable(f"{url} is larger than {MAX_IMAGE_DOWNLOAD // 2**20} MiB")
            if time.monotonic() > deadline:
                raise ImageUnreadable(
                    f"could not download {url}: not whole within {2 * self.timeout_s:g} s"
                )
            chunks.append(chunk)
        return b"".join(chunks)
