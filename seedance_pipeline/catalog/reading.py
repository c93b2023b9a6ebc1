"""Reading the catalog table: a CSV or Parquet file at a local path or any fsspec URL.

Only what can be learnt without reading an image lives here (the table, its digest, the batches it
names), so the catalog sensor can look at a catalog cheaply on every tick.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd

_BATCH_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class CatalogError(ValueError):
    """The catalog as a whole cannot be read; the message says what to fix."""


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


def catalog_digest(url: str) -> str:
    """sha256 of the catalog file's bytes: how the catalog sensor notices a change."""
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def catalog_base_dir(url: str) -> Path | None:
    """Relative image paths are read relative to a local catalog's folder."""
    if "://" in url and not url.startswith("file://"):
        return None
    return Path(url.removeprefix("file://")).resolve().parent


def is_empty(value: Any) -> bool:
    """A cell left empty: missing, NaN (how pandas reads an empty CSV cell) or only whitespace."""
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def batch_name(value: str | None, default: str) -> str:
    """A batch as its partition is called: safe in paths and URLs, the default when empty."""
    name = _BATCH_CHARS.sub("_", value.strip()).strip("_.") if value else ""
    return name or default


def batch_names(frame: pd.DataFrame, default: str) -> list[str]:
    """The batches a catalog's rows name, as partitions will be called (cheap: no image is read)."""
    values = frame["batch"] if "batch" in frame.columns else [None] * len(frame)
    texts = (v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values)
    return sorted({batch_name(None if is_empty(v) else str(v), default) for v in texts})
