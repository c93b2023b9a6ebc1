"""What the ledger's asset checks verify, as plain functions over the partition read back."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from seedance_pipeline.ledger.summary import failure_share
from seedance_pipeline.providers import ErrorKind
from seedance_pipeline.storage.videos import file_sha256

CHECK_DESCRIPTIONS = {
    "one_row_per_request": "Every request of the batch appears exactly once.",
    "succeeded_rows_have_verified_videos": "Every succeeded row whose video was kept has a durable copy whose sha256 matches.",
    "paid_videos_kept": "No succeeded (paid) video was lost: its URL expired or broke before it was copied.",
    "costs_add_up": "Costs are non-negative and add up to the materialisation's reported total.",
    "no_secrets": "No API key value appears in any column.",
    "videos_pass_qc": "Every kept video passes QC (a WARN lists those whose qc_status is fail; QC never changes a status).",
    "no_failed_rows": "No row failed, expired or lost its video: WARN when any did (see the "
    "`failures` table; `retry_job` retries them), ERROR when more than the allowed share of the "
    "rows sent did (`SEEDANCE_MAX_FAILURE_SHARE`).",
}
QC_EXAMPLES = 50


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    warn_only: bool = False  # a failure that deserves a look, not a stop (WARN severity)


def ledger_checks(
    written: pd.DataFrame, expected_ids: set[str], reported_total_usd: float, secrets: Sequence[str],
    max_failure_share: float = 1.0,
) -> list[CheckOutcome]:  # fmt: skip
    ids = list(written["request_id"])
    succeeded = written["status"] == "succeeded"
    lost_mask = succeeded & (written["error_kind"] == ErrorKind.VIDEO_LOST)
    lost, kept = written[lost_mask], written[succeeded & ~lost_mask]
    unverified = [
        row.request_id
        for row in kept.itertuples()
        if not row.video_uri or file_sha256(str(row.video_uri)) != row.video_sha256
    ]
    costs = written["cost_usd"].fillna(0.0)
    pattern = "|".join(re.escape(k) for k in secrets)
    leaks = [
        c for c in written.columns if pattern and written[c].astype(str).str.contains(pattern).any()
    ]
    return [
        CheckOutcome("one_row_per_request", len(ids) == len(set(ids)) and set(ids) == expected_ids,
                     {"rows": len(ids), "distinct": len(set(ids)), "requests": len(expected_ids)}),
        CheckOutcome("succeeded_rows_have_verified_videos", not unverified,
                     {"checked": len(kept), "unverified": unverified[:20]}),
        CheckOutcome("paid_videos_kept", lost.empty,
                     {"lost": len(lost), "examples": [{"request_id": r.request_id, "reason": r.error_message}
                                                      for r in lost.head(10).itertuples()]}),
        CheckOutcome("costs_add_up", bool((costs >= 0).all()) and abs(float(costs.sum()) - reported_total_usd) < 1e-6,
                     {"ledger_total_usd": float(costs.sum()), "reported_total_usd": reported_total_usd}),
        CheckOutcome("no_secrets", not leaks, {"keys_checked": len(secrets), "columns_with_a_key": leaks}),
        qc_check(written),
        failure_outcome(written, max_failure_share),
    ]  # fmt: skip


def qc_check(written: pd.DataFrame) -> CheckOutcome:
    """The kept videos whose QC verdict is `fail`, listed with their reasons (the first
    QC_EXAMPLES of them; the ledger has every one)."""
    if "qc_status" not in written:  # a ledger from before QC: nothing measured, nothing failed
        return CheckOutcome("videos_pass_qc", True, {"measured": 0, "failed": 0, "failures": []},
                            warn_only=True)  # fmt: skip
    failed = written[written["qc_status"] == "fail"]
    measured = int(written["qc_status"].notna().sum())
    listed = [
        {"request_id": r.request_id, "image_id": r.image_id, "reasons": r.qc_reasons}
        for r in failed.head(QC_EXAMPLES).itertuples()
    ]
    return CheckOutcome("videos_pass_qc", failed.empty,
                        {"measured": measured, "failed": len(failed), "failures": listed},
                        warn_only=True)  # fmt: skip


def failure_outcome(written: pd.DataFrame, max_failure_share: float) -> CheckOutcome:
    """`no_failed_rows`: passes with none; a warning up to `max_failure_share` of the rows sent; an
    error above it."""
    failed, sent = failure_share(written)
    share = failed / sent if sent else 0.0
    return CheckOutcome(
        "no_failed_rows",
        failed == 0,
        {"failed_rows": failed, "rows_sent": sent, "failure_share": round(share, 4),
         "max_failure_share": max_failure_share},
        warn_only=share <= max_failure_share,
    )  # fmt: skip
