"""What a batch's ledger says at a glance, computed from the partition as readers see it (read back,
not from the rows we meant to write): counts by status, one line per provider, and the failures
grouped by kind with one example each. Used by the ledger's metadata and the batch report."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

EXAMPLE_CHARS = 240  # long enough for a provider's reason, short enough for a table cell


@dataclass(frozen=True)
class ProviderSummary:
    provider: str
    rows: int
    succeeded: int
    failed: int
    rejected: int
    other: int  # pending, unknown, expired, cancelled
    cost_usd: float
    cost_usd_estimated: float


@dataclass(frozen=True)
class FailureKind:
    error_kind: str
    rows: int
    statuses: str  # e.g. "failed" or "expired, failed"
    example_image_id: str
    example_message: str


def status_counts(ledger: pd.DataFrame) -> dict[str, int]:
    return {str(s): int(n) for s, n in ledger["status"].value_counts().sort_index().items()}


def provider_summaries(ledger: pd.DataFrame) -> list[ProviderSummary]:
    out = []
    for provider, rows in ledger.groupby("provider", sort=True, dropna=False):
        status = rows["status"]
        succeeded = int((status == "succeeded").sum())
        failed = int((status == "failed").sum())
        rejected = int((status == "rejected").sum())
        out.append(
            ProviderSummary(
                provider=str(provider),
                rows=len(rows),
                succeeded=succeeded,
                failed=failed,
                rejected=rejected,
                other=len(rows) - succeeded - failed - rejected,
                cost_usd=round(float(rows["cost_usd"].fillna(0.0).sum()), 4),
                cost_usd_estimated=round(float(rows["cost_usd_estimated"].fillna(0.0).sum()), 4),
            )
        )
    return out


def problem_rows(ledger: pd.DataFrame) -> pd.Series:
    """Rows that did not end with a kept video: anything but success, and successes whose video
    was lost (`error_kind = video_lost`)."""
    return (ledger["status"] != "succeeded") | ledger["error_kind"].notna()


def failures_by_kind(ledger: pd.DataFrame) -> list[FailureKind]:
    """Problem rows grouped by error kind (the status where there is no kind, e.g. `pending`),
    most frequent first, each with the first row's message as its example. Messages are shown as
    the ledger holds them: already free of secrets (the `no_secrets` check guards that)."""
    problems = ledger[problem_rows(ledger)].sort_values("catalog_row", kind="stable")
    if problems.empty:
        return []
    kinds = problems["error_kind"].fillna(problems["status"]).astype(str)
    out = []
    for kind, rows in problems.groupby(kinds, sort=False):
        first = rows.iloc[0]
        message = first["error_message"]
        message = "" if pd.isna(message) else str(message)
        if len(message) > EXAMPLE_CHARS:
            message = message[: EXAMPLE_CHARS - 1] + "…"
        out.append(
            FailureKind(
                error_kind=str(kind),
                rows=len(rows),
                statuses=", ".join(sorted(set(rows["status"].astype(str)))),
                example_image_id="" if pd.isna(first["image_id"]) else str(first["image_id"]),
                example_message=message or "(no message recorded)",
            )
        )
    return sorted(out, key=lambda f: (-f.rows, f.error_kind))
