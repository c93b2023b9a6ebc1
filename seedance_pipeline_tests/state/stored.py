"""Requests put in a store as they are, in any status: fixtures for tests of what reads the store.

The store itself lets a request in only as the catalog adds it (pending or rejected) and moves it
only as the lifecycle allows; a test of the ledger or of an operator command starts from rows that
took many moves to reach, so it writes them directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from seedance_pipeline.state.schema import requests_table
from seedance_pipeline.state.store import RequestRecord, StateStore


def insert_as_is(store: StateStore, records: Sequence[RequestRecord]) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.insert(requests_table), [r.to_row() for r in records])
