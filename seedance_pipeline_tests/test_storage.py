"""Durable files on a path or an fsspec URL: atomic writes, where reports go, credentials kept out."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import fsspec
import pytest

from seedance_pipeline import storage
from seedance_pipeline.resources import SeedanceResource
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.storage import videos
from seedance_pipeline_tests.conftest import S3, S3_SECRET


def test_bytes_replace_a_local_file_whole_and_leave_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "reports" / "sheet.png"
    assert storage.write_bytes_atomic(str(target), b"one") == str(target)
    storage.write_bytes_atomic(f"file://{target}", b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["sheet.png"]


def test_a_failed_local_write_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "sheet.png"
    storage.write_bytes_atomic(str(target), b"previous")

    def half_then_crash(self: Path, data: bytes) -> int:
        with open(self, "wb") as f:
            f.write(data[:3])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        storage.write_bytes_atomic(str(target), b"the new version")
    monkeypatch.undo()
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == [
        "sheet.png"
    ]


def test_bytes_reach_s3_as_one_object(s3: S3) -> None:
    url = s3.url("seedance", "reports", "sheet.png")
    assert storage.write_bytes_atomic(url, b"\x89PNG one") == url
    storage.write_bytes_atomic(url, b"\x89PNG two")
    assert storage.read_bytes(url) == b"\x89PNG two"
    fs, _ = fsspec.core.url_to_fs(url)
    assert fs.find(s3.bucket) == [f"{s3.bucket}/seedance/reports/sheet.png"]


@pytest.mark.parametrize(
    ("ledger_url", "data_dir", "reports"),
    [
        ("s3://bucket/seedance/ledger", "data", "s3://bucket/seedance/reports"),
        ("s3://bucket/seedance/ledger/", "data", "s3://bucket/seedance/reports"),
        ("s3://bucket/ledger", "data", "s3://bucket/reports"),
        (None, "/srv/seedance", "/srv/seedance/reports"),
        ("/mnt/shared/ledger", "/srv/seedance", "/mnt/shared/reports"),
    ],
)
def test_reports_go_beside_the_ledger_on_the_same_store(
    ledger_url: str | None, data_dir: str, reports: str
) -> None:
    assert PipelineSettings(data_dir=data_dir, ledger_url=ledger_url).reports_url == reports


def test_a_ledger_at_a_bucket_root_is_refused_with_what_to_do() -> None:
    with pytest.raises(
        ValueError, match=r"bucket root .* use a prefix, e\.g\. s3://bucket/seedance/ledger"
    ):
        PipelineSettings(ledger_url="s3://bucket")


def test_relative_local_locations_are_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = PipelineSettings(data_dir="data", videos_url="elsewhere/videos/")
    assert settings.ledger == str(tmp_path / "data" / "ledger")
    assert settings.videos == str(tmp_path / "elsewhere" / "videos")


@pytest.mark.parametrize("setting", ["ledger_url", "videos_url"])
def test_credentials_in_a_url_are_refused_without_repeating_them(setting: str) -> None:
    with pytest.raises(ValueError, match=f"{setting} carries credentials") as refused:
        PipelineSettings(**{setting: f"s3://AKIATEST:{S3_SECRET}@bucket/seedance/x"})
    assert S3_SECRET not in str(refused.value) and "AKIATEST" not in str(refused.value)


def test_dagster_dev_takes_the_locations_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEEDANCE_LEDGER_URL", "s3://bucket/seedance/ledger")
    monkeypatch.setenv("SEEDANCE_VIDEOS_URL", "s3://bucket/seedance/videos")
    settings = SeedanceResource().settings()
    assert settings.ledger == "s3://bucket/seedance/ledger"
    assert settings.videos == "s3://bucket/seedance/videos"
    assert settings.reports_url == "s3://bucket/seedance/reports"


def test_a_failed_s3_write_does_not_say_the_secret(s3: S3) -> None:
    with pytest.raises(OSError) as failed:  # no such bucket
        storage.write_bytes_atomic(f"s3://{s3.bucket}-missing/ledger/x.parquet", b"data")
    text = (
        f"{failed.value!r} {failed.value} {failed.value.__cause__!r} {failed.value.__context__!r}"
    )
    assert "bucket does not exist" in text and S3_SECRET not in text


def test_a_video_is_kept_when_tmp_is_another_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "download.mp4"
    local.write_bytes(b"video bytes")
    for name in ("rename", "replace"):
        real = getattr(os, name)

        def cross_device(src: str | Path, dst: str | Path, real=real) -> None:  # type: ignore[no-untyped-def]
            if Path(src) == local:  # what rename(2) says across filesystems
                raise OSError(errno.EXDEV, "Invalid cross-device link")
            real(src, dst)

        monkeypatch.setattr(os, name, cross_device)
    target = tmp_path / "videos" / "b" / "r.mp4"
    assert videos._store(local, str(target)) == str(target)
    assert target.read_bytes() == b"video bytes" and not local.exists()
    assert [p.name for p in target.parent.iterdir()] == ["r.mp4"]
