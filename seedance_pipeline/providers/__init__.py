"""One adapter per Seedance provider API behind one small interface (`ProviderAdapter`).

This package is the only place that knows providers apart: callers ask `adapter_for(name)` and
never branch on a provider's name.
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

ADAPTERS: dict[str, type[ProviderAdapter]] = {
    "novita": NovitaAdapter,
    "aimlapi": AimlApiAdapter,
    "segmind": SegmindAdapter,
    "modelark": ModelArkAdapter,
}


def provider_names() -> list[str]:
    return list(load_facts().providers)


@cache
def adapter_for(provider: str) -> ProviderAdapter:
    """The adapter serving `provider` (myrouter is the Novita adapter with its own spec)."""
    spec = provider_spec(provider)
    return ADAPTERS[spec.api](spec)


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
    "adapter_for",
    "provider_names",
]
