"""The facts table: one source for limits, sizes and prices, correctable by the user."""

from __future__ import annotations

from pathlib import Path

import pytest

from seedance_pipeline.providers import adapter_for, provider_names
from seedance_pipeline.providers.facts import load_facts


def test_every_provider_has_models_and_a_dated_sourced_price_for_each() -> None:
    for spec in load_facts().providers.values():
        assert spec.models
        for model_id in spec.models:
            price = spec.prices[model_id]
            assert price.source and price.as_of


def test_myrouter_mirrors_novitas_models_at_its_own_base_url() -> None:
    novita, myrouter = adapter_for("novita"), adapter_for("myrouter")
    assert type(novita) is type(myrouter)
    assert myrouter.spec.models == novita.spec.models
    assert myrouter.spec.base_url == "https://api.myrouter.ai"


def test_unknown_providers_say_which_exist() -> None:
    with pytest.raises(KeyError, match=f"known: {', '.join(sorted(provider_names()))}"):
        adapter_for("runway")


def test_prices_can_be_overridden_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(
        '[prices.novita."seedance-v1-lite-i2v"]\n'
        'billing = "tokens"\nusd_per_million_tokens = 1.0\nsource = "our contract"\nas_of = "2026-11"\n'
    )
    monkeypatch.setenv("SEEDANCE_PRICES_FILE", str(override))
    load_facts.cache_clear()
    try:
        price = load_facts().providers["novita"].prices["seedance-v1-lite-i2v"]
        assert (price.usd_per_million_tokens, price.source) == (1.0, "our contract")
        assert (
            load_facts().providers["myrouter"].prices["seedance-v1-lite-i2v"].usd_per_million_tokens
            == 1.8
        )
    finally:
        monkeypatch.delenv("SEEDANCE_PRICES_FILE")
        load_facts.cache_clear()
