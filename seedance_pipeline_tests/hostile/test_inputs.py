"""Hostile inputs besides the providers' answers: catalog text with NUL and control characters
(refused per row, alike on SQLite and PostgreSQL), local images sized before they are read and
optionally confined to folders, the emulator's admin API reachable by loopback names only, and
partial downloads of a killed process removed at the next start."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from seedance_pipeline.catalog import images
from seedance_pipeline.catalog.images import ImageReader
from seedance_pipeline.catalog.refresh import refresh_catalog
from seedance_pipeline.emulator import EmulatorServer
from seedance_pipeline.polling.tick import poll_tick
from seedance_pipeline.settings import PipelineSettings, settings_from
from seedance_pipeline.state.lifecycle import RequestStatus
from seedance_pipeline.storage import videos
from seedance_pipeline_tests.conftest import ImageFactory
from seedance_pipeline_tests.hostile.server import Answer, HostileServer, drip


@pytest.mark.parametrize(
    ("column", "value"),
    [("image_id", "a\x00b"), ("batch", "nightly\x00"), ("prompt", "rain\x00"), ("model", "m\x1b[31m"),
     ("provider", "nov\rita")],
)  # fmt: skip
def test_a_control_character_in_catalog_text_rejects_its_row_alike_on_every_backend(
    tmp_path: Path, state_url: str, make_image: ImageFactory, column: str, value: str
) -> None:
    image = make_image(1280, 720)
    rows = [
        {"image": str(image), "prompt": "calm", "image_id": "ok", "batch": "b"},
        {"image": str(image), "prompt": "line one\nline two\ttab", "image_id": "ok2", "batch": "b"},
        {"image": str(image), "prompt": "bad", "image_id": "bad", "batch": "b", column: value},
    ]
    catalog = tmp_path / "catalog.parquet"
    pd.DataFrame(rows).to_parquet(catalog)
    settings = PipelineSettings(data_dir=str(tmp_path / "data"), catalog=str(catalog),
                                state_url=state_url)  # fmt: skip
    refresh_catalog(settings)
    records = {r.catalog_row: r for r in settings.store().records()}
    assert records[1].status == records[2].status == RequestStatus.PENDING
    bad = records[3]
    assert bad.status == RequestStatus.REJECTED
    assert f"{column}: holds a NUL or control character" in (bad.error_message or "")
    stored = " ".join(str(v) for v in vars(bad).values())
    assert "\x00" not in stored and "\x1b" not in stored


def test_a_local_image_is_sized_before_it_is_read(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.png"
    with sparse.open("wb") as f:
        f.truncate(3 * 2**30)  # 3 GiB, no disk used; reading it would take 3 GiB of memory
    started = time.monotonic()
    result = ImageReader(tmp_path).read("huge.png")
    assert isinstance(result, str) and "over the 31 MiB limit" in result
    assert time.monotonic() - started < 1


def test_image_roots_confine_local_images_after_symlinks(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    inside = make_image(name="in.png")
    inside = inside.rename(allowed / "in.png")
    outside = make_image(name="out.png")
    (allowed / "link.png").symlink_to(outside)
    reader = ImageReader(allowed, roots=[str(allowed)])
    assert not isinstance(reader.read("in.png"), str)
    for ref in ("link.png", "../out.png", str(outside)):
        result = reader.read(ref)
        assert isinstance(result, str) and "SEEDANCE_IMAGE_ROOTS" in result
    assert not isinstance(ImageReader(allowed).read("../out.png"), str)  # no roots: any path


def test_image_roots_are_read_from_the_environment() -> None:
    settings = settings_from({"SEEDANCE_IMAGE_ROOTS": f"/srv/images{os.pathsep}/data/more"})
    assert settings.image_roots == ("/srv/images", "/data/more")
    assert settings_from({}).image_roots is None


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("attacker.example", False), ("127.0.0.1.nip.io:8000", False), ("localhost:1", True),
     ("127.0.0.1", True), ("[::1]:80", True)],
)  # fmt: skip
def test_the_emulator_answers_loopback_host_names_only(
    emulator: EmulatorServer, host: str, allowed: bool
) -> None:
    for path in ("/_emulator/health", "/_emulator/audit"):
        response = httpx.get(f"{emulator.url}{path}", headers={"Host": host})
        assert (response.status_code == 200) is allowed, (path, response.status_code)
        if not allowed:
            assert response.status_code == 421


def test_partial_downloads_of_a_killed_process_are_removed_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads = tmp_path / "downloads"
    monkeypatch.setattr(videos, "DOWNLOADS", downloads)
    settings = PipelineSettings(data_dir=str(tmp_path / "data"), daily_budget_usd=None)
    batch = Path(settings.videos) / "b"
    batch.mkdir(parents=True)
    downloads.mkdir()
    old = [downloads / "tmpabc.mp4", batch / ".r1.mp4.0f1e.tmp"]
    fresh = [downloads / "tmpdef.mp4", batch / ".r2.mp4.9a8b.tmp"]
    kept = batch / "r3.mp4"
    for path in [*old, *fresh, kept]:
        path.write_bytes(b"partial")
    an_hour_ago = time.time() - 3600
    for path in [*old, kept]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    poll_tick(settings)
    assert [p.exists() for p in old] == [False, False]
    assert all(p.exists() for p in fresh)  # may be another process's download under way
    assert kept.exists()


def test_an_image_url_may_not_redirect_from_a_public_host_into_a_local_one(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 127.0.0.1 plays a public host here; `localhost` stays local.
    monkeypatch.setattr(images, "is_local_host", lambda host: host == "localhost")
    hostile.script(
        "GET",
        "/img.png",
        Answer(302, headers={"location": f"http://localhost:{hostile.port}/admin"}),
    )
    hostile.script("GET", "/file.png", Answer(302, headers={"location": "file:///etc/passwd"}))
    for path in ("/img.png", "/file.png"):
        result = ImageReader(None).read(f"{hostile.url}{path}")
        assert isinstance(result, str) and "refused a redirect" in result
    assert [c.path for c in hostile.calls] == ["/img.png", "/file.png"]  # /admin never asked


def test_an_image_that_drips_stops_at_its_total_deadline(hostile: HostileServer) -> None:
    hostile.script("GET", "/slow.png", Answer(chunks=drip(0.1, first=b"\x89PNG")))
    started = time.monotonic()
    result = ImageReader(None, timeout_s=1.0).read(f"{hostile.url}/slow.png")
    assert isinstance(result, str) and "not whole within 2 s" in result
    assert time.monotonic() - started < 6
