"""QC verdicts in the state store (SQLite and PostgreSQL): kept with the move that keeps the video,
selectable for a retry, and written to the ledger by both of its readers (ADBC on a SQLite file,
SQLAlchemy otherwise)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from seedance_pipeline.ledger.rows import partition_path, read_partition, write_store_ledger
from seedance_pipeline.providers.models import GenerationRequest
from seedance_pipeline.qc import QC_COLUMNS, QcResult
from seedance_pipeline.state.lifecycle import Move, RequestStatus
from seedance_pipeline.state.store import RequestRecord, StateStore
from seedance_pipeline_tests.state.stored import insert_as_is

FAILED = QcResult("fail", "100% of frames black; frozen: 100% of sampled frames unchanged",
                  qc_frames=121, qc_audio=False, qc_black_share=1.0, qc_motion=0.0,
                  qc_frozen_share=1.0, qc_first_psnr=5.7, qc_first_ssim=0.0001)  # fmt: skip
PASSED = QcResult("pass", None, qc_frames=97, qc_audio=True, qc_black_share=0.0, qc_motion=6.6,
                  qc_frozen_share=0.0, qc_first_psnr=47.8, qc_first_ssim=0.999,
                  qc_last_psnr=49.8, qc_last_ssim=0.997)  # fmt: skip


@pytest.fixture
def store(state_url: str) -> Iterator[StateStore]:
    store = StateStore(state_url)
    yield store
    store.engine.dispose()


def kept(
    i: int, status: RequestStatus = RequestStatus.SUCCEEDED, **values: object
) -> RequestRecord:
    request = GenerationRequest(provider="modelark", model="seedance-1-0-pro-250528",
                                image=f"/images/{i}.png", prompt=f"prompt {i}")  # fmt: skip
    return RequestRecord(request_id=f"q{i}", batch="b", catalog_row=i, provider="modelark",
                         model=request.model, request=dataclasses.asdict(request), status=status,
                         video_uri=f"/videos/q{i}.mp4", cost_usd=0.1, **values)  # type: ignore[arg-type]  # fmt: skip


def test_the_move_that_keeps_a_video_records_its_verdict(store: StateStore) -> None:
    insert_as_is(store, [kept(1, RequestStatus.FETCHING)])
    assert store.move("q1", Move.KEEP_VIDEO, **FAILED.columns(), video_uri="/videos/q1.mp4")
    record = store.get("q1")
    assert record is not None and record.status == RequestStatus.SUCCEEDED  # never changed by QC
    assert {c: getattr(record, c) for c in QC_COLUMNS} == pytest.approx(FAILED.columns())


def test_failed_videos_are_selectable_for_a_retry(store: StateStore) -> None:
    insert_as_is(store, [kept(1, **PASSED.columns()), kept(2, **FAILED.columns()), kept(3),
                         kept(4, RequestStatus.FAILED, qc_status="fail")])  # fmt: skip
    assert [r.request_id for r in store.qc_failures()] == ["q2"]
    assert [r.request_id for r in store.qc_failures(batch="b")] == ["q2"]
    assert store.qc_failures(batch="other") == []


def test_the_ledger_carries_the_qc_columns_from_every_backend(
    store: StateStore, tmp_path: Path
) -> None:
    insert_as_is(store, [kept(1, **PASSED.columns()), kept(2, **FAILED.columns()), kept(3)])
    write_store_ledger(store, tmp_path / "ledger", "b")
    ledger = read_partition(partition_path(tmp_path / "ledger", "b"))
    column = {name: ledger.column(name).to_pylist() for name in QC_COLUMNS}
    assert column["qc_status"] == ["pass", "fail", None]
    assert column["qc_frames"] == [97, 121, None] and column["qc_audio"] == [True, False, None]
    assert column["qc_last_ssim"] == [pytest.approx(0.997), None, None]
    assert column["qc_reasons"] == [None, FAILED.qc_reasons, None]
