"""PostgreSQL ledger: the ledger case with the state store on a local PostgreSQL cluster: a
million ledger rows written from it (read into Arrow by ADBC's PostgreSQL driver) and read back."""

from __future__ import annotations

from pathlib import Path

from benchmarks import ledger
from benchmarks.harness import Result, postgres_server


def run(scale: float, repeats: int, work: Path) -> Result:
    with postgres_server() as server, server.database() as name:
        try:
            return ledger.run(scale, repeats, work, server.url(name))
        finally:
            from seedance_pipeline.settings import store_for

            store_for(server.url(name)).engine.dispose()  # the database is dropped next
