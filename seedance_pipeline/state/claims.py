"""Claims of provider capacity and money: lock rows, limits of tasks in flight, spend caps.

A claim serialises on its provider's lock row (a row lock on PostgreSQL, the write lock on SQLite),
so two processes never both take a provider's last slot; a claim checked against spend caps also
takes the budgets' lock row, since caps span providers. Every function here runs inside the
caller's transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
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
_AT_PROVIDER_COUNT = sa.select(sa.func.count()).where(
    _R.provider == sa.bindparam("provider"), _R.status.in_(AT_PROVIDER)
)
_LOCK = (
    sa.update(provider_locks_table)
    .where(_L.provider == sa.bindparam("lock_provider"))
    .values(claims=_L.claims + 1)
)
_LOCK_RETURNING_LIMIT = _LOCK.returning(_L.current_limit)
_LIMIT = sa.select(_L.current_limit).where(_L.provider == sa.bindparam("lock_provider"))


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
        return f"{provider} has {active} tasks in flight (limit {limit})"
    if not caps:
        return None
    lock_provider(conn, BUDGET_LOCK)  # caps span providers: one claim at a time
    # Every cap's spend in one statement: one round trip, one snapshot.
    spent_by_cap = conn.execute(sa.select(*(_spent(cap) for cap in caps))).one()
    for cap, spent in zip(caps, spent_by_cap, strict=True):
        if spent + reservation_usd > cap.limit_usd + 1e-9:
            return (
                f"{cap.label} spend cap ${cap.limit_usd:.2f} would be exceeded "
                f"(committed ${spent:.4f} + this request ${reservation_usd:.4f})"
            )
    return None


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


def lower_limit(conn: Connection, provider: str, configured: int) -> int:
    """A 429: halve the provider's limit of tasks in flight (multiplicative decrease)."""
    current = min(configured, lock_provider(conn, provider) or configured)
    lowered = max(1, current // 2)
    set_limit(conn, provider, lowered)
    return lowered


def raise_limit(conn: Connection, provider: str, configured: int) -> int:
    """An accepted task: raise the limit by one, back toward the configured one."""
    current = lock_provider(conn, provider)
    if current is None or current >= configured:
        set_limit(conn, provider, None)
        return configured
    set_limit(conn, provider, current + 1)
    return current + 1


def set_limit(conn: Connection, provider: str, limit: int | None) -> None:
    conn.execute(
        sa.update(provider_locks_table)
        .where(provider_locks_table.c.provider == provider)
        .values(current_limit=limit)
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
    return float(conn.execute(sa.select(_spent(cap))).scalar_one())


def _spent(cap: SpendCap) -> sa.ScalarSelect[float]:
    """`spend` as an expression, for a query that reads it beside other figures."""
    c = requests_table.c
    scope = _scope(cap, c.submitted_at, c.batch, c.run_id)
    a = attempts_table.c
    earlier = (
        sa.select(sa.func.coalesce(sa.func.sum(a.cost_usd), 0.0))
        .where(*_scope(cap, a.submitted_at, a.batch, a.run_id))
        .scalar_subquery()
    )
    # One statement, so one snapshot: as several (finished, then reserved, then earlier attempts),
    # a task that ended or was retried between them on another connection (PostgreSQL reads each
    # statement's own snapshot) was in no sum, and a claim then overspent a cap by its cost (seen
    # by the pg_claims benchmark).
    committed = sa.case(
        (c.status.in_(SETTLED), sa.func.coalesce(c.cost_usd, 0.0)),
        (c.status.in_(RESERVED), c.cost_usd_estimated),
        else_=0.0,
    )
    now = sa.select(sa.func.coalesce(sa.func.sum(committed), 0.0)).where(*scope).scalar_subquery()
    return sa.select(now + earlier).scalar_subquery()


def _scope(
    cap: SpendCap, submitted_at: sa.ColumnElement[float], batch: sa.ColumnElement[str],
    run_id: sa.ColumnElement[str],
) -> list[sa.ColumnElement[bool]]:  # fmt: skip
    """The rows a cap counts: submitted, and within its day, batch or run."""
    scope: list[sa.ColumnElement[bool]] = [submitted_at.is_not(None)]
    if cap.since is not None:
        scope.append(submitted_at >= cap.since)
    if cap.batch is not None:
        scope.append(batch == cap.batch)
    if cap.run_id is not None:
        scope.append(run_id == cap.run_id)
    return scope
