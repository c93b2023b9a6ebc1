"""The hostile provider server, and clients of each provider API pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from seedance_pipeline_tests.hostile.server import HostileServer


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server
