"""Reading the catalog table: a malformed catalog stops the whole run with one message that says
what to fix; the batches and the digest are known without reading an image."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from seedance_pipeline.catalog.reading import (
    CatalogError,
    batch_names,
    catalog_digest,
    read_catalog,
)


@pytest.mark.parametrize(
    "name,content,words",
    [
        ("c.csv", "picture,prompt\na.png,p\n", "required column 'image' is missing"),
        ("c.xlsx", "whatever", "unknown format '.xlsx'"),
        ("c.csv", None, "file not found"),
        ("c.parquet", "not parquet at all", "cannot be read as .parquet"),
    ],
)
def test_a_malformed_catalog_stops_with_one_clear_message(
    tmp_path: Path, name: str, content: str | None, words: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(CatalogError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_catalog(str(path))


def test_non_utf8_catalogs_are_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("image,prompt\na.png,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(CatalogError, match=r"not UTF-8.*save it as UTF-8"):
        read_catalog(str(path))


def test_batch_names_are_the_path_safe_partitions_the_rows_will_land_in() -> None:
    frame = pd.DataFrame(
        {"image": ["a.png"] * 4, "batch": ["Summer 2026/shots!", None, " ", b"city"]}
    )
    assert batch_names(frame, "inbox") == ["Summer_2026_shots", "city", "inbox"]
    assert batch_names(frame.drop(columns="batch"), "inbox") == ["inbox"]


def test_the_catalog_digest_changes_with_the_bytes_and_only_with_them(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("image,prompt\na.png,waves\n")
    second.write_text("image,prompt\na.png,waves\n")
    assert catalog_digest(str(first)) == catalog_digest(str(second))
    second.write_text("image,prompt\na.png,waves!\n")
    assert catalog_digest(str(first)) != catalog_digest(str(second))
