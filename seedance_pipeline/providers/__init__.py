"""One adapter per Seedance provider API behind one small interface (`ProviderAdapter`).

This package is the only place that knows providers apart: callers ask `adapter_for(name)` and
never branch on a provider's name.

Adding a provider (`T/providers/test_contract.py` fails until the code parts agree):

1. `facts.toml`: `[providers.<name>]` (`api`, `base_url`, `env_prefix`, limits; its models, or
   `mirrors` for one that copies another's) and `[prices.<name>."<model>"]` for every model; a new
   model family also needs its `[pixel_sizes."<family>"]`. A provider that speaks an API already
   here (as myrouter speaks Novita's) needs nothing else but the docs (5).
2. A new API: `providers/<api>.py`, the `ProviderAdapter` subclass (build calls, parse answers,
   classify errors; `synchronous = True` when the submit call answers the video itself), named in
   `ADAPTERS` below under the `api` of the facts.
3. A new API: `emulator/<api>.py`, its `Dialect` subclass, named in `emulator/app.py`'s `DIALECTS`,
   so the sandbox and the tests run it.
4. A new API: its wire answers in the tests that pin them per API (`EXPECTED_CODES` in
   `T/providers/test_adapters_http.py`, the calls in `T/test_cli.py`); both fail until they are
   there. Every other provider list in the tests and the Dagster assets comes from the facts.
5. Docs: the README's provider table and key variables, the `emulator` command's description in
   `cli.py`, and the pool comment in `deploy/dagster.yaml` (`T/test_deploy.py` checks it).
"""

from __future__ import annotations

from functools import cache

from seedance_pipeline.providers.aimlapi import AimlApiAdapter
from seedance_pipeline.providers.base import ProviderAdapter
from seedance_pipeline.providers.facts import load_facts, provider_spec
from seedance_pipeline.providers.modelark import ModelArkAdapter
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
from seedance_pipeline.providers.novita import NovitaAdapter
from seedance_pipeline.providers.segmind import SegmindAdapter

# One adapter per provider API (the `api` of a provider in facts.toml); written out, not looked up
# by name, so readers and the import contracts see every edge.
ADAPTERS: dict[str, type[ProviderAdapter]] = {
    "novita": NovitaAdapter,
    "aimlapi": AimlApiAdapter,
    "segmind": SegmindAdapter,
    "modelark": ModelArkAdapter,
}


def provider_names() -> list[str]:
    return list(load_facts().providers)


def adapter_class(api: str) -> type[ProviderAdapter]:
    """The adapter of a provider API (`api` in facts.toml)."""
    return ADAPTERS[api]


@cache
def adapter_for(provider: str) -> ProviderAdapter:
    """The adapter serving `provider` (myrouter is the Novita adapter with its own spec)."""
    spec = provider_spec(provider)
    return adapter_class(spec.api)(spec)


__all__ = [
    "ADAPTERS",
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
