"""What a batch's ledger says at a glance, computed from the partition as readers see it (read back,
not from the rows we meant to write): counts by status, one line per provider, and the failures
grouped by kind with one example each. Used by the ledger's metadata and the batch report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


FAILED = ("failed", "expired")  # with lost videos: what the `no_failed_rows` check counts
FAILURE_TABLE_ROWS = 50  # rows shown in the ledger's failure table; the rest are counted


def failed_rows(ledger: pd.DataFrame) -> pd.Series:
    """Rows the provider failed or expired, and paid videos that were lost: what a retry is for."""
    return ledger["status"].isin(FAILED) | (ledger["error_kind"] == "video_lost")


def failure_share(ledger: pd.DataFrame) -> tuple[int, int]:
    """(failed rows, rows sent to a provider): rejected rows never were, and are not counted."""
    sent = ledger["status"] != "rejected"
    return int((failed_rows(ledger) & sent).sum()), int(sent.sum())


def failure_table(ledger: pd.DataFrame, limit: int = FAILURE_TABLE_ROWS) -> str:
    """Every row that did not end with a kept video and is not waiting (failed, expired, lost,
    rejected, cancelled, unknown), one line each in catalog order, as a Markdown table: the first
    `limit` rows, then how many more. Messages as the ledger holds them (no secrets: the
    `no_secrets` check guards that), on one line, cut at EXAMPLE_CHARS."""
    shown = problem_rows(ledger) & (ledger["status"] != "pending")
    rows = ledger[shown].sort_values("catalog_row", kind="stable")
    if rows.empty:
        return "No failed rows."
    lines = ["| image id | provider | status | error kind | attempts | message |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for row in rows.head(limit).itertuples():
        attempts = getattr(row, "attempts", None)
        cells = [row.image_id, row.provider, row.status, row.error_kind,
                 None if attempts is None or pd.isna(attempts) else int(attempts),
                 _one_line(row.error_message)]  # fmt: skip
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if len(rows) > limit:
        lines.append(
            f"\n… and {len(rows) - limit} more rows ({len(rows)} in all); the ledger has them all."
        )
    return "\n".join(lines)


def _one_line(message: object) -> str:
    text = "" if _missing(message) else str(message)
    text = " ".join(text.split())
    return text[: EXAMPLE_CHARS - 1] + "…" if len(text) > EXAMPLE_CHARS else text


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _cell(value: object) -> str:
    if _missing(value):
        return ""
    return str(value).replace("\\", "\\\\").replace("|", "\\|")


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


def qc_counts(ledger: pd.DataFrame) -> dict[str, int]:
    """Kept videos by QC verdict (pass, warn, fail; `unmeasured` for kept videos without one)."""
    kept = ledger[(ledger["status"] == "succeeded") & ledger["video_uri"].notna()]
    return {
        str(s): int(n)
        for s, n in kept["qc_status"].fillna("unmeasured").value_counts().sort_index().items()
    }


def cost_per_passing_clip(ledger: pd.DataFrame) -> float | None:
    """The cost of every row (each attempt paid, whatever its verdict) over the clips that pass
    QC: what a dataset costs per usable clip. None when no clip passes."""
    passing = int((ledger["qc_status"] == "pass").sum())
    # Every attempt of a retried request was paid too (`total_cost_usd`), not only the kept one.
    cost = ledger["total_cost_usd"] if "total_cost_usd" in ledger else ledger["cost_usd"]
    total = float(cost.fillna(0.0).sum())
    return round(total / passing, 6) if passing else None
