"""Reading the catalog table: a CSV or Parquet file at a local path or any fsspec URL.

Only what can be learnt without reading an image lives here (the table, its digest, the batches it
names), so the catalog sensor can look at a catalog cheaply on every tick.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

_BATCH_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class CatalogError(ValueError):
    """The catalog as a whole cannot be read; the message says what to fix."""


# Rows per chunk when a catalog is streamed: planning memory stays flat however long the catalog.
CHUNK_ROWS = 50_000
# The cells pandas reads as empty by default (`read_csv(keep_default_na=True)`), read so here too.
NA_STRINGS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
              "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]  # fmt: skip


def read_catalog(url: str) -> pd.DataFrame:
    """A CSV or Parquet table from a local path or any fsspec URL, all columns as text/objects
    (a whole catalog at once: small catalogs and tests; planning streams `iter_catalog`)."""
    frames = list(iter_catalog(url))
    filled = [frame for frame in frames if len(frame)] or frames[:1]
    return pd.concat(filled, ignore_index=True) if len(filled) > 1 else filled[0]


def iter_catalog(url: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    """The catalog `chunk_rows` rows at a time (at least one chunk, holding the columns), read by
    Arrow's streaming readers: a million-row catalog is never held whole. A catalog that cannot be
    read raises CatalogError, at the first chunk when its columns are wrong, else where it breaks."""
    suffix = Path(url.split("?", 1)[0]).suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".txt", ""):
        raise CatalogError(f"catalog {url}: unknown format {suffix!r}; use .csv or .parquet")
    try:
        with fsspec.open(url, "rb") as f:
            parquet = suffix in (".parquet", ".pq")
            batches = _parquet_batches(f, chunk_rows) if parquet else _csv_batches(f, chunk_rows)
            first = True
            for batch in batches:
                if first:
                    _check_columns(url, batch.schema.names)
                for start in range(0, max(batch.num_rows, 1 if first else 0), chunk_rows):
                    frame = batch.slice(start, chunk_rows).to_pandas()
                    frame.columns = [str(c).strip() for c in frame.columns]
                    yield frame
                first = False
    except FileNotFoundError:
        raise CatalogError(f"catalog {url}: file not found") from None
    except UnicodeDecodeError as exc:
        raise CatalogError(
            f"catalog {url}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        if isinstance(exc, CatalogError):
            raise
        if "invalid UTF8" in str(exc):
            raise CatalogError(f"catalog {url}: not UTF-8 text ({exc}); save it as UTF-8") from None
        raise CatalogError(f"catalog {url}: cannot be read as {suffix or 'CSV'} ({exc})") from None


def _check_columns(url: str, names: list[str]) -> None:
    columns = [str(c).strip() for c in names]
    if "image" not in columns:
        hint = difflib.get_close_matches("image", columns, n=1)
        also = f" (is {hint[0]!r} meant to be 'image'?)" if hint else ""
        raise CatalogError(
            f"catalog {url}: the required column 'image' is missing{also}; columns: {columns}"
        )


def _parquet_batches(f: Any, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    parquet = pq.ParquetFile(f)
    yield pa.RecordBatch.from_pylist([], schema=parquet.schema_arrow)  # the columns, even if empty
    yield from parquet.iter_batches(batch_size=chunk_rows)


def _csv_batches(f: Any, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """Every column as text, as `pd.read_csv(dtype=str)` reads it; the header is read first to name
    them (Arrow would otherwise guess each column's type from the first block)."""
    text = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
    try:
        header = next(csv.reader(text), None)
    finally:
        text.detach()  # leaves `f` open
    if not header:
        raise ValueError("no columns to parse from file")
    f.seek(0)
    reader = pacsv.open_csv(
        f,
        # Blocks of about `chunk_rows` rows of 80 bytes (4 MiB by default), at least 64 KiB.
        read_options=pacsv.ReadOptions(block_size=max(1 << 16, chunk_rows * 80)),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()),
            null_values=NA_STRINGS,
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    yield pa.RecordBatch.from_pylist([], schema=reader.schema)
    yield from reader


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


def catalog_batch_names(url: str, default: str) -> list[str]:
    """The batches a catalog file names, read a chunk at a time (what the catalog sensor asks)."""
    return sorted({name for chunk in iter_catalog(url) for name in batch_names(chunk, default)})
