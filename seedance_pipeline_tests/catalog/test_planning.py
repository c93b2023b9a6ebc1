"""Catalog rows → normalised requests with stable ids; invalid rows kept with every reason."""

from __future__ import annotations

import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from seedance_pipeline.catalog.planning import plan_catalog
from seedance_pipeline.catalog.reading import catalog_base_dir, read_catalog
from seedance_pipeline.settings import CatalogDefaults
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline_tests.conftest import ImageFactory

REPO = Path(__file__).resolve().parents[2]


def plan(rows: list[dict], base: Path, **defaults: object):  # type: ignore[no-untyped-def]
    return plan_catalog(pd.DataFrame(rows), CatalogDefaults(**defaults), base)  # type: ignore[arg-type]


def test_the_bundled_sample_catalog_has_three_providers_and_rejections() -> None:
    catalog = str(REPO / "data" / "catalog.csv")
    result = plan_catalog(read_catalog(catalog), CatalogDefaults(), catalog_base_dir(catalog))
    valid = [r for r in result.records if r.status == RequestStatus.PENDING]
    formats = {Path(r.request["image"]).suffix for r in valid}
    assert len(valid) >= 12 and len({r.provider for r in valid}) >= 3
    assert formats >= {".jpg", ".png", ".webp", ".bmp", ".tiff", ".gif"}
    assert result.count(RequestStatus.REJECTED) >= 3 and result.duplicates == 1
    assert result.batches == ["city", "coast", "landscapes"]


def test_request_ids_depend_on_image_bytes_and_output_parameters_only(
    make_image: ImageFactory, tmp_path: Path
) -> None:
    image = make_image(800, 600, "JPEG", name="a.jpg")
    copy = tmp_path / "elsewhere" / "b.jpg"
    copy.parent.mkdir()
    shutil.copy(image, copy)
    base = {"prompt": "waves", "provider": "novita", "resolution": "480p"}
    result = plan(
        [
            base | {"image": "a.jpg", "image_id": "one", "batch": "x"},
            base
            | {
                "image": str(copy),
                "image_id": "two",
                "batch": "y",
            },  # same bytes, path, id, batch differ
            base | {"image": "a.jpg", "seed": "7"},
            base | {"image": "a.jpg", "prompt": "other"},
        ],
        tmp_path,
    )
    assert result.rows == 4 and result.duplicates == 1
    ids = [r.request_id for r in result.records]
    assert len(ids) == len(set(ids)) == 3
    first = result.records[0]
    assert (first.image_id, first.batch, first.catalog_row) == ("one", "x", 1)  # the first row wins
    again = plan([base | {"image": "a.jpg"}], tmp_path)
    assert again.records[0].request_id == first.request_id  # stable across reads


def test_return_last_frame_is_a_column_and_leaves_the_ids_of_rows_without_it_unchanged(
    make_image: ImageFactory, tmp_path: Path
) -> None:
    from seedance_pipeline.catalog.planning import request_id_for
    from seedance_pipeline.providers import GenerationRequest

    make_image(800, 600, "JPEG", name="a.jpg")
    base = {"image": "a.jpg", "prompt": "waves", "provider": "modelark", "resolution": "480p"}
    result = plan([base, base | {"return_last_frame": "true"}, base | {"return_last_frame": "no"}],
                  tmp_path)  # fmt: skip
    asked = [r.request.get("return_last_frame") for r in result.records]
    assert asked == [None, True, False] and len({r.request_id for r in result.records}) == 3
    # The id of a request without the column is what it was before the column existed.
    request = GenerationRequest(provider="modelark", model="seedance-1-0-lite-i2v-250428",
                                image="a.jpg", prompt="waves", seed=7)  # fmt: skip
    assert request_id_for(request, "ab" * 32, None) == "239f3552103818f2a0e881160ebeb545"


def test_defaults_fill_missing_values_and_batches_are_path_safe(
    make_image: ImageFactory, tmp_path: Path
) -> None:
    make_image(800, 600, name="a.png")
    result = plan([{"image": "a.png", "prompt": "p", "batch": "Summer 2026/shots!"}, {"image": "a.png", "prompt": "q"}],
                  tmp_path, provider="modelark", resolution="480p", batch="inbox")  # fmt: skip
    first, second = result.records
    assert first.batch == "Summer_2026_shots" and second.batch == "inbox"
    assert first.provider == "modelark" and first.model == "seedance-1-0-lite-i2v-250428"
    assert first.request["resolution"] == "480p" and first.cost_usd_estimated > 0


def test_every_reason_of_an_invalid_row_is_kept(make_image: ImageFactory, tmp_path: Path) -> None:
    make_image(200, 900, name="thin.png")
    result = plan(
        [{"image": "thin.png", "prompt": "p", "provider": "novita", "duration": "seven", "seed": "1.5",
          "camera_fixed": "maybe", "resolution": "4k"},
         {"image": "missing.png", "provider": "runway"},
         {"prompt": "no image at all"}],
        tmp_path,
    )  # fmt: skip
    thin, missing, empty = result.records
    assert thin.status == RequestStatus.REJECTED and thin.cost_usd == 0
    for words in (
        "duration: 'seven' is not valid",
        "seed: '1.5' is not valid",
        "camera_fixed: 'maybe'",
        "short side 200 px",
        "aspect ratio 200x900",
        "'4k' is not offered",
    ):
        assert words in (thin.error_message or ""), words
    assert "file not found" in (missing.error_message or "") and "'runway' is unknown" in (
        missing.error_message or ""
    )
    assert empty.error_message == "image: no image given"


def test_parquet_catalogs_and_misspelt_or_unused_columns(
    make_image: ImageFactory, tmp_path: Path
) -> None:
    make_image(800, 600, name="a.png")
    pd.DataFrame([{"image": "a.png", "promt": "typo", "seed": 3}]).to_parquet(
        tmp_path / "c.parquet"
    )
    frame = read_catalog(str(tmp_path / "c.parquet"))
    result = plan_catalog(frame, CatalogDefaults(), tmp_path)
    assert result.records[0].request["seed"] == 3
    assert (
        result.records[0].status == RequestStatus.REJECTED
    )  # a misspelt column must not send prompt-less videos
    assert "column 'promt' looks like a misspelling of 'prompt'" in (
        result.records[0].error_message or ""
    )
    frame = read_catalog(str(tmp_path / "c.parquet")).assign(notes="anything")
    assert "column 'notes' is not used" in plan_catalog(frame, CatalogDefaults(), tmp_path).warnings


@pytest.fixture
def image_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_images_are_fetched_for_their_digest_and_header(
    make_image: ImageFactory, tmp_path: Path, image_server: str
) -> None:
    local = make_image(1280, 720, "JPEG", name="web.jpg")
    result = plan([{"image": f"{image_server}/web.jpg", "prompt": "p"}, {"image": str(local), "prompt": "p"},
                   {"image": f"{image_server}/nope.jpg", "prompt": "p"}], tmp_path)  # fmt: skip
    assert result.duplicates == 1 and len(result.records) == 2  # the local copy has the same bytes
    remote, missing = result.records
    assert remote.request["image"].startswith("http://") and remote.image_width == 1280
    assert missing.status == RequestStatus.REJECTED and "HTTP 404" in (missing.error_message or "")
