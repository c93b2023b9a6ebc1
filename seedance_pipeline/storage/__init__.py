"""Where durable files go: a local path or any fsspec URL (`s3://bucket/prefix`, `gs://…`, …).

A write must never leave a half-written file where a reader looks. Locally that takes a temporary
sibling renamed over the target (a rename is atomic on one filesystem). An object store has no
rename, but it never needs one: an object appears only once its single PUT (or the completion of its
multipart upload) succeeds, so the whole body is handed over in one call.

Credentials are never part of a URL: fsspec's S3 implementation (s3fs, the `[s3]` extra) reads them
from the standard `AWS_*` environment variables or fsspec's own config, so they stay out of Dagster's
run config, the ledger, logs and error messages.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import fsspec

# Environment variables whose values must never be written anywhere (the ledger's no_secrets check).
STORAGE_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def is_local(url: str) -> bool:
    """A plain path or a `file://` URL."""
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def absolute(url: str) -> str:
    """Local paths made absolute (runs and sensors may start in other folders); URLs as given.
    Without a trailing slash, so `f"{url}/{name}"` joins."""
    if is_local(url):
        return str(local_path(url).resolve())
    return url.rstrip("/")


def sibling(url: str, name: str) -> str:
    """`name` next to `url`: `s3://b/p/ledger` → `s3://b/p/<name>`; `/data/ledger` → `/data/<name>`.

    A sibling, not a child: a hive-partitioned reader of the ledger folder would choke on anything
    else inside it."""
    url = absolute(url)
    if is_local(url):
        return str(local_path(url).parent / name)
    protocol, _, path = url.partition("://")
    parent, _, last = path.rpartition("/")
    if not parent:
        raise ValueError(
            f"{protocol}:// location at a bucket root has no folder to put {name!r} beside it; "
            f"use a prefix, e.g. {protocol}://bucket/seedance/ledger"
        )
    if last == name:
        raise ValueError(f"a location named {name!r} would be shared with {name!r} itself")
    return f"{protocol}://{parent}/{name}"


def refuse_credentials(setting: str, url: str | None) -> None:
    """Refuse a URL that carries a password (`s3://KEY:SECRET@bucket`): it would be shown in the
    Dagster UI and copied into the ledger. The message names the setting, never the URL."""
    if url and not is_local(url) and urlsplit(url).password:
        raise ValueError(
            f"{setting} carries credentials; give them through environment variables "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL) or fsspec's config instead"
        )


@contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A temporary sibling of `target` to write to: renamed over `target` when the block succeeds,
    removed when it fails. Its name starts with a dot, which dataset readers skip."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)  # atomic: readers see the old file or the new one
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomic(url: str, data: bytes) -> str:
    """Write `data` to a local path or any fsspec URL so that readers see the previous version or
    the new one, never part of it. Returns where it went (absolute for local paths)."""
    if is_local(url):
        target = local_path(url).resolve()
        with replacing(target) as temporary:
            temporary.write_bytes(data)
        return str(target)
    fs, path = fsspec.core.url_to_fs(url)
    fs.pipe_file(path, data)  # one PUT: the object appears whole or not at all
    return url


def read_bytes(url: str) -> bytes:
    with fsspec.open(url, "rb") as f:
        data: bytes = f.read()
    return data
