"""Shared fixtures: a live emulator on a free loopback port, real image files made on demand, a local
S3-compatible server (moto) on loopback with a fresh bucket per test, and the state store's URL on
each backend (SQLite, and PostgreSQL from `postgres.py`)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from seedance_pipeline.emulator import EmulatorConfig, EmulatorServer
from seedance_pipeline.providers import GenerationRequest, TaskState, adapter_for
from seedance_pipeline.providers.client import ProviderClient, ProviderConfig, Secret
from seedance_pipeline.providers.facts import load_facts
from seedance_pipeline.resources import PipelineResources
from seedance_pipeline.state.schema import default_state_url
from seedance_pipeline_tests.postgres import PostgresServer, PostgresUnavailable, postgres_server


def pipeline_resources(base: PipelineResources | None = None, **settings: Any) -> PipelineResources:
    """`base` (else empty resources) with each setting given put in the resource that holds it."""
    base = base or PipelineResources()
    changed = {}
    for spec in dataclasses.fields(base):
        resource = getattr(base, spec.name)
        mine = {
            name: settings.pop(name)
            for name in list(settings)
            if name in type(resource).model_fields
        }
        changed[spec.name] = type(resource)(**{**resource.model_dump(), **mine})
    assert not settings, f"not a resource field: {sorted(settings)}"
    return PipelineResources(**changed)


# Provider lists come from facts.toml, so a provider added there is tested without editing tests.
_PROVIDERS = load_facts().providers
# Every model of every provider, as (provider, model).
MODELS = [(name, model) for name, spec in _PROVIDERS.items() for model in spec.models]
# Providers whose tasks are polled: every one whose submit call does not return the video.
ASYNC_PROVIDERS = [name for name in _PROVIDERS if not adapter_for(name).synchronous]
# The first (cheapest) model of each provider.
MODEL_OF = {name: spec.default_model for name, spec in _PROVIDERS.items()}


def _first_provider_of_each_api() -> list[str]:
    first: dict[str, str] = {}
    for name, spec in _PROVIDERS.items():
        first.setdefault(spec.api, name)
    return list(first.values())


# One provider per API (myrouter speaks Novita's): where the API, not the provider, is under test.
PROVIDER_PER_API = _first_provider_of_each_api()


# Distinctive, so a test can prove it appears nowhere it should not.
S3_SECRET = "s3-secret-NEVER-IN-LOGS-7f3a9c"


@dataclasses.dataclass(frozen=True)
class S3:
    bucket: str
    env: dict[str, str]  # what a subprocess needs to reach the server

    def url(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Under `--dist loadgroup` xdist tells its scheduler a test's `xdist_group` by appending
    `@group` to the node id. Where that no longer works (pytest 9.2: pytest-xdist#1386) the groups
    are ignored without a word, and tests that must share a worker would each start their own
    `dagster dev`, at once: they fail instead, saying why."""
    grouping = getattr(item.config.option, "loadgroup", False)  # set by xdist in its workers
    if grouping and item.get_closest_marker("xdist_group") and "@" not in item.nodeid:
        pytest.fail("this pytest/xdist ignores xdist_group marks (pytest-xdist#1386): "
                    "install pytest<9.2 as the dev extra says", pytrace=False)  # fmt: skip


@pytest.fixture(autouse=True)
def pipeline_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the `SEEDANCE_*` settings of the shell that runs it (an exported state URL or
    cap would change what it proves); tests set what they need. The test harness's own variables
    (`SEEDANCE_TEST_*`) stay."""
    for name in list(os.environ):
        if name.startswith("SEEDANCE_") and not name.startswith("SEEDANCE_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """A new bucket on the loopback S3 server; credentials and endpoint only in the environment, as
    in production (s3fs and pyarrow read the standard AWS_* variables)."""
    import s3fs

    env = {"AWS_ACCESS_KEY_ID": "AKIATESTSEEDANCE", "AWS_SECRET_ACCESS_KEY": S3_SECRET,
           "AWS_ENDPOINT_URL": s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()  # no client made under another test's environment
    bucket = f"seedance-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(bucket)
    yield S3(bucket, env)
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(queued_s=0.1, running_s=0.3)) as server:
        yield server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session. Where there is none, its tests skip with the reason,
    except in CI (`CI=true`), where a missing PostgreSQL fails them."""
    stack = ExitStack()
    try:
        server = stack.enter_context(postgres_server())
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"PostgreSQL is required when CI=true: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    with stack:
        yield server


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database for this test (its URL carries the server's password)."""
    from seedance_pipeline.settings import _STORES

    with postgres.database() as name:
        url = postgres.url(name)
        yield url
        store = _STORES.pop(url, None)
        if store is not None:
            store.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state store's URL on each backend, so the same test runs on SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return default_state_url(tmp_path)
    return str(request.getfixturevalue("postgres_url"))


ImageFactory = Callable[..., Path]


@pytest.fixture
def make_image(tmp_path: Path) -> ImageFactory:
    """`make_image(width, height, fmt="PNG", name=None, exif_orientation=None, pad_to=None)`: a real
    image file; `pad_to` appends bytes after the image data to reach a file size."""
    return image_factory(tmp_path)


def image_factory(folder: Path) -> ImageFactory:
    """`make_image` writing into `folder`, for fixtures that outlive one test's tmp_path."""
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
        path = folder / (name or f"img{next(counter)}.{fmt.lower()}")
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
