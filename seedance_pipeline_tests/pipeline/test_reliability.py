"""Reliability under provider faults: adaptive concurrency, budgets, nothing paid twice or lost."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pandas as pd
import pytest

from seedance_pipeline.catalog.refresh import refresh_catalog
from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer, Faults
from seedance_pipeline.ledger.rows import read_partition
from seedance_pipeline.ledger.write import write_batch_ledger
from seedance_pipeline.polling.tick import poll_tick, reconciliation_pending
from seedance_pipeline.providers import provider_names
from seedance_pipeline.settings import NO_CAP, PipelineSettings, settings_from
from seedance_pipeline.state.lifecycle import OPEN, Move, RequestStatus
from seedance_pipeline.submission.batch import submit_batch
from seedance_pipeline_tests.conftest import ImageFactory


def catalog_of(tmp_path: Path, make_image: ImageFactory, rows: list[dict]) -> Path:
    make_image(1280, 720, "JPEG", name="wide.jpg")
    path = tmp_path / "catalog.csv"
    pd.DataFrame(
        [{"image": "wide.jpg", "resolution": "480p", "prompt": "p"} | r for r in rows]
    ).to_csv(path, index=False)
    return path


def settle(settings: PipelineSettings, timeout_s: float = 90) -> None:
    """Submit and poll, as the sensor would, until nothing is open and no unknown outcome can
    still be reconciled."""
    store = settings.store()
    deadline = time.monotonic() + timeout_s
    while any(r.status in OPEN for r in store.records()) or reconciliation_pending(settings):
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
        settings = settings_from(data_dir=str(tmp_path / "data"), catalog=str(catalog), sandbox_url=emulator.url,
                                    max_in_flight={"novita": 8}, daily_budget_usd=NO_CAP)  # fmt: skip
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
    settings = settings_from(data_dir=str(tmp_path / "data"), catalog=str(catalog), sandbox_url=emulator.url,
                                daily_budget_usd=0.30)  # fmt: skip
    refresh_catalog(settings)
    store = settings.store()
    each = store.records()[0].cost_usd_estimated
    settle_deadline = time.monotonic() + 30
    while time.monotonic() < settle_deadline:
        submit_batch(settings, "default", ["modelark"])
        poll_tick(settings)
        if not store.records(statuses=["in_flight", "fetching", "submitting"]):
            break
    spent = store.spend()
    assert spent <= 0.30 + 1e-9
    done = store.counts().get("succeeded", 0)
    assert done == int(0.30 // each) and len(emulator.state.audit()) == done
    waiting = store.records(statuses=[RequestStatus.PENDING])
    assert waiting and all("spend cap $0.30" in (r.error_message or "") for r in waiting)
    ledger = read_partition(write_batch_ledger(settings, "default").path).to_pandas()
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
        settings = settings_from(
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
        outcomes = {o.name: o for o in ledger_checks(read_partition(ledger.path).to_pandas(), ledger.request_ids,
                                                      ledger.cost_usd, [])}  # fmt: skip
        assert (
            not outcomes["paid_videos_kept"].passed
            and outcomes["paid_videos_kept"].metadata["lost"] == 1
        )
        assert outcomes["succeeded_rows_have_verified_videos"].passed


def test_a_fault_storm_over_hundreds_of_requests_ends_terminal_classified_and_matching_the_audit(
    tmp_path: Path, make_image: ImageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARK_TIMEOUT_S", "2")  # ModelArk's reconciliation window closes sooner...
    monkeypatch.setattr(
        "seedance_pipeline.submission.reconcile.MARGIN_S", 1.0
    )  # no clock skew here
    monkeypatch.setattr(
        "seedance_pipeline.submission.reconcile.LATE_S", 8.0
    )  # late tasks come soon
    storm = Faults(rate_limit_burst=5, rate_limit_rate=0.08, server_error_rate=0.04, slow_s=0.02, drop_rate=0.03,
                   malformed_rate=0.03, fail_rate=0.05, expire_rate=0.05, output_reject_rate=0.05,
                   reject_rate=0.03)  # fmt: skip
    providers = ["novita", "aimlapi", "modelark", "segmind"]
    config = EmulatorConfig(
        queued_s=0.05, running_s=0.1, seed=7, max_in_flight={p: 40 for p in providers}
    )
    with EmulatorServer(config) as emulator:
        for provider in providers:
            emulator.state.set_faults(provider, dataclasses.replace(storm))
        rows = [{"provider": p, "seed": 1000 * i + n, "batch": f"b{n % 3}"} for i, p in enumerate(providers)
                for n in range(65)]  # fmt: skip
        catalog = catalog_of(tmp_path, make_image, rows)
        settings = settings_from(data_dir=str(tmp_path / "data"), catalog=str(catalog), sandbox_url=emulator.url,
                                    daily_budget_usd=NO_CAP, max_in_flight={p: 40 for p in providers},
                                    stale_submission_s=5)  # fmt: skip
        refresh_catalog(settings)
        settle(settings, timeout_s=240)

        ledger = pd.concat(
            read_partition(write_batch_ledger(settings, b).path).to_pandas()
            for b in ("b0", "b1", "b2")
        )
        assert len(ledger) == 260 and ledger["request_id"].is_unique
        assert set(ledger["status"]) <= {
            "succeeded",
            "failed",
            "expired",
            "unknown",
        }  # all terminal
        bad = ledger[ledger["status"] != "succeeded"]
        known_kinds = {"invalid_request", "content_rejected", "task_failed", "task_expired", "outcome_unknown",
                       "outcome_unknown_undecided",
                       "not_found", "transient", "rate_limited"}  # fmt: skip
        assert bad["error_kind"].notna().all() and set(bad["error_kind"]) <= known_kinds
        assert {"content_rejected", "task_failed", "task_expired"} <= set(bad["error_kind"])
        ok = ledger[ledger["status"] == "succeeded"]
        assert ok["video_sha256"].notna().all() and len(ok) > 150

        audit = emulator.state.audit()
        task_ids = [r.task_id for r in audit]
        assert len(task_ids) == len(set(task_ids))
        for provider in providers:
            made = {r.task_id for r in audit if r.provider == provider}
            rows_p = ledger[ledger["provider"] == provider]
            recorded = set(rows_p["task_id"].dropna())
            assert recorded <= made  # no phantom task in the ledger
            unknown = int((rows_p["status"] == "unknown").sum())
            if provider == "segmind":  # no task ids: one audited creation per succeeded row at most
                assert (rows_p["status"] == "succeeded").sum() <= len(made)
                continue
            # Every task the provider made is in the ledger, or is the one behind an `unknown` row.
            assert len(made - recorded) <= unknown, provider
        ark = ledger[ledger["provider"] == "modelark"]
        # ModelArk lists its tasks: each task it made for a lost answer was found and adopted, so
        # its audit and ledger match one for one; what stays unknown there made no task.
        assert set(ark["task_id"].dropna()) == {
            r.task_id for r in audit if r.provider == "modelark"
        }


def test_one_bad_record_does_not_starve_a_polling_pass(tmp_path: Path, make_image: ImageFactory,
                                                       emulator: EmulatorServer) -> None:  # fmt: skip
    catalog = catalog_of(tmp_path, make_image, [{"provider": "novita"}, {"provider": "segmind"}])
    settings = settings_from(
        data_dir=str(tmp_path / "data"), catalog=str(catalog), sandbox_url=emulator.url
    )
    refresh_catalog(settings)
    store = settings.store()
    segmind = store.records(provider="segmind")[0]
    # A synchronous provider's request in flight cannot be polled: its poll raises.
    assert store.claim(segmind.request_id, "segmind", 1, 0.0, sandbox=True) is None
    store.move(segmind.request_id, Move.TASK_CREATED, task_id="no-such-thing")
    submit_batch(settings, "default", ["novita"])
    time.sleep(0.5)
    poll_tick(settings)
    assert store.records(provider="novita")[0].status == "succeeded"
    assert store.get(segmind.request_id).status == "in_flight"  # type: ignore[union-attr]


def test_a_budget_stop_cancels_queued_tasks_where_the_provider_allows(
    tmp_path: Path, make_image: ImageFactory
) -> None:
    with EmulatorServer(EmulatorConfig(queued_s=30, running_s=1)) as emulator:
        rows = [{"provider": "modelark", "seed": i} for i in range(4)] + [
            {"provider": "novita", "seed": 9}
        ]
        catalog = catalog_of(tmp_path, make_image, rows)
        settings = settings_from(
            data_dir=str(tmp_path / "data"), catalog=str(catalog), sandbox_url=emulator.url
        )
        refresh_catalog(settings)
        submit_batch(settings, "default", ["modelark", "novita"])
        store = settings.store()
        each = store.records(provider="modelark")[0].cost_usd_estimated
        committed = store.spend()
        # The operator lowers today's cap below what is already committed: a budget stop.
        lowered = dataclasses.replace(settings, daily_budget_usd=committed - 2.5 * each)
        poll_tick(lowered)
        cancelled = store.records(statuses=["cancelled"])
        assert len(cancelled) == 3 and {r.provider for r in cancelled} == {
            "modelark"
        }  # Novita cannot cancel
        assert all(r.cost_usd == 0 and r.error_kind == "budget_stop" for r in cancelled)
        assert store.spend() <= lowered.daily_budget_usd + 1e-9  # type: ignore[operator]
        at_provider = {t.id: t.status(time.time()).value for t in emulator.state.tasks("modelark")}
        assert sorted(at_provider.values()) == ["cancelled", "cancelled", "cancelled", "queued"]
