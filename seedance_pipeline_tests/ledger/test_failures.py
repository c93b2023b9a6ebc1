"""What the ledger says about failed rows: the `no_failed_rows` check's severity and the per-row
failure table, over ledgers built as the partition is read back."""

from __future__ import annotations

import pandas as pd
import pytest

from seedance_pipeline.ledger.checks import failure_outcome
from seedance_pipeline.ledger.summary import failure_table
from seedance_pipeline.settings import settings_from


def ledger(statuses: list[str], kinds: list[str | None] | None = None) -> pd.DataFrame:
    kinds = kinds or [None] * len(statuses)
    return pd.DataFrame({
        "catalog_row": range(len(statuses)), "image_id": [f"img{i}" for i in range(len(statuses))],
        "provider": "novita", "status": statuses, "error_kind": kinds, "attempts": 1,
        "error_message": [None if s == "succeeded" else f"why {i} | piped\nline"
                          for i, s in enumerate(statuses)],
    })  # fmt: skip


@pytest.mark.parametrize(
    ("statuses", "kinds", "passed", "warn_only"),
    [
        (["succeeded"] * 4 + ["rejected"], None, True, True),
        (["succeeded"] * 4 + ["failed"], None, False, True),  # 1 of 5: a warning
        (["succeeded"] * 3 + ["expired", "failed"], None, False, False),  # 2 of 5: an error
        (
            ["succeeded"] * 4 + ["failed", "rejected", "rejected"],
            None,
            False,
            True,
        ),  # rejected: not sent
        (["succeeded"] * 5, [None] * 4 + ["video_lost"], False, True),  # a paid video lost
    ],
)
def test_failed_rows_warn_and_fail_above_the_allowed_share(
    statuses: list[str], kinds: list[str | None] | None, passed: bool, warn_only: bool
) -> None:
    outcome = failure_outcome(ledger(statuses, kinds), max_failure_share=0.2)
    assert (outcome.passed, outcome.warn_only) == (passed, warn_only)


def test_the_failure_table_has_a_line_per_failed_row_and_counts_the_rest() -> None:
    rows = ledger(["failed", "succeeded", "expired", "pending", "rejected", "failed"])
    table = failure_table(rows, limit=3).splitlines()
    body = [line for line in table[2:] if line.startswith("|")]
    assert [line.split(" | ")[0] for line in body] == ["| img0", "| img2", "| img4"]
    assert r"why 0 \| piped line" in body[0]  # one line, its pipe escaped
    assert table[-1] == "… and 1 more rows (4 in all); the ledger has them all."
    assert failure_table(ledger(["succeeded", "pending"])) == "No failed rows."


def test_the_failure_share_is_a_setting_between_0_and_1() -> None:
    assert settings_from({}).max_failure_share == 0.2
    assert settings_from({"SEEDANCE_MAX_FAILURE_SHARE": "0.5"}).max_failure_share == 0.5
    with pytest.raises(ValueError, match="SEEDANCE_MAX_FAILURE_SHARE"):
        settings_from({"SEEDANCE_MAX_FAILURE_SHARE": "lots"})
    with pytest.raises(ValueError, match="share from 0 to 1"):
        settings_from({"SEEDANCE_MAX_FAILURE_SHARE": "1.5"})
