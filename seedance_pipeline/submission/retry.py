"""Retries: a new attempt of requests whose provider ended them (failed, expired, cancelled).

A retry moves a request back to `pending` (`Move.RETRY`, a compare-and-set, so two retries at once
make one new attempt) after archiving the attempt as it ended; the usual submission path then sends
it, claiming a slot and budget like any pending request. So a retry never pays twice for one
attempt, and spend caps count every attempt's cost (`claims.spend`). An `unknown` outcome is never
retried: its task may exist and bill, so reconciliation or an operator (`resolve-unknown`) decides
first; nor is a request an operator abandoned after an unknown outcome.

`retry_requests` takes the selection (batch, statuses, any `where`) and how to reseed, so another
kind of retry reuses it with its own selection and move: `qc_retry_requests` (a kept video that
failed QC: `Move.QC_RETRY`, a new random seed, at most `SEEDANCE_QC_MAX_ATTEMPTS` attempts).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from seedance_pipeline.providers import ErrorKind
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.claims import start_of_utc_day
from seedance_pipeline.state.lifecycle import RETRYABLE, Move, RequestStatus
from seedance_pipeline.state.store import RequestRecord

DEFAULT_STATUSES = (RequestStatus.FAILED, RequestStatus.EXPIRED)
# A failed request whose last outcome was unknown (an operator abandoned it): its task may exist.
_UNKNOWN_KINDS = (ErrorKind.OUTCOME_UNKNOWN, ErrorKind.OUTCOME_UNKNOWN_UNDECIDED)


def parse_statuses(names: Iterable[str]) -> tuple[RequestStatus, ...]:
    """Statuses as a user names them (`failed,expired`); ValueError names those a retry cannot
    start from."""
    wanted = [n.strip().lower() for name in names for n in name.split(",") if n.strip()]
    allowed = {str(s) for s in RETRYABLE}
    refused = [n for n in wanted if n not in allowed]
    if refused or not wanted:
        hint = " (unknown outcomes: reconcile, or `seedance-pipeline resolve-unknown`)"
        raise ValueError(
            f"a retry starts from {', '.join(sorted(allowed))}, not {', '.join(refused) or 'nothing'}"
            + (hint if "unknown" in refused else "")
        )
    return tuple(dict.fromkeys(RequestStatus(n) for n in wanted))


def random_seed(record: RequestRecord) -> bool:
    """The request let the provider pick its seed, so its next attempt gets a new one anyway."""
    return record.request.get("seed") in (None, -1)


@dataclass
class RetryReport:
    """What a retry did: the requests sent back to pending, and those it left, and why."""

    retried: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)  # of the retried requests
    unknown: int = 0  # outcome unknown: not retried
    abandoned: int = 0  # abandoned after an unknown outcome: not retried
    over_budget: int = 0  # left as they were: their estimate would exceed a spend cap
    lost_race: int = 0  # retried by someone else meanwhile
    at_max_attempts: int = 0  # QC retry: failed QC but already made the most attempts allowed

    def lines(self) -> list[str]:
        out = [f"retried: {len(self.retried)} requests"
               + (f" of {', '.join(self.batches)}" if self.batches else "")]  # fmt: skip
        if self.over_budget:
            out.append(f"not retried: {self.over_budget} would exceed a spend cap (raise the cap "
                       "or wait for tomorrow's budget)")  # fmt: skip
        if self.unknown:
            out.append(f"not retried: {self.unknown} with an unknown outcome (their task may exist "
                       "and bill): reconcile first, see `seedance-pipeline resolve-unknown`")  # fmt: skip
        if self.abandoned:
            out.append(f"not retried: {self.abandoned} abandoned by an operator after an unknown "
                       "outcome")  # fmt: skip
        if self.at_max_attempts:
            out.append(f"not retried: {self.at_max_attempts} failed QC but reached the most "
                       "attempts allowed (SEEDANCE_QC_MAX_ATTEMPTS)")  # fmt: skip
        if self.lost_race:
            out.append(f"not retried: {self.lost_race} were retried meanwhile by another run")
        return out


def retry_requests(
    settings: PipelineSettings,
    batch: str | None = None,
    statuses: Sequence[RequestStatus] = DEFAULT_STATUSES,
    *,
    where: Callable[[RequestRecord], bool] | None = None,
    reseed: Callable[[RequestRecord], int | None] | None = None,
    move: Move = Move.RETRY,
    run_id: str | None = None,
) -> RetryReport:
    """Send the requests of `batch` (None: every batch) in `statuses`, and matching `where`, back
    to pending as new attempts, in catalog order while their estimates fit every spend cap
    (daily, the batch's, and the run's for `run_id`). `reseed` gives a request's next seed (None:
    keep its request as it is, so a random seed stays random)."""
    sources = [s for s in statuses if s in move.sources]
    if len(sources) != len(statuses):
        raise ValueError(
            f"{move.name} starts from {', '.join(move.sources)}, not {', '.join(statuses)}"
        )
    store = settings.store()
    report = RetryReport()
    report.unknown = len(store.records(batch=batch, statuses=[RequestStatus.UNKNOWN]))
    day = start_of_utc_day()
    headroom: dict[tuple[str, str | None], float] = {}  # (cap, its batch) → money left

    def fits(record: RequestRecord) -> bool:
        caps = settings.spend_caps(record.batch, run_id, day)
        keys = [(cap.label, cap.batch) for cap in caps]
        for cap, key in zip(caps, keys, strict=True):
            if key not in headroom:
                spent = store.spend(since=cap.since or 0.0, batch=cap.batch, run_id=cap.run_id)
                headroom[key] = cap.limit_usd - spent
        if any(headroom[k] < record.cost_usd_estimated - 1e-9 for k in keys):
            return False
        for key in keys:
            headroom[key] -= record.cost_usd_estimated
        return True

    for record in store.records(batch=batch, statuses=sources):
        if where is not None and not where(record):
            continue
        if record.error_kind in _UNKNOWN_KINDS:
            report.abandoned += 1
            continue
        if not fits(record):
            report.over_budget += 1
            continue
        seed = reseed(record) if reseed is not None else None
        request = None if seed is None else {**record.request, "seed": seed}
        if store.new_attempt(record.request_id, move, request):
            report.retried.append(record.request_id)
            if record.batch not in report.batches:
                report.batches.append(record.batch)
        else:
            report.lost_race += 1
    return report


MAX_SEED = 2**31 - 1  # every provider accepts a seed in [0, 2^31 - 1]


def new_seed(record: RequestRecord) -> int:
    """A fresh random seed, recorded in the request so the ledger's seed is the one asked for."""
    old = record.request.get("seed")
    while (seed := secrets.randbelow(MAX_SEED + 1)) == old:
        pass
    return seed


def qc_retry_requests(
    settings: PipelineSettings, batch: str | None = None, *, run_id: str | None = None
) -> RetryReport:
    """New attempts, each with a new seed, of the succeeded requests of `batch` whose kept video
    failed QC (`qc_status = fail`), within the spend caps, while a request has made fewer than
    `settings.qc.max_attempts` attempts (a prompt that keeps failing stops costing money)."""
    limit = settings.qc.max_attempts
    at_max = 0

    def qc_failed_under_limit(record: RequestRecord) -> bool:
        nonlocal at_max
        if record.qc_status != "fail":
            return False
        if record.attempts_before + 1 >= limit:
            at_max += 1
            return False
        return True

    report = retry_requests(
        settings, batch, (RequestStatus.SUCCEEDED,), where=qc_failed_under_limit,
        reseed=new_seed, move=Move.QC_RETRY, run_id=run_id,
    )  # fmt: skip
    report.at_max_attempts = at_max
    return report
