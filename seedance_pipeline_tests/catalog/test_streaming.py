"""A catalog is streamed a chunk at a time: the plan and what the store records are those of the
whole table read at once, and a catalog broken half-way down records nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from seedance_pipeline.catalog.planning import plan_catalog
from seedance_pipeline.catalog.reading import CatalogError, catalog_batch_names
from seedance_pipeline.catalog.refresh import refresh_catalog
from seedance_pipeline.settings import CatalogDefaults, settings_from

REPO = Path(__file__).resolve().parents[2]


def sample_rows() -> pd.DataFrame:
    """The bundled sample catalog (valid and rejected rows, three batches) twice over, so that
    duplicates fall in other chunks than their first row, and cells pandas reads as empty."""
    frame = pd.read_csv(REPO / "data" / "catalog.csv", dtype=str, keep_default_na=False)
    for column in ("image", "last_image"):
        frame[column] = [str(REPO / "data" / v) if v else v for v in frame[column]]
    odd = frame.iloc[:2].copy()
    odd["resolution"], odd["seed"], odd["batch"] = ["NA", "null"], ["7", " "], ["Late/shots!", ""]
    return pd.concat([frame, odd, frame.iloc[::-1]], ignore_index=True)


def whole_table_plan(path: Path):  # type: ignore[no-untyped-def]
    """The plan of the table read whole, by pandas, as the catalog was read before streaming."""
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=True, encoding="utf-8")
    else:
        frame = pd.read_parquet(path)
    return plan_catalog(frame, CatalogDefaults(), path.parent)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_catalog_streamed_in_small_chunks_is_planned_and_recorded_as_read_whole(
    tmp_path: Path, state_url: str, suffix: str
) -> None:
    path = tmp_path / f"catalog{suffix}"
    rows = sample_rows()
    rows.to_csv(path, index=False) if suffix == ".csv" else rows.to_parquet(path, index=False)
    expected = whole_table_plan(path)
    settings = settings_from(
        data_dir=str(tmp_path / "data"), catalog=str(path), state_url=state_url
    )

    plan = refresh_catalog(settings, chunk_rows=4)  # the sample's 31 rows in 8 chunks

    assert (plan.rows, plan.duplicates, plan.requests) == (
        expected.rows,
        expected.duplicates,
        len(expected.records),
    )
    assert (plan.valid, plan.rejected, plan.batches, plan.warnings) == (
        expected.valid,
        expected.rejected,
        expected.batches,
        expected.warnings,
    )
    assert expected.duplicates > 15 and expected.rejected >= 3 and "Late_shots" in plan.batches

    def seen(records):  # type: ignore[no-untyped-def]
        return sorted((r.request_id, r.catalog_row, r.batch, r.image_id, r.status, r.error_message,
                       r.cost_usd_estimated, sorted(r.request.items())) for r in records)  # fmt: skip

    assert seen(settings.store().records()) == seen(expected.records)
    assert catalog_batch_names(str(path), "default") == expected.batches


def test_a_catalog_broken_half_way_down_records_nothing(tmp_path: Path) -> None:
    image = REPO / "data" / "samples" / "harbour.jpg"
    lines = ["image,prompt,provider"] + [f"{image},sea {n},novita" for n in range(2000)]
    lines.insert(1500, f"{image},a row,with,too many cells")  # in a later block of the reader
    path = tmp_path / "catalog.csv"
    path.write_text("\n".join(lines) + "\n")
    settings = settings_from(data_dir=str(tmp_path / "data"), catalog=str(path))

    with pytest.raises(CatalogError, match=r"cannot be read as \.csv"):
        refresh_catalog(settings, chunk_rows=4)

    assert settings.store().records() == []
