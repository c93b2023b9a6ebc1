"""A request's lifecycle in one screen: its statuses, the moves allowed between them, named moves.

The store checks every status change against `ALLOWED` before it writes anything, so a move that
the code never meant to make fails loudly instead of silently rewriting a request's history.
"""

from __future__ import annotations

import enum


class RequestStatus(enum.StrEnum):
    PENDING = "pending"  # valid, not yet sent
    SUBMITTING = "submitting"  # intent recorded; the create call is under way
    IN_FLIGHT = "in_flight"  # the provider has a task id for it
    FETCHING = "fetching"  # the provider says succeeded; our copy of the video is not made yet
    SUCCEEDED = "succeeded"  # paid for; the video is kept (or recorded lost: see error_kind)
    FAILED = "failed"  # refused by the provider, failed there, or abandoned by an operator
    REJECTED = "rejected"  # refused by validation, never sent
    EXPIRED = "expired"  # the provider gave up on the task
    CANCELLED = "cancelled"  # cancelled at the provider (a budget stop, or by someone else)
    UNKNOWN = "unknown"  # the create call's outcome is unknown: reconciled, or an operator decides


_S = RequestStatus

OPEN = (_S.PENDING, _S.SUBMITTING, _S.IN_FLIGHT, _S.FETCHING)
ACTIVE = (_S.SUBMITTING, _S.IN_FLIGHT, _S.FETCHING)  # not finished on our side
# What counts against a provider's limit of tasks in flight: a task it reports succeeded (fetching:
# our copy of the video is under way) no longer holds one of its slots, so the slot is refilled
# without waiting for the download.
AT_PROVIDER = (_S.SUBMITTING, _S.IN_FLIGHT)
# Nothing more happens to these unaided (unknown waits for reconciliation or an operator).
TERMINAL = (_S.SUCCEEDED, _S.FAILED, _S.REJECTED, _S.EXPIRED, _S.CANCELLED, _S.UNKNOWN)
SETTLED = (_S.SUCCEEDED, _S.FAILED, _S.REJECTED, _S.EXPIRED, _S.CANCELLED)  # their cost is known
RESERVED = (*ACTIVE, _S.UNKNOWN)  # their estimate counts against budgets

# Every status change the pipeline makes; None is "not in the store yet" (the catalog's insert).
ALLOWED: dict[RequestStatus | None, frozenset[RequestStatus]] = {
    None: frozenset({_S.PENDING, _S.REJECTED}),
    _S.PENDING: frozenset({_S.SUBMITTING}),
    _S.SUBMITTING: frozenset({_S.IN_FLIGHT, _S.SUCCEEDED, _S.PENDING, _S.FAILED, _S.UNKNOWN}),
    _S.IN_FLIGHT: frozenset({_S.FETCHING, _S.FAILED, _S.EXPIRED, _S.CANCELLED, _S.UNKNOWN}),
    _S.FETCHING: frozenset({_S.FETCHING, _S.SUCCEEDED, _S.FAILED, _S.EXPIRED, _S.CANCELLED}),
    _S.UNKNOWN: frozenset({_S.IN_FLIGHT, _S.PENDING, _S.FAILED, _S.UNKNOWN}),
    # A QC retry: a kept video failed QC, so a new attempt with a new seed (`Move.QC_RETRY`).
    # A QC retry's video worse than an earlier attempt's: the best is restored (`Move.KEEP_BEST`).
    _S.SUCCEEDED: frozenset({_S.PENDING, _S.SUCCEEDED}),
    # A retry: a new attempt of the same request (the finished one is archived in `attempts`).
    _S.FAILED: frozenset({_S.PENDING}),
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset({_S.PENDING}),
    _S.CANCELLED: frozenset({_S.PENDING}),
}
# What a retry may start from: the provider ended the attempt and billed what it billed. Never
# `unknown`: a task may exist and bill, so reconciliation or an operator decides first.
RETRYABLE = (_S.FAILED, _S.EXPIRED, _S.CANCELLED)


class IllegalMove(ValueError):
    """A status change outside `ALLOWED`: a bug in the caller, refused before anything is written."""


def check_move(sources: tuple[RequestStatus | None, ...], target: RequestStatus) -> None:
    """Raise IllegalMove unless the table allows `target` from every one of `sources`."""
    refused = [s for s in sources if target not in ALLOWED.get(s, frozenset())]
    if None in refused:
        entries = " or ".join(sorted(ALLOWED[None]))
        raise IllegalMove(f"a request may enter the store as {entries}, not {target}")
    if refused:
        shown = ", ".join(str(s) for s in refused)
        raise IllegalMove(f"a request may not move from {shown} to {target}")


@enum.unique
class Move(enum.Enum):
    """Named status changes: where each may start, where it goes, the detail its transition row
    records. `StateStore.move` makes them; TASK_ENDED's target follows the task's own status."""

    sources: tuple[RequestStatus, ...]
    targets: tuple[RequestStatus, ...]
    detail: str

    # name = (from, to, detail of the transition row)
    CLAIM = ((_S.PENDING,), (_S.SUBMITTING,), "claimed")
    TASK_CREATED = ((_S.SUBMITTING,), (_S.IN_FLIGHT,), "task created")
    DELIVERED_INLINE = ((_S.SUBMITTING,), (_S.SUCCEEDED,), "video kept")  # synchronous provider
    INLINE_VIDEO_UNREADABLE = ((_S.SUBMITTING,), (_S.SUCCEEDED,), "video unreadable")
    BACK_TO_PENDING = ((_S.SUBMITTING,), (_S.PENDING,), "back to pending")  # account refusal
    REFUSED = ((_S.SUBMITTING,), (_S.FAILED,), "refused by the provider")
    OUTCOME_UNKNOWN = ((_S.SUBMITTING,), (_S.UNKNOWN,), "create outcome unknown")
    STALE_SUBMISSION = ((_S.SUBMITTING,), (_S.UNKNOWN,),
                        "submission outcome unknown: the submitting process stopped mid-call")  # fmt: skip
    PROVIDER_SUCCEEDED = ((_S.IN_FLIGHT, _S.FETCHING), (_S.FETCHING,), "provider reports success")
    KEEP_VIDEO = ((_S.FETCHING,), (_S.SUCCEEDED,), "video kept")
    VIDEO_LOST = ((_S.FETCHING,), (_S.SUCCEEDED,), "video lost")
    TASK_ENDED = ((_S.IN_FLIGHT, _S.FETCHING), (_S.FAILED, _S.EXPIRED, _S.CANCELLED), "task ended")
    NOT_FOUND = ((_S.IN_FLIGHT,), (_S.UNKNOWN,), "task not found at the provider")
    BUDGET_CANCEL = ((_S.IN_FLIGHT,), (_S.CANCELLED,), "budget stop: cancelled while queued")
    GAVE_UP = ((_S.IN_FLIGHT,), (_S.UNKNOWN,), "given up: it may have run and billed")
    RECONCILED = ((_S.UNKNOWN,), (_S.IN_FLIGHT,), "reconciled: found in the provider's task list")
    RECONCILE_UNDECIDED = ((_S.UNKNOWN,), (_S.UNKNOWN,), "reconciliation could not decide")
    OPERATOR_ADOPT = ((_S.UNKNOWN,), (_S.IN_FLIGHT,), "operator: adopted task")
    OPERATOR_RESUBMIT = ((_S.UNKNOWN,), (_S.PENDING,), "operator: resubmit")
    OPERATOR_ABANDON = ((_S.UNKNOWN,), (_S.FAILED,), "operator: abandoned")
    RETRY = (RETRYABLE, (_S.PENDING,), "retry: a new attempt")  # the last one kept in `attempts`
    # Only when the kept video's qc_status is fail (`StateStore.new_attempt` checks it).
    QC_RETRY = ((_S.SUCCEEDED,), (_S.PENDING,), "qc retry: a new attempt with a new seed")
    KEEP_BEST = ((_S.SUCCEEDED,), (_S.SUCCEEDED,), "best attempt restored")

    def __init__(
        self, sources: tuple[RequestStatus, ...], targets: tuple[RequestStatus, ...], detail: str
    ) -> None:
        self.sources, self.targets, self.detail = sources, targets, detail

    def target(self, to: RequestStatus | None = None) -> RequestStatus:
        """Where this move goes: its one target, or `to` when it has several (TASK_ENDED)."""
        if to is None and len(self.targets) == 1:
            return self.targets[0]
        if to is None or to not in self.targets:
            raise IllegalMove(f"{self.name} goes to one of {', '.join(self.targets)}, not {to}")
        return to
