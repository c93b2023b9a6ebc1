"""Every model in the facts runs through the whole pipeline on the emulator: validation, submission,
polling, the durable video, cost, the ledger and the contact sheet. A model added to facts.toml is
covered here without editing the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

from seedance_pipeline.catalog.refresh import refresh_catalog
from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer
from seedance_pipeline.ledger.rows import read_partition
from seedance_pipeline.ledger.write import write_batch_ledger
from seedance_pipeline.providers import adapter_for
from seedance_pipeline.providers.cost import video_tokens
from seedance_pipeline.providers.facts import load_facts, output_size
from seedance_pipeline.reports.report import BatchReport, write_batch_report
from seedance_pipeline.settings import NO_CAP, settings_from
from seedance_pipeline_tests.conftest import MODELS, ImageFactory
from seedance_pipeline_tests.pipeline.test_reliability import catalog_of, settle


def run_catalog(
    tmp_path: Path, make_image: ImageFactory, rows: list[dict[str, Any]]
) -> tuple[pd.DataFrame, BatchReport]:
    """The rows through the whole pipeline on the emulator: the ledger and report of `default`."""
    with EmulatorServer(EmulatorConfig(queued_s=0.05, running_s=0.1)) as emulator:
        catalog = catalog_of(tmp_path, make_image, rows)
        settings = settings_from(data_dir=str(tmp_path / "data"), catalog=str(catalog),
                                 sandbox_url=emulator.url, daily_budget_usd=NO_CAP)  # fmt: skip
        refresh_catalog(settings)
        settle(settings)
        ledger = read_partition(write_batch_ledger(settings, "default").path).to_pandas()
        return ledger, write_batch_report(settings, "default")


def test_every_model_of_every_provider_delivers_a_costed_video_on_the_contact_sheet(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    rows = [
        {"provider": provider, "model": model, "aspect_ratio": "16:9", "duration": 5, "seed": n}
        if load_facts().providers[provider].models[model].aspect_ratios
        else {"provider": provider, "model": model, "duration": 5, "seed": n}
        for n, (provider, model) in enumerate(MODELS, start=1)
    ]
    ledger, report = run_catalog(tmp_path, make_image, rows)  # 1280x720 images, 480p

    assert len(ledger) == len(MODELS)
    assert (ledger["status"] == "succeeded").all(), ledger[["model", "status", "error_message"]]
    for _, row in ledger.iterrows():
        spec = load_facts().providers[row["provider"]].models[row["model"]]
        width, height = output_size(spec.family, "480p", "16:9", (1280, 720))
        assert (row["video_width"], row["video_height"]) == (width, height), row["model"]
        price = adapter_for(row["provider"]).spec.prices[row["model"]]
        if price.billing == "tokens":
            rate = price.usd_per_million_tokens
            if spec.generate_audio_default and price.usd_per_million_tokens_with_audio:
                rate = price.usd_per_million_tokens_with_audio  # audio is on by default
            expected = video_tokens(width, height, 24, 5) * rate / 1e6
            assert row["cost_usd_estimated"] == pytest.approx(expected), row["model"]
        assert row["cost_usd"] > 0 and row["video_sha256"]
    assert report.sheet.video_tiles == len(MODELS)


def test_a_row_asking_for_the_last_frame_keeps_it_beside_the_video_for_chaining(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    rows = [
        {"provider": "modelark", "model": model, "return_last_frame": "true", "seed": n}
        for n, model in enumerate(load_facts().providers["modelark"].models, start=1)
    ] + [{"provider": "modelark", "seed": 99}]  # did not ask
    ledger, report = run_catalog(tmp_path, make_image, rows)

    assert (ledger["status"] == "succeeded").all()
    asked, plain = ledger[ledger["seed"] != 99], ledger[ledger["seed"] == 99]
    assert plain["last_frame_uri"].isna().all()
    for _, row in asked.iterrows():
        kept = Path(row["last_frame_uri"])
        assert kept.parent == Path(row["video_uri"]).parent and kept.suffix == ".png"
        with Image.open(kept) as frame:
            assert frame.size == (row["video_width"], row["video_height"]), row["model"]
    assert report.sheet.video_tiles == len(ledger)
