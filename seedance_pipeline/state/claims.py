"""Claims of provider capacity and money: lock rows, limits of tasks in flight, spend caps.

A claim serialises on its provider's lock row (a row lock on PostgreSQL, the write lock on SQLite),
so two processes never both take a provider's last slot; a claim checked against spend caps also
takes the budgets' lock row, since caps span providers. `why_wait`, `lock_provider` and the other
functions taking a connection run inside the caller's transaction; on PostgreSQL a claim is instead
one round trip built from `TAKE_PROVIDER_LOCK`, `TAKE_BUDGET_LOCK`, `figures` and `fits`
(`store._claim_pipeline`). Both say why a claim waits with `reason_to_wait`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from seedance_pipeline.state.lifecycle import AT_PROVIDER, RESERVED, SETTLED
from seedance_pipeline.state.schema import (
    BUDGET_LOCK,
    attempts_table,
    provider_locks_table,
    requests_table,
)


@dataclass(frozen=True)
class SpendCap:
    """A budget: money committed (actual cost of finished requests plus the reservation of those in
    flight) within its scope may not exceed `limit_usd`."""

    label: str  # "daily", "batch", "run"
    limit_usd: float
    since: float | None = None
    batch: str | None = None
    run_id: str | None = None


def start_of_utc_day(now: float | None = None) -> float:
    """Where the daily cap's day begins (UTC midnight, whatever the machine's time zone)."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


# Statements run once or twice per submission are built once, with bound parameters: building a
# statement in SQLAlchemy costs as much as running it on SQLite (BENCHMARKS.md, submission).
_R, _L = requests_table.c, provider_locks_table.c


def _among(status: sa.ColumnElement[str], statuses: Iterable[str]) -> sa.ColumnElement[bool]:
    """`status IN (…)` with a bound value per status rather than one expanding parameter, so a
    statement compiles once to its final SQL (`store._claim_pipeline` writes its constants in)."""
    return status.in_([sa.literal(str(s), type_=sa.String) for s in statuses])


_AT_PROVIDER_COUNT = sa.select(sa.func.count()).where(
    _R.provider == sa.bindparam("provider"), _among(_R.status, AT_PROVIDER)
)
_LOCK = (
    sa.update(provider_locks_table)
    .where(_L.provider == sa.bindparam("lock_provider"))
    .values(claims=_L.claims + 1)
)
_LOCK_RETURNING_LIMIT = _LOCK.returning(_L.current_limit)
_LIMIT = sa.select(_L.current_limit).where(_L.provider == sa.bindparam("lock_provider"))
# Spend and cap are compared with this slack, so float sums of cents never refuse an exact fit.
SLACK_USD = 1e-9


def why_wait(
    conn: Connection,
    provider: str,
    max_in_flight: int,
    reservation_usd: float,
    caps: Sequence[SpendCap],
) -> str | None:
    """Take the provider's lock row (and the budgets' one, with caps) and tell whether one more
    request fits its limit of tasks in flight and every cap: None if it does, else why it waits."""
    limit = min(max_in_flight, lock_provider(conn, provider) or max_in_flight)
    active = conn.execute(_AT_PROVIDER_COUNT, {"provider": provider}).scalar_one()
    if active >= limit:  # the common refusal, answered before the costlier sums of the caps
        return reason_to_wait(provider, active, limit, reservation_usd, caps, ())
    if not caps:
        return None
    lock_provider(conn, BUDGET_LOCK)  # caps span providers: one claim at a time
    # Every cap's spend in one statement: one round trip, one snapshot.
    spent = conn.execute(sa.select(*_spends(caps)), cap_values(caps)).one()
    return reason_to_wait(provider, active, limit, reservation_usd, caps, spent)


def reason_to_wait(
    provider: str, active: int, limit: int, reservation_usd: float, caps: Sequence[SpendCap],
    spent: Sequence[float],
) -> str | None:  # fmt: skip
    """Why one more request must wait, from the figures a claim read (`spent`: each cap's
    committed spend, in the order of `caps`; empty when the provider was full); None if it fits."""
    if active >= limit:
        return f"{provider} has {active} tasks in flight (limit {limit})"
    for cap, committed in zip(caps, spent, strict=True):
        if committed + reservation_usd > cap.limit_usd + SLACK_USD:
            return (
                f"{cap.label} spend cap ${cap.limit_usd:.2f} would be exceeded "
                f"(committed ${committed:.4f} + this request ${reservation_usd:.4f})"
            )
    return None


# -- a claim in one round trip (PostgreSQL) ------------------------------------------------------
#
# A claim's checks must read what was committed before its lock row was granted. On PostgreSQL
# (READ COMMITTED) each statement reads its own snapshot, taken when it starts, so the lock and the
# checks cannot be one statement: a claim that waited for the lock would count the slots as they
# were before the claim it waited for. They can be sent together: a pipeline up to one Sync (the
# blocking `StateStore.claim`, its statements prepared once per connection) or one Query message
# (`writes`, on an event loop, where a pipeline's locks would wait for the loop to send its Sync)
# runs them in order as one implicit transaction, each with a fresh snapshot. So a claim costs one
# round trip, and its locks are held only while the server runs it.


def _take_lock(name: str) -> sa.Insert:
    """Take a lock row, creating it if need be (`lock_provider` as one statement)."""
    insert = postgresql.insert(provider_locks_table).values(
        provider=sa.bindparam(name, type_=_L.provider.type), claims=1
    )
    return insert.on_conflict_do_update(
        index_elements=[_L.provider], set_={"claims": _L.claims + 1}
    )


TAKE_PROVIDER_LOCK = _take_lock("lock_provider")
TAKE_BUDGET_LOCK = _take_lock("budget_lock")


def figures(caps: Sequence[SpendCap]) -> sa.CTE:
    """What a claim checks, read in one snapshot: `active` tasks at the provider, its `limit` now
    (the configured one, or lower after a 429) and `spent_<i>`, each cap's committed spend."""
    configured = sa.bindparam("max_in_flight", type_=sa.Integer)
    adaptive = sa.select(_L.current_limit).where(_L.provider == sa.bindparam("provider"))
    return sa.select(
        _AT_PROVIDER_COUNT.scalar_subquery().label("active"),
        sa.func.least(configured, sa.func.coalesce(adaptive.scalar_subquery(), configured)).label(
            "limit"
        ),
        *(spent.label(f"spent_{i}") for i, spent in enumerate(_spends(caps))),
    ).cte("figures")


def fits(figures: sa.CTE, caps: Sequence[SpendCap]) -> sa.ColumnElement[bool]:
    """The claim's condition on its `figures`, as `reason_to_wait` states it."""
    reservation = sa.bindparam("reservation_usd", type_=sa.Float)
    return sa.and_(
        figures.c.active < figures.c.limit,
        *(
            figures.c[f"spent_{i}"] + reservation
            <= sa.bindparam(f"cap{i}_limit_usd", type_=sa.Float) + SLACK_USD
            for i in range(len(caps))
        ),
    )


def lock_provider(conn: Connection, provider: str) -> int | None:
    """Serialise work on this provider across processes (a write to its lock row, which holds
    a row lock on PostgreSQL and the write lock on SQLite); returns its adaptive limit."""
    key = {"lock_provider": provider}
    if conn.dialect.update_returning:  # one statement (SQLite >= 3.35, PostgreSQL)
        row = conn.execute(_LOCK_RETURNING_LIMIT, key).one_or_none()
        if row is not None:
            return row[0]
    elif conn.execute(_LOCK, key).rowcount:
        return conn.execute(_LIMIT, key).scalar_one()
    conn.execute(sa.insert(provider_locks_table).values(provider=provider, claims=1))
    return None


def _limit_change(new_limit: sa.ColumnElement[Any]) -> sa.Update:
    """Set the provider's adaptive limit in one statement (its row lock held only while it runs),
    answering the limit now in force: `configured` where none is set."""
    return (
        sa.update(provider_locks_table)
        .where(_L.provider == sa.bindparam("limit_provider"))
        .values(current_limit=new_limit)
        .returning(sa.func.coalesce(_L.current_limit, _CONFIGURED))
    )


_CONFIGURED = sa.bindparam("configured", type_=sa.Integer)
_IN_FORCE = sa.case(
    (sa.or_(_L.current_limit.is_(None), _L.current_limit > _CONFIGURED), _CONFIGURED),
    else_=_L.current_limit,
)
# A 429: halve the limit in force (multiplicative decrease), never below one task.
LOWER_LIMIT = _limit_change(sa.case((_IN_FORCE < 2, 1), else_=_IN_FORCE // 2))
# An accepted task: one more (additive increase); none set once back at the configured one.
RAISE_LIMIT = _limit_change(
    sa.case((_L.current_limit + 1 < _CONFIGURED, _L.current_limit + 1), else_=sa.null())
)


def current_limit(conn: Connection, provider: str, configured: int) -> int:
    value = conn.execute(
        sa.select(provider_locks_table.c.current_limit).where(
            provider_locks_table.c.provider == provider
        )
    ).scalar_one_or_none()
    return min(configured, value or configured)


def spend(conn: Connection, cap: SpendCap) -> float:
    """Money committed within a cap's scope: actual cost of finished requests and of the earlier
    attempts of retried ones, plus the estimate of every request still in flight (reserved until
    it ends)."""
    return float(conn.execute(sa.select(*_spends([cap])), cap_values([cap])).scalar_one())


def cap_values(caps: Sequence[SpendCap]) -> dict[str, Any]:
    """The bound values of `_spends(caps)` and `fits(…, caps)`: `cap<i>_<field>`."""
    values: dict[str, Any] = {}
    for i, cap in enumerate(caps):
        values |= {f"cap{i}_limit_usd": cap.limit_usd, f"cap{i}_since": cap.since,
                   f"cap{i}_batch": cap.batch, f"cap{i}_run_id": cap.run_id}  # fmt: skip
    return values


def caps_shape(caps: Sequence[SpendCap]) -> tuple[tuple[bool, bool, bool], ...]:
    """What the statements of `caps` depend on (which scopes each cap has), not their values: a
    statement built for one shape serves every set of caps of that shape."""
    return tuple((c.since is not None, c.batch is not None, c.run_id is not None) for c in caps)


def _spends(caps: Sequence[SpendCap]) -> list[sa.ScalarSelect[float]]:
    """Each cap's committed spend as an expression, its scope bound as `cap<i>_<field>`."""
    return [_spent(cap, f"cap{i}") for i, cap in enumerate(caps)]


def _spent(cap: SpendCap, name: str) -> sa.ScalarSelect[float]:
    """`spend` as an expression, for a query that reads it beside other figures."""
    c = requests_table.c
    a = attempts_table.c
    earlier = (
        sa.select(sa.func.coalesce(sa.func.sum(a.cost_usd), 0.0))
        .where(*_scope(cap, name, a.submitted_at, a.batch, a.run_id))
        .scalar_subquery()
    )
    # One statement, so one snapshot: as several (finished, then reserved, then earlier attempts),
    # a task that ended or was retried between them on another connection (PostgreSQL reads each
    # statement's own snapshot) was in no sum, and a claim then overspent a cap by its cost (seen
    # by the pg_claims benchmark).
    committed = sa.case(
        (_among(c.status, SETTLED), sa.func.coalesce(c.cost_usd, 0.0)),
        (_among(c.status, RESERVED), c.cost_usd_estimated),
        else_=0.0,
    )
    scope = _scope(cap, name, c.submitted_at, c.batch, c.run_id)
    now = sa.select(sa.func.coalesce(sa.func.sum(committed), 0.0)).where(*scope).scalar_subquery()
    return sa.select(now + earlier).scalar_subquery()


def _scope(
    cap: SpendCap, name: str, submitted_at: sa.ColumnElement[float],
    batch: sa.ColumnElement[str], run_id: sa.ColumnElement[str],
) -> list[sa.ColumnElement[bool]]:  # fmt: skip
    """The rows a cap counts: submitted, and within its day, batch or run (bound by name)."""
    scope: list[sa.ColumnElement[bool]] = [submitted_at.is_not(None)]
    if cap.since is not None:
        scope.append(submitted_at >= sa.bindparam(f"{name}_since", type_=sa.Float))
    if cap.batch is not None:
        scope.append(batch == sa.bindparam(f"{name}_batch", type_=sa.String))
    if cap.run_id is not None:
        scope.append(run_id == sa.bindparam(f"{name}_run_id", type_=sa.String))
    return scope
