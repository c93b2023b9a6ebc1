"""The provider contract: facts.toml, the adapters and the emulator's dialects name the same
providers, and every model in the facts has what validation, cost and the emulator read from it.
Adding a provider is checked here, not remembered (see the checklist in `providers/__init__.py`)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

import httpx
import pytest

import seedance_pipeline.emulator
import seedance_pipeline.providers
from seedance_pipeline.emulator import EmulatorServer
from seedance_pipeline.emulator.app import dialect_class
from seedance_pipeline.emulator.dialect import Dialect
from seedance_pipeline.emulator.modelark import API_OPTIONS
from seedance_pipeline.providers import ProviderAdapter, adapter_class, adapter_for, provider_names
from seedance_pipeline.providers.facts import OPTIONS, load_facts
from seedance_pipeline_tests.conftest import MODELS

FACTS = load_facts()


def apis_implemented_in(package: ModuleType, base: type) -> set[str]:
    """The modules of `package` that define a subclass of `base`: the APIs it implements."""
    found = set()
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        if any(
            isinstance(value, type)
            and issubclass(value, base)
            and value is not base
            and value.__module__ == module.__name__
            for value in vars(module).values()
        ):
            found.add(info.name)
    return found


def test_facts_adapters_and_emulator_dialects_know_the_same_apis() -> None:
    in_facts = {spec.api for spec in FACTS.providers.values()}
    assert apis_implemented_in(seedance_pipeline.providers, ProviderAdapter) == in_facts
    assert apis_implemented_in(seedance_pipeline.emulator, Dialect) == in_facts


@pytest.mark.parametrize("provider", list(FACTS.providers))
def test_every_provider_in_the_facts_has_its_adapter_and_dialect(provider: str) -> None:
    spec = FACTS.providers[provider]
    adapter = adapter_for(provider)
    assert type(adapter) is adapter_class(spec.api) and adapter.spec is spec
    assert adapter.name == provider
    assert dialect_class(spec.api).api == spec.api


def test_the_emulator_serves_exactly_the_providers_in_the_facts(emulator: EmulatorServer) -> None:
    health = httpx.get(f"{emulator.url}/_emulator/health").json()
    assert health["providers"] == provider_names() == list(FACTS.providers)


def test_providers_have_their_own_key_variables() -> None:
    prefixes = [spec.env_prefix for spec in FACTS.providers.values()]
    assert len(set(prefixes)) == len(prefixes)
    assert all(spec.base_url.startswith("https://") for spec in FACTS.providers.values())


@pytest.mark.parametrize("provider,model_id", MODELS)
def test_every_model_has_consistent_defaults_for_validation(provider: str, model_id: str) -> None:
    model = FACTS.providers[provider].models[model_id]
    assert model.options <= set(OPTIONS), model.options - set(OPTIONS)
    assert model.default_resolution in model.resolutions
    assert model.default_aspect_ratio is None or model.default_aspect_ratio in model.aspect_ratios
    assert model.allows_duration(model.default_duration)
    assert model.durations or model.duration_range
    assert model.seed_range[0] <= model.seed_range[1]
    if "service_tier" in model.options:
        assert model.service_tiers
    if "fps" in model.options:
        assert model.fps
    assert model.api_options <= set(API_OPTIONS), model.api_options - set(API_OPTIONS)
    assert ("frames" in model.api_options) == (model.frames_range is not None)
    assert ("draft" in model.options) == ("from_draft" in model.options)
    assert ("draft" in model.options) == (model.draft_resolution is not None)
    if model.draft_resolution is not None:
        assert model.draft_resolution in model.resolutions
    if model.execution_expires_after_default is not None:
        assert model.execution_expires_after_range is not None
        low, high = model.execution_expires_after_range
        assert low <= model.execution_expires_after_default <= high


@pytest.mark.parametrize("provider,model_id", MODELS)
def test_every_model_has_pixel_sizes_for_what_it_offers(provider: str, model_id: str) -> None:
    """Cost estimates and the emulator's videos take the output size from these tables."""
    model = FACTS.providers[provider].models[model_id]
    sizes = FACTS.pixel_sizes[model.family]
    for resolution in model.resolutions:
        assert resolution in sizes, f"no {resolution} sizes for {model.family}"
        missing = {r for r in model.aspect_ratios if r != "adaptive"} - set(sizes[resolution])
        assert not missing, f"{model.family} {resolution}: no size for {sorted(missing)}"


@pytest.mark.parametrize("provider,model_id", MODELS)
def test_every_model_has_a_price_for_what_it_offers(provider: str, model_id: str) -> None:
    model = FACTS.providers[provider].models[model_id]
    price = FACTS.providers[provider].prices[model_id]
    assert price.source and price.as_of
    if price.billing == "tokens":
        assert price.usd_per_million_tokens > 0
        if "generate_audio" in model.options:
            assert price.usd_per_million_tokens_with_audio is not None
    else:
        assert price.billing == "per_generation"
        low, high = model.duration_range or (0, -1)
        durations = model.durations or tuple(range(low, high + 1))
        offered = {f"{res}/{seconds}s" for res in model.resolutions for seconds in durations}
        assert not offered - set(price.per_generation), sorted(offered - set(price.per_generation))


@pytest.mark.parametrize("provider,model_id", MODELS)
def test_the_readme_lists_every_model_with_the_source_of_its_facts(
    provider: str, model_id: str
) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in readme.splitlines()
        if line.startswith("|") and f"`{model_id}`" in line
    ]
    listed = [row for row in rows if f"`{provider}`" in row[0] and len(row) == 6]
    assert listed, f"README's provider table has no row for {provider} {model_id}"
    assert "[doc]" in listed[0][4] or "[client]" in listed[0][4] or "[guess]" in listed[0][4]
