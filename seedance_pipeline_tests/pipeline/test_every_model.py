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


def test_a_draft_preview_costs_less_and_a_final_from_it_keeps_its_seed(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    """Step 1: `draft` rows make cheap 480p previews (and rows a draft cannot be are rejected with
    the reason); step 2: rows naming a good draft's task id in `from_draft` make the final video
    from it, with the seed the draft used."""
    pro = "seedance-1-5-pro-251215"
    drafts: list[dict[str, Any]] = [
        {"provider": "modelark", "model": pro, "draft": "true", "resolution": None},  # audio on
        {"provider": "modelark", "model": pro, "draft": "true", "generate_audio": "false"},
    ]
    refused: list[dict[str, Any]] = [
        {"provider": "modelark", "model": pro, "draft": "true", "resolution": "720p"},
        {"provider": "modelark", "model": pro, "draft": "true", "return_last_frame": "true"},
        {"provider": "modelark", "model": pro, "draft": "true", "service_tier": "flex"},
        {"provider": "modelark", "model": "seedance-1-0-pro-250528", "draft": "true"},
        {"provider": "novita", "model": "seedance-v1.5-pro-i2v", "draft": "true"},
    ]
    spec = load_facts().providers["modelark"].models[pro]
    price = load_facts().providers["modelark"].prices[pro]
    with EmulatorServer(EmulatorConfig(queued_s=0.05, running_s=0.1)) as emulator:
        catalog = catalog_of(tmp_path, make_image, drafts + refused)
        settings = settings_from(data_dir=str(tmp_path / "data"), catalog=str(catalog),
                                 sandbox_url=emulator.url, daily_budget_usd=NO_CAP)  # fmt: skip
        refresh_catalog(settings)
        settle(settings)
        first = read_partition(write_batch_ledger(settings, "default").path).to_pandas()

        made = first[first["status"] == "succeeded"].sort_values("catalog_row")
        assert list(made["catalog_row"]) == [1, 2] and made["draft"].all()
        assert made["draft_task_id"].isna().all()
        width, height = output_size(spec.family, "480p", "16:9", (1280, 720))
        assert (made["video_width"] == width).all() and (made["resolution"] == "480p").all()
        normal = video_tokens(width, height, 24, 5)
        with_audio, silent = made.iloc[0], made.iloc[1]
        assert with_audio["tokens"] == int(normal * 0.6)  # the documented factor with audio
        assert with_audio["cost_usd_estimated"] == pytest.approx(
            int(normal * 0.6) * price.usd_per_million_tokens_with_audio / 1e6
        )
        assert silent["tokens"] == normal  # no documented factor: the 480p upper bound
        assert (made["cost_usd"] == made["cost_usd_estimated"]).all()
        rejected = first[first["status"] == "rejected"].set_index("catalog_row")["error_message"]
        assert "480p only" in rejected[3] and "no last frame" in rejected[4]
        assert "flex tier" in rejected[5]
        assert "does not support draft previews" in rejected[6] and "draft" in rejected[7]

        finals = [
            {"provider": "modelark", "model": pro, "from_draft": task, "resolution": "720p"}
            for task in made["task_id"]
        ]
        pd.DataFrame(
            [{"image": "wide.jpg", "prompt": "p"} | r for r in drafts + refused + finals]
        ).to_csv(catalog, index=False)
        refresh_catalog(settings)
        settle(settings)
        ledger = read_partition(write_batch_ledger(settings, "default").path).to_pandas()
        report = write_batch_report(settings, "default")

    made_finals = ledger[ledger["draft_task_id"].notna()].set_index("draft_task_id")
    assert len(made_finals) == 2 and (made_finals["status"] == "succeeded").all()
    assert not made_finals["draft"].any()
    for _, draft in made.iterrows():
        final = made_finals.loc[draft["task_id"]]
        assert final["seed_used"] == draft["seed_used"]  # the draft's seed, reused
        assert (final["video_width"], final["video_height"]) == output_size(
            spec.family, "720p", "16:9", (1280, 720)
        )
        assert final["cost_usd"] > draft["cost_usd"]
    assert report.sheet.video_tiles == 4
