"""One adapter per Seedance provider API behind one small interface (`ProviderAdapter`).

This package is the only place that knows providers apart: callers ask `adapter_for(name)` and
never branch on a provider's name.

Adding a provider (`T/providers/test_contract.py` fails until the code parts agree):

1. `facts.toml`: `[providers.<name>]` (`api`, `base_url`, `env_prefix`, limits; its models, or
   `mirrors` for one that copies another's) and `[prices.<name>."<model>"]` for every model; a new
   model family also needs its `[pixel_sizes."<family>"]`. A provider that speaks an API already
   here (as myrouter speaks Novita's) needs nothing else but the docs (5).
2. A new API: `providers/<api>.py`, the `ProviderAdapter` subclass (build calls, parse answers,
   classify errors; `synchronous = True` when the submit call answers the video itself). The
   module's name is the `api` in the facts; there is no registry to edit.
3. A new API: `emulator/<api>.py`, its `Dialect` subclass, so the sandbox and the tests run it.
4. A new API: its wire answers in the tests that pin them per API (`EXPECTED_CODES` in
   `T/providers/test_adapters_http.py`, the calls in `T/test_cli.py`); both fail until they are
   there. Every other provider list in the tests and the Dagster assets comes from the facts.
5. Docs: the README's provider table and key variables, the `emulator` command's description in
   `cli.py`, and the pool comment in `deploy/dagster.yaml` (`T/test_deploy.py` checks it).
"""

from __future__ import annotations

from functools import cache
from typing import cast

from seedance_pipeline.providers.base import ProviderAdapter
from seedance_pipeline.providers.facts import api_implementation, load_facts, provider_spec
from seedance_pipeline.providers.models import (
    CostEstimate,
    ErrorKind,
    GenerationRequest,
    ImageInfo,
    ProviderError,
    TaskError,
    TaskState,
    TaskStatus,
    Violation,
)


def provider_names() -> list[str]:
    return list(load_facts().providers)


def adapter_class(api: str) -> type[ProviderAdapter]:
    """The adapter of a provider API: the `ProviderAdapter` of this package's module `<api>`."""
    return cast("type[ProviderAdapter]", api_implementation(__name__, api, ProviderAdapter))


@cache
def adapter_for(provider: str) -> ProviderAdapter:
    """The adapter serving `provider` (myrouter is the Novita adapter with its own spec)."""
    spec = provider_spec(provider)
    return adapter_class(spec.api)(spec)


__all__ = [
    "CostEstimate",
    "ErrorKind",
    "GenerationRequest",
    "ImageInfo",
    "ProviderAdapter",
    "ProviderError",
    "TaskError",
    "TaskState",
    "TaskStatus",
    "Violation",
    "adapter_class",
    "adapter_for",
    "provider_names",
]
