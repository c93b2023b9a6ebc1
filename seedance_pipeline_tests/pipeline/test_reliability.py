"""Reliability under provider faults: adaptive concurrency, budgets, nothing paid twice or lost."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer
from seedance_pipeline.pipeline import poll_tick, refresh_catalog, submit_batch, write_batch_ledger
from seedance_pipeline.providers import provider_names
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.store import OPEN, PENDING
from seedance_pipeline_tests.conftest import ImageFactory


def catalog_of(tmp_path: Path, make_image: ImageFactory, rows: list[dict]) -> Path:
    make_image(1280, 720, "JPEG", name="wide.jpg")
    path = tmp_path / "catalog.csv"
    pd.DataFrame(
        [{"image": "wide.jpg", "resolution": "480p", "prompt": "p"} | r for r in rows]
    ).to_csv(path, index=False)
    return path


def settle(settings: PipelineSettings, timeout_s: float = 90) -> None:
    """Submit and poll, as the sensor would, until nothing is open or nothing can move."""
    store = settings.store()
    deadline = time.monotonic() + timeout_s
    while any(r.status in OPEN for r in store.records()):
        assert time.monotonic() < deadline, store.counts()
        for batch in store.batches():
            submit_batch(settings, batch, provider_names())
        poll_tick(settings)
        time.sleep(0.05)


def test_429s_shrink_the_in_flight_limit_and_successes_grow_it_back(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    config = EmulatorConfig(queued_s=0.2, running_s=0.3, max_in_flight={"novita": 2})
    with EmulatorServer(config) as emulator:
        catalog = catalog_of(
            tmp_path, make_image, [{"provider": "novita", "seed": i} for i in range(12)]
        )
        settings = PipelineSettings(data_dir=str(tmp_path / "data"), catalog=str(catalog), sandbox_url=emulator.url,
                                    max_in_flight={"novita": 8}, daily_budget_usd=None)  # fmt: skip
        refresh_catalog(settings)
        store = settings.store()
        submit_batch(settings, "default", ["novita"])
        lowered = store.current_limit("novita", 8)
        assert lowered < 8  # the provider's 429s halved our limit
        settle(settings)
        assert store.counts() == {"succeeded": 12}
        assert len(emulator.state.audit("novita")) == 12  # every request exactly once
        # The provider lifts its limit: each accepted task raises ours by one, up to the configured 8.
        emulator.state.config.max_in_flight["novita"] = 100
        catalog_of(
            tmp_path, make_image, [{"provider": "novita", "seed": 100 + i} for i in range(12)]
        )
        refresh_catalog(settings)
        settle(settings)
        assert store.current_limit("novita", 8) == 8
        assert len(emulator.state.audit("novita")) == 24


def test_the_daily_cap_is_never_exceeded_and_the_wait_is_explained(tmp_path: Path, make_image: ImageFactory,
                                                                   emulator: EmulatorServer) -> None:  # fmt: skip
    catalog = catalog_of(
        tmp_path, make_image, [{"provider": "modelark", "seed": i} for i in range(10)]
    )
    settings = PipelineSettings(data_dir=str(tmp_path / "data"), catalog=str(catalog), sandbox_url=emulator.url,
                                daily_budget_usd=0.30)  # fmt: skip
    plan = refresh_catalog(settings)
    each = plan.records[0].cost_usd_estimated
    settle_deadline = time.monotonic() + 30
    store = settings.store()
    while time.monotonic() < settle_deadline:
        submit_batch(settings, "default", ["modelark"])
        poll_tick(settings)
        if not store.records(statuses=["in_flight", "fetching", "submitting"]):
            break
    spent = store.spend()
    assert spent <= 0.30 + 1e-9
    done = store.counts().get("succeeded", 0)
    assert done == int(0.30 // each) and len(emulator.state.audit()) == done
    waiting = store.records(statuses=[PENDING])
    assert waiting and all("spend cap $0.30" in (r.error_message or "") for r in waiting)
    ledger = write_batch_ledger(settings, "default").table.to_pandas()
    assert set(ledger[ledger["status"] == "pending"]["error_message"]) == {waiting[0].error_message}


def test_expired_urls_are_signed_again_where_possible_and_lost_videos_are_flagged(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    config = EmulatorConfig(
        queued_s=0, running_s=0.1, video_url_ttl_s={"modelark": 0.5, "novita": 0.5}
    )
    with EmulatorServer(config) as emulator:
        catalog = catalog_of(
            tmp_path, make_image, [{"provider": "modelark"}, {"provider": "novita"}]
        )
        settings = PipelineSettings(
            data_dir=str(tmp_path / "data"), catalog=str(catalog), sandbox_url=emulator.url
        )
        refresh_catalog(settings)
        submit_batch(settings, "default", ["modelark", "novita"])
        time.sleep(1.0)  # both finished, and their first URLs have expired before anyone looked
        poll_tick(settings)
        by_provider = {r.provider: r for r in settings.store().records()}
        ark, novita = by_provider["modelark"], by_provider["novita"]
        assert ark.status == novita.status == "succeeded"
        assert ark.video_uri and ark.error_kind is None  # ModelArk signed a fresh URL on query
        assert novita.video_uri is None and novita.error_kind == "video_lost"
        assert "HTTP 403" in (novita.error_message or "") and "no fresh URL" in (
            novita.error_message or ""
        )
        assert (novita.cost_usd or 0) > 0  # it was paid for: the ledger says so

        from seedance_pipeline.ledger.checks import ledger_checks

        ledger = write_batch_ledger(settings, "default")
        outcomes = {o.name: o for o in ledger_checks(ledger.table.to_pandas(), {r.request_id for r in ledger.records},
                                                      sum(r.cost_usd or 0 for r in ledger.records), [])}  # fmt: skip
        assert (
            not outcomes["paid_videos_kept"].passed
            and outcomes["paid_videos_kept"].metadata["lost"] == 1
        )
        assert outcomes["succeeded_rows_have_verified_videos"].passed
