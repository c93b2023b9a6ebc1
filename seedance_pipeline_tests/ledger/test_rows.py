"""The ledger's files: schema, hive partitions, and crash-safe replacement."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from seedance_pipeline.ledger import rows
from seedance_pipeline.state.store import PENDING, SUCCEEDED, RequestRecord


def record(i: int, status: str = SUCCEEDED) -> RequestRecord:
    return RequestRecord(request_id=f"r{i}", batch="b", catalog_row=i, provider="novita", model="seedance-v1-lite-i2v",
                         request={"prompt": "p", "image": "x.png"}, status=status, cost_usd=0.1, submitted_at=1.7e9,
                         error_message="waiting: daily spend cap" if status == PENDING else None)  # fmt: skip


def test_pandas_reads_every_batch_with_the_documented_columns(tmp_path: Path) -> None:
    rows.write_partition(tmp_path, "alpha", rows.ledger_table([record(1), record(2, PENDING)]))
    rows.write_partition(tmp_path, "beta", rows.ledger_table([record(3)]))
    ledger = pd.read_parquet(tmp_path)
    assert sorted(ledger.columns) == sorted(rows.COLUMNS)
    assert list(ledger["status"]) == ["succeeded", "pending", "succeeded"]
    assert str(ledger["submitted_at"].dtype) == "datetime64[us, UTC]"
    # Defaults of the model fill what the row left to them.
    assert set(ledger["resolution"]) == {"720p"} and set(ledger["duration_s"]) == {5}


def test_a_crash_mid_write_leaves_the_previous_version_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows.write_partition(tmp_path, "alpha", rows.ledger_table([record(1)]))

    def crash(table: object, where: object, **kwargs: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        rows.write_partition(tmp_path, "alpha", rows.ledger_table([record(1), record(2)]))
    monkeypatch.undo()
    ledger = pd.read_parquet(tmp_path)
    assert list(ledger["request_id"]) == ["r1"]
    assert [p.name for p in (tmp_path / "batch=alpha").iterdir()] == ["part-0.parquet"]  # no debris
