"""PostgreSQL submission: the submission case with the state store on a local PostgreSQL cluster
(the store of every multi-machine deployment), against the same bare httpx baseline."""

from __future__ import annotations

from pathlib import Path

from benchmarks import submission
from benchmarks.harness import Result, postgres_server


def run(scale: float, repeats: int, work: Path) -> Result:
    with postgres_server() as server:
        return submission.run(scale, repeats, work, server)
