"""Shared fixtures: a live emulator on a free loopback port, and real image files made on demand."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer
from seedance_pipeline.providers import GenerationRequest, TaskState, adapter_for
from seedance_pipeline.providers.client import ProviderClient, ProviderConfig, Secret

# One model per provider API, small and fast for tests.
MODELS = [
    ("novita", "seedance-v1-lite-i2v"),
    ("novita", "seedance-v1.5-pro-i2v"),
    ("myrouter", "seedance-v1-lite-i2v"),
    ("myrouter", "seedance-v1.5-pro-i2v"),
    ("aimlapi", "bytedance/seedance-1-0-lite-i2v"),
    ("segmind", "seedance-v1-lite-image-to-video"),
    ("modelark", "seedance-1-0-lite-i2v-250428"),
    ("modelark", "seedance-1-5-pro-251215"),
]
ASYNC_PROVIDERS = ["novita", "myrouter", "aimlapi", "modelark"]
# The first (cheapest) model of each provider.
MODEL_OF = {provider: model for provider, model in reversed(MODELS)}


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(queued_s=0.1, running_s=0.3)) as server:
        yield server


ImageFactory = Callable[..., Path]


@pytest.fixture
def make_image(tmp_path: Path) -> ImageFactory:
    """`make_image(width, height, fmt="PNG", name=None, exif_orientation=None, pad_to=None)`: a real
    image file; `pad_to` appends bytes after the image data to reach a file size."""
    counter = iter(range(10**6))

    def make(
        width: int = 1280,
        height: int = 720,
        fmt: str = "PNG",
        name: str | None = None,
        exif_orientation: int | None = None,
        pad_to: int | None = None,
        mode: str = "RGB",
    ) -> Path:
        path = tmp_path / (name or f"img{next(counter)}.{fmt.lower()}")
        image = Image.new(mode, (width, height), (30, 120, 200) if mode == "RGB" else 128)
        kwargs: dict[str, Any] = {}
        if exif_orientation is not None:
            exif = Image.Exif()
            exif[0x0112] = exif_orientation
            kwargs["exif"] = exif.tobytes()
        image.save(path, fmt, **kwargs)
        if pad_to is not None:
            with path.open("ab") as f:
                f.write(b"\0" * (pad_to - path.stat().st_size))
        return path

    return make


def client_for(
    emulator: EmulatorServer, provider: str, api_key: str | None = None, **overrides: Any
) -> ProviderClient:
    """A client of `provider` at the emulator; `overrides` replace ProviderConfig fields. Error
    classification tests pass `retry=NO_RETRY` to see the first answer."""
    adapter = adapter_for(provider)
    if api_key is None:
        cfg = ProviderConfig.from_env(adapter, env={}, sandbox_base_url=emulator.url)
    else:
        cfg = ProviderConfig(provider, emulator.base_url(provider), Secret(api_key))
    return ProviderClient(adapter, dataclasses.replace(cfg, **overrides))


async def run_to_end(
    client: ProviderClient, request: GenerationRequest, timeout_s: float = 10
) -> TaskState:
    """Submit and poll until the task is terminal."""
    state = await client.submit(request)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not state.status.terminal:
        assert asyncio.get_running_loop().time() < deadline, "task did not finish in time"
        await asyncio.sleep(0.05)
        assert state.task_id is not None
        state = await client.poll(state.task_id)
    return state


def run(coro: Any) -> Any:
    return asyncio.run(coro)
