"""Which endpoint serves each provider: its real API when its key is set, the sandbox otherwise."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from contextlib import AsyncExitStack

from seedance_pipeline.providers import adapter_for
from seedance_pipeline.providers.client import ProviderClient, ProviderConfig

log = logging.getLogger(__name__)


def provider_configs(
    providers: Iterable[str], sandbox_url: str | None, env: dict[str, str] | None = None
) -> dict[str, ProviderConfig]:
    """A config per provider; `sandbox_url` is used only for providers without a key."""
    env = dict(os.environ) if env is None else env
    configs = {}
    for name in sorted(set(providers)):
        config = ProviderConfig.from_env(adapter_for(name), env, sandbox_base_url=sandbox_url)
        if config.sandbox:
            log.warning("SANDBOX: %s has no API key; its requests go to the local emulator (%s)", name,
                        config.base_url)  # fmt: skip
        configs[name] = config
    return configs


def needs_sandbox(providers: Iterable[str], env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ) if env is None else env
    return any(not env.get(f"{adapter_for(p).spec.env_prefix}_API_KEY") for p in providers)


async def open_clients(
    configs: dict[str, ProviderConfig], stack: AsyncExitStack
) -> dict[str, ProviderClient]:
    return {
        name: await stack.enter_async_context(ProviderClient(adapter_for(name), config))
        for name, config in configs.items()
    }
