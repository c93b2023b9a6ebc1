"""A corpus of bad inputs: each gives a per-row rejection naming the row and the problem, while the
rest of the batch goes on."""

from __future__ import annotations

import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from seedance_pipeline.catalog.planning import plan_catalog
from seedance_pipeline.settings import CatalogDefaults
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline_tests.conftest import ImageFactory


class SlowOr404(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(3)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def web() -> str:  # type: ignore[misc]
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowOr404)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def build_corpus(tmp: Path, make_image: ImageFactory, web: str) -> list[tuple[dict, str | None]]:
    """(row, expected words in its rejection) — None for rows that must go through."""
    good = make_image(1280, 720, "JPEG", name="good.jpg")
    jpeg = good.read_bytes()
    (tmp / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    Image.new("CMYK", (800, 600), (0, 50, 100, 0)).save(tmp / "cmyk.jpg")
    Image.new("I;16", (800, 600), 3000).save(tmp / "deep.png")
    frames = [Image.new("RGB", (640, 480), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.new("1", (20000, 20000)).save(tmp / "bomb.png")
    (tmp / "empty.png").write_bytes(b"")
    (tmp / "text.jpg").write_bytes(b"just some text")
    make_image(2450, 950, "JPEG", name="rotated.jpg", exif_orientation=8)
    make_image(301, 400, "PNG", name="edge_ok.png")
    make_image(300, 400, "PNG", name="edge_bad.png")
    base = {"image": "good.jpg", "prompt": "a calm sea", "provider": "novita", "resolution": "480p"}
    return [
        (base, None),
        (base | {"image": "truncated.jpg"}, "truncated"),
        (base | {"image": "cmyk.jpg"}, "CMYK colour is not accepted"),
        (base | {"image": "deep.png"}, "(16/32-bit) pixels are not accepted"),
        (base | {"image": "animated.gif"}, "animated images are not accepted"),
        (base | {"image": "bomb.png"}, "decompression bomb"),
        (base | {"image": "empty.png"}, "the file is empty"),
        (base | {"image": "text.jpg"}, "match no known image format"),
        (base | {"image": "missing.jpg"}, "file not found"),
        (base | {"image": "rotated.jpg"}, "aspect ratio 950x2450"),
        (base | {"image": "edge_ok.png", "seed": "1"}, None),
        (base | {"image": "edge_bad.png"}, "short side 300 px must be greater than 300 px"),
        (base | {"image": f"{web}/missing.jpg"}, "HTTP 404"),
        (base | {"image": f"{web}/slow.jpg"}, "no answer within 1 s"),
        (base | {"image": "s3://bucket/a.jpg"}, "scheme s3:// is not supported"),
        (base | {"model": "seedance-v1.5-pro-i2v", "prompt": float("nan")}, "prompt: is required"),
        (base | {"prompt": float("nan"), "seed": "2"}, None),  # lite takes an empty prompt
        (base | {"prompt": "x" * 2001}, "2001 characters is over the 2000 limit"),
        (base | {"provider": "runway"}, "'runway' is unknown"),
        (base | {"model": "seedance-v9"}, "'seedance-v9' is not offered by novita"),
        (base | {"duration": "11"}, "11 s is not offered"),
        (base | {"seed": str(2**32)}, "is outside -1…4294967295"),
        (base | {"generate_audio": "true"}, "does not support generate_audio"),
        (base | {"camera_fixed": "sometimes"}, "camera_fixed: 'sometimes' is not valid"),
    ]


def test_each_bad_row_is_rejected_by_name_and_the_rest_goes_on(tmp_path: Path, make_image: ImageFactory,
                                                               web: str) -> None:  # fmt: skip
    corpus = build_corpus(tmp_path, make_image, web)
    frame = pd.DataFrame(
        [row for row, _ in corpus] + [corpus[0][0]]
    )  # the last row duplicates the first
    plan = plan_catalog(frame, CatalogDefaults(), tmp_path, image_timeout_s=1)
    assert plan.rows == len(corpus) + 1 and plan.duplicates == 1
    by_row = {r.catalog_row: r for r in plan.records}
    for number, (_, expected) in enumerate(corpus, start=1):
        record = by_row[number]
        if expected is None:
            assert record.status == RequestStatus.PENDING, (number, record.error_message)
        else:
            assert record.status == RequestStatus.REJECTED, (number, expected)
            assert expected in (record.error_message or ""), (number, record.error_message)


def test_non_utf8_text_in_a_parquet_catalog_is_a_row_rejection(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    make_image(1280, 720, "JPEG", name="good.jpg")
    buffer = io.BytesIO()
    pd.DataFrame(
        {"image": ["good.jpg", "good.jpg"], "prompt": [b"caf\xe9", "caf\u00e9".encode()]}
    ).to_parquet(buffer)
    plan = plan_catalog(pd.read_parquet(buffer), CatalogDefaults(), tmp_path)
    bad, good = plan.records
    assert bad.status == RequestStatus.REJECTED and "prompt: not valid UTF-8 text" in (
        bad.error_message or ""
    )
    assert good.status == RequestStatus.PENDING and good.request["prompt"] == "caf\u00e9"
