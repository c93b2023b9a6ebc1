"""The provider clients of one pass: each provider's real API where its key is set, the sandbox
emulator otherwise (started on first use, shared by every process of the data directory)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AsyncExitStack

from seedance_pipeline.providers.client import ProviderClient, ProviderConfig
from seedance_pipeline.providers.connections import needs_sandbox, open_clients, provider_configs
from seedance_pipeline.sandbox import ensure_sandbox
from seedance_pipeline.settings import PipelineSettings


def connections(settings: PipelineSettings, providers: Iterable[str]) -> dict[str, ProviderConfig]:
    """Configs for these providers: real where a key is set, the sandbox emulator otherwise."""
    providers = sorted(set(providers))
    sandbox_url = settings.sandbox_url
    if sandbox_url is None and needs_sandbox(providers):
        sandbox_url = ensure_sandbox(settings.data_dir)
    return provider_configs(providers, sandbox_url)


async def open_provider_clients(
    settings: PipelineSettings, providers: Iterable[str], stack: AsyncExitStack
) -> dict[str, ProviderClient]:
    return await open_clients(connections(settings, providers), stack)
