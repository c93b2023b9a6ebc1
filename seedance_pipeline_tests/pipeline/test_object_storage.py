"""Ledger and videos on S3 (a loopback S3-compatible server), through the headless command and
through Dagster: everything read back from the bucket, checksums verified, the secret nowhere."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import dagster as dg
import fsspec
import pandas as pd
import pytest

from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.emulator import EmulatorServer
from seedance_pipeline.ledger.checks import ledger_checks
from seedance_pipeline.ledger.write import secret_values
from seedance_pipeline_tests.conftest import S3, S3_SECRET, ImageFactory, pipeline_resources
from seedance_pipeline_tests.pipeline.conftest import Pipeline, write_catalog
from seedance_pipeline_tests.pipeline.test_assets_and_sensors import drive
from seedance_pipeline_tests.pipeline.test_headless import run

CHECKS = {"one_row_per_request", "succeeded_rows_have_verified_videos", "paid_videos_kept",
          "costs_add_up", "no_secrets", "videos_pass_qc", "no_failed_rows"}  # fmt: skip


def sha256_at(url: str) -> str:
    with fsspec.open(url, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def assert_videos_verified_on_s3(ledger: pd.DataFrame, videos_url: str) -> None:
    done = ledger[ledger["status"] == "succeeded"]
    assert len(done) == 5 and done["error_kind"].isna().all()
    for row in done.itertuples():
        assert str(row.video_uri).startswith(f"{videos_url}/{row.batch}/"), row.video_uri
        assert sha256_at(str(row.video_uri)) == row.video_sha256
    fs, _ = fsspec.core.url_to_fs(videos_url)
    assert sorted(f"s3://{key}" for key in fs.find(videos_url)) == sorted(done["video_uri"])


def everything_in_the_bucket(s3: S3) -> str:
    """Every object as text; Parquet decoded first (its pages are compressed)."""
    fs, _ = fsspec.core.url_to_fs(s3.url())
    text = []
    for key in fs.find(s3.bucket):
        if key.endswith(".parquet"):
            text.append(pd.read_parquet(f"s3://{key}").astype(str).to_csv())
        else:
            text.append(fs.cat_file(key).decode("latin-1"))
    return "\n".join(text)


def test_the_headless_command_keeps_ledger_and_videos_on_s3(
    tmp_path: Path, make_image: ImageFactory, emulator: EmulatorServer, s3: S3
) -> None:
    catalog = write_catalog(tmp_path, make_image)
    ledger_url, videos_url = s3.url("seedance", "ledger"), s3.url("seedance", "videos")
    env = {"SEEDANCE_SANDBOX_URL": emulator.url, "SEEDANCE_LEDGER_URL": ledger_url,
           "SEEDANCE_VIDEOS_URL": videos_url, **s3.env}  # fmt: skip
    result = run(catalog, tmp_path / "data", env)
    assert result.returncode == 0, result.stderr
    assert "succeeded  5" in result.stdout and f"ledger: {ledger_url}\n" in result.stdout

    ledger = pd.read_parquet(ledger_url)  # as a user reads it: credentials from the environment
    assert len(ledger) == 6 and sorted(ledger["batch"].astype(str).unique()) == ["alpha", "beta"]
    assert_videos_verified_on_s3(ledger, videos_url)
    data = tmp_path / "data"
    assert not (data / "ledger").exists() and not (data / "videos").exists()

    local = "".join(p.read_bytes().decode("latin-1") for p in data.rglob("*") if p.is_file())
    assert S3_SECRET not in result.stdout + result.stderr + local + everything_in_the_bucket(s3)


@pytest.fixture
def s3_pipeline(pipeline: Pipeline, s3: S3) -> Pipeline:
    resources = pipeline_resources(pipeline.resources, ledger_url=s3.url("seedance", "ledger"),
                                   videos_url=s3.url("seedance", "videos"))  # fmt: skip
    return Pipeline(resources, build_definitions(resources), pipeline.instance, pipeline.emulator,
                    pipeline.catalog)  # fmt: skip


def test_dagster_materialises_the_ledger_on_s3_and_its_checks_read_it_there(
    s3_pipeline: Pipeline, s3: S3, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # s3fs and botocore included: the secret must not be there
    ledger_url, videos_url = s3.url("seedance", "ledger"), s3.url("seedance", "videos")
    s3_pipeline.run("catalog_job")
    launched = drive(s3_pipeline)
    assert "ledger_job:alpha" in launched and "ledger_job:beta" in launched

    result = s3_pipeline.run("ledger_job", "alpha")
    meta = result.asset_materializations_for_node("batch_ledger")[0].metadata
    assert meta["path"].value == f"{ledger_url}/batch=alpha/part-0.parquet"
    assert meta["rows"].value == 3 and meta["status_succeeded"].value == 3
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == dict.fromkeys(CHECKS, True)

    ledger = pd.read_parquet(ledger_url)
    assert len(ledger) == 6
    assert_videos_verified_on_s3(ledger, videos_url)
    assert not Path(s3_pipeline.resources.seedance.data_dir, "ledger").exists()
    kept = ledger[ledger["status"] == "succeeded"]
    assert (kept["qc_status"] == "pass").all() and (kept["qc_frames"] > 0).all()  # QC read S3

    # The video check really reads the copy on S3: change one object and it fails.
    alpha = ledger[(ledger["batch"] == "alpha") & (ledger["status"] == "succeeded")]
    fs, _ = fsspec.core.url_to_fs(videos_url)
    fs.pipe_file(str(alpha["video_uri"].iloc[0]), b"not the video that was paid for")
    checks = {c.check_name: c.passed for c in s3_pipeline.run("ledger_job", "alpha").get_asset_check_evaluations()}  # fmt: skip
    assert checks["succeeded_rows_have_verified_videos"] is False

    events = [
        dg.serialize_value(entry)
        for record in s3_pipeline.instance.get_run_records()
        for entry in s3_pipeline.instance.all_logs(record.dagster_run.run_id)
    ]
    assert len(events) > 50 and len(caplog.records) > 50  # the scan below saw something
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert S3_SECRET not in "\n".join(events) + logged + everything_in_the_bucket(s3)


def test_the_no_secrets_check_looks_for_the_object_store_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    written = pd.DataFrame({"request_id": ["r1"], "status": ["failed"], "error_kind": ["transient"],
                            "error_message": [f"upload refused for {S3_SECRET}"], "video_uri": [None],
                            "video_sha256": [None], "cost_usd": [0.0]})  # fmt: skip
    outcomes = {o.name: o for o in ledger_checks(written, {"r1"}, 0.0, secret_values())}
    assert outcomes["no_secrets"].passed is False
    assert outcomes["no_secrets"].metadata["columns_with_a_key"] == ["error_message"]
