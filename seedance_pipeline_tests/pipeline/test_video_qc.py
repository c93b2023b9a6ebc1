"""Video QC through the Dagster definitions against the emulator: each bad kind of video the
emulator can deliver is caught with its reason, good videos pass, the ledger's check warns, the
contact sheet marks the failures, and `seedance-pipeline export` writes what passes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.emulator import EmulatorServer
from seedance_pipeline_tests.conftest import pipeline_resources
from seedance_pipeline_tests.pipeline.conftest import Pipeline
from seedance_pipeline_tests.pipeline.test_assets_and_sensors import drive

EXE = str(Path(sys.executable).with_name("seedance-pipeline"))
# Where the contact sheet is kept (README's picture, docs/contact_sheet_qc.png, comes from there);
# read at import, before the tests' environment is cleared. Else the test's own folder.
ARTIFACTS = os.environ.get("SEEDANCE_TEST_ARTIFACTS")

# provider → the bad video its emulator delivers, and the reason QC must give for it
BAD = {
    "novita": ("black", "of frames black"),
    "myrouter": ("frozen", "frozen: 100% of sampled frames unchanged"),
    "aimlapi": ("wrong_duration", "duration 2.04 s, asked 5 s"),
    "segmind": ("unrelated", "first frame unlike the input image"),
}


def textured(path: Path, width: int, height: int, phase: float) -> Path:
    """A picture with structure (QC compares structure): colour ramps under a wave pattern."""
    y, x = np.mgrid[0:height, 0:width]
    wave = 128 + 90 * np.sin(x / (17 + phase)) * np.cos(y / (11 + phase))
    rgb = np.stack([x * 255 // width, wave, y * 255 // height], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def qc_pipeline(tmp_path: Path, emulator: EmulatorServer) -> Pipeline:
    for n, (w, h) in enumerate([(1280, 720), (900, 900), (720, 1280)]):
        textured(tmp_path / f"pic{n}.png", w, h, n * 3.0)
    rows = [
        *({"image": "pic0.png", "provider": p, "prompt": kind} for p, (kind, _) in BAD.items()),
        {"image": "pic0.png", "provider": "modelark", "model": "seedance-1-0-pro-250528",
         "last_image": "pic1.png", "duration": 3, "prompt": "good, ends on its last image"},
        {"image": "pic2.png", "provider": "modelark", "model": "seedance-1-5-pro-251215",
         "duration": 4, "prompt": "good, with audio"},
    ]  # fmt: skip
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame(rows).assign(resolution="480p", batch="qc").to_csv(catalog, index=False)
    for provider, (kind, _) in BAD.items():  # through the emulator's admin API
        answer = httpx.put(f"{emulator.url}/_emulator/faults/{provider}", json={"bad_video": kind})
        answer.raise_for_status()
    resources = pipeline_resources(data_dir=str(tmp_path / "data"), catalog=str(catalog),
                                   sandbox_url=emulator.url, poll_time_box_s=20)  # fmt: skip
    return Pipeline(
        resources, build_definitions(resources), dg.DagsterInstance.ephemeral(), emulator, catalog
    )


def test_bad_videos_fail_qc_with_their_reason_and_good_ones_pass(
    qc_pipeline: Pipeline, tmp_path: Path
) -> None:
    qc_pipeline.run("catalog_job")
    drive(qc_pipeline, timeout_s=120)
    ledger = pd.read_parquet(f"{qc_pipeline.resources.seedance.data_dir}/ledger/batch=qc")
    assert (ledger["status"] == "succeeded").all()  # QC never changes a status
    by_provider = ledger.set_index("provider")
    for provider, (kind, reason) in BAD.items():
        row = by_provider.loc[provider]
        assert row["qc_status"] == "fail", (kind, row["qc_reasons"])
        assert reason in row["qc_reasons"], (kind, row["qc_reasons"])
    good = ledger[ledger["provider"] == "modelark"].set_index("model")
    assert (good["qc_status"] == "pass").all(), list(good["qc_reasons"])
    assert good["qc_reasons"].isna().all() and (good["qc_motion"] > 0.5).all()
    assert (good["qc_first_ssim"] > 0.9).all() and (good["qc_first_psnr"] > 30).all()
    ends = good.loc["seedance-1-0-pro-250528"]
    assert ends["qc_last_ssim"] > 0.9 and ends["qc_frames"] == 3 * 24 + 1
    assert bool(good.loc["seedance-1-5-pro-251215", "qc_audio"]) is True  # asked for by default
    assert bool(ends["qc_audio"]) is False
    # The unrelated first frame is the only thing wrong with it; the black one is also frozen.
    assert by_provider.loc["segmind", "qc_reasons"].count(";") == 0
    assert by_provider.loc["segmind", "qc_first_ssim"] < 0.3

    # The ledger's check warns and lists them; the metadata gives the cost per passing clip.
    result = qc_pipeline.run("ledger_job", "qc")
    check = next(
        c for c in result.get_asset_check_evaluations() if c.check_name == "videos_pass_qc"
    )
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    listed = check.metadata["failures"].value
    assert isinstance(listed, list)
    assert sorted(f["request_id"] for f in listed) == sorted(
        ledger[ledger["qc_status"] == "fail"]["request_id"]
    )
    meta = result.asset_materializations_for_node("batch_ledger")[0].metadata
    assert meta["qc"].value == {"fail": 4, "pass": 2}
    assert meta["cost_per_passing_clip_usd"].value == pytest.approx(ledger["cost_usd"].sum() / 2)
    report = result.asset_materializations_for_node("batch_report")[0].metadata
    assert report["cost_per_passing_clip_usd"].value == pytest.approx(ledger["cost_usd"].sum() / 2)

    # The contact sheet marks the failures: a red frame around each failing tile.
    sheet = Image.open(
        f"{qc_pipeline.resources.seedance.data_dir}/reports/batch=qc/contact_sheet.png"
    )
    red = np.all(np.asarray(sheet.convert("RGB")) == (235, 40, 40), axis=-1)
    assert red.sum() > 4 * 4 * 2 * 300  # four tiles framed (each frame well over 300 px long)
    artifacts = Path(ARTIFACTS) if ARTIFACTS else tmp_path / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    shutil.copy(sheet.filename, artifacts / "contact_sheet_qc.png")

    # The dataset export: the passing videos and a manifest pandas and DuckDB read back.
    out = tmp_path / "dataset"
    done = subprocess.run(
        [EXE, "export", "--data-dir", qc_pipeline.resources.seedance.data_dir, "--out", f"file://{out}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "exported 2 videos" in done.stdout and "4 kept videos left out" in done.stdout
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert sorted(manifest["request_id"]) == sorted(good["request_id"])
    assert (manifest["qc_status"] == "pass").all() and manifest["seed_used"].notna().all()
    assert set(manifest["prompt"]) == set(good["prompt"])
    for row in manifest.itertuples():
        assert (out / row.file_name).stat().st_size > 0
    with duckdb.connect() as db:
        counted = db.execute(
            "SELECT count(*), min(qc_first_ssim) FROM read_parquet(?)",
            [str(out / "manifest.parquet")],
        ).fetchone()
    assert counted is not None and counted[0] == 2 and counted[1] > 0.9
    simple = {str(f.type) for f in pq.read_schema(out / "manifest.parquet")}
    assert simple <= {"string", "int64", "double", "bool"}, simple  # plain types for `datasets`

    failed = subprocess.run(
        [EXE, "export", "--data-dir", qc_pipeline.resources.seedance.data_dir, "--out", str(tmp_path / "all"),
         "--qc", "pass,fail"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert failed.returncode == 0 and "exported 6 videos" in failed.stdout, failed.stderr
    assert json.loads(pd.read_parquet(tmp_path / "all" / "manifest.parquet").to_json())  # readable
