"""Cost formulas: estimates before submission and actual cost after completion."""

from __future__ import annotations

import pytest

from seedance_pipeline.providers import GenerationRequest, TaskState, TaskStatus, adapter_for
from seedance_pipeline.providers.cost import video_tokens


def request(
    provider: str = "novita", model: str = "seedance-v1-lite-i2v", **fields: object
) -> GenerationRequest:
    return GenerationRequest(provider=provider, model=model, image="x.png", **fields)  # type: ignore[arg-type]


def test_the_worked_example_lite_720p_16_9_5s_is_102960_tokens() -> None:
    assert video_tokens(1248, 704, 24, 5) == 102_960
    estimate = adapter_for("novita").estimate_cost(
        request(resolution="720p", aspect_ratio="16:9", duration=5)
    )
    assert estimate.tokens == 102_960
    assert estimate.usd == pytest.approx(0.185328)


@pytest.mark.parametrize(
    "model,usd_per_million",
    [("seedance-1-0-pro-250528", 2.5), ("seedance-1-0-pro-fast-251015", 1.0)],
)
def test_modelark_10_pro_and_pro_fast_are_priced_per_token_at_their_list_prices(
    model: str, usd_per_million: float
) -> None:
    adapter = adapter_for("modelark")
    worked = adapter.estimate_cost(
        request("modelark", model, resolution="720p", aspect_ratio="16:9", duration=5)
    )
    assert worked.tokens == 102_960 and worked.usd == pytest.approx(0.10296 * usd_per_million)
    full_hd = adapter.estimate_cost(request("modelark", model, aspect_ratio="16:9", duration=12))
    assert full_hd.tokens == 1920 * 1088 * 24 * 12 // 1024  # 1080p is their default
    done = TaskState(task_id="t", status=TaskStatus.SUCCEEDED, tokens=200_000)
    assert adapter.actual_cost(request("modelark", model), done).usd == pytest.approx(
        0.2 * usd_per_million
    )


def test_defaults_are_the_models_documented_defaults() -> None:
    # Novita lite defaults: 720p (our explicit default), 16:9, 5 s.
    assert adapter_for("novita").estimate_cost(request()).tokens == 102_960


@pytest.mark.parametrize(
    "fields,tokens",
    [
        (
            {"resolution": "480p", "aspect_ratio": "9:16", "duration": 10},
            480 * 864 * 24 * 10 // 1024,
        ),
        (
            {"resolution": "1080p", "aspect_ratio": "21:9", "duration": 5},
            2176 * 928 * 24 * 5 // 1024,
        ),
    ],
)
def test_tokens_follow_the_pixel_size_table(fields: dict, tokens: int) -> None:
    assert adapter_for("novita").estimate_cost(request(**fields)).tokens == tokens


def test_adaptive_ratio_follows_the_image_and_is_an_upper_bound_without_it() -> None:
    adapter = adapter_for("modelark")
    lite = request("modelark", "seedance-1-0-lite-i2v-250428", resolution="720p")
    portrait = adapter.estimate_cost(lite, image_size=(720, 1280))
    assert portrait.tokens == 704 * 1248 * 24 * 5 // 1024  # nearest ratio 9:16
    unknown = adapter.estimate_cost(lite)
    assert unknown.tokens == 1504 * 640 * 24 * 5 // 1024  # 21:9 is the largest 720p frame
    assert unknown.usd >= portrait.usd


def test_audio_doubles_the_15_pro_price_and_flex_halves_it() -> None:
    adapter = adapter_for("novita")
    base = dict(resolution="720p", aspect_ratio="16:9", duration=5, prompt="p")
    tokens = 1280 * 720 * 24 * 5 // 1024
    with_audio = adapter.estimate_cost(
        request(model="seedance-v1.5-pro-i2v", **base)
    )  # audio on by default
    silent = adapter.estimate_cost(
        request(model="seedance-v1.5-pro-i2v", generate_audio=False, **base)
    )
    flex = adapter.estimate_cost(
        request(model="seedance-v1.5-pro-i2v", service_tier="flex", **base)
    )
    assert with_audio.usd == pytest.approx(tokens * 2.4 / 1e6)
    assert silent.usd == pytest.approx(tokens * 1.2 / 1e6)
    assert flex.usd == pytest.approx(with_audio.usd / 2)


def test_segmind_is_priced_per_generation() -> None:
    adapter = adapter_for("segmind")
    model = "seedance-v1-lite-image-to-video"
    assert (
        adapter.estimate_cost(request("segmind", model, resolution="480p", duration=5)).usd == 0.091
    )
    assert (
        adapter.estimate_cost(request("segmind", model, resolution="720p", duration=10)).usd == 0.45
    )
    assert adapter.estimate_cost(request("segmind", model)).tokens is None


def test_actual_cost_uses_reported_tokens_then_credits_then_the_formula() -> None:
    done = TaskState(task_id="t", status=TaskStatus.SUCCEEDED, tokens=50_000)
    ark = adapter_for("modelark").actual_cost(
        request("modelark", "seedance-1-0-lite-i2v-250428"), done
    )
    assert (ark.tokens, ark.usd, ark.basis) == (
        50_000,
        pytest.approx(0.09),
        "provider-reported tokens",
    )

    credits = TaskState(task_id="t", status=TaskStatus.SUCCEEDED, credits=370_656)
    aiml = adapter_for("aimlapi").actual_cost(
        request("aimlapi", "bytedance/seedance-1-0-lite-i2v"), credits
    )
    assert aiml.usd == pytest.approx(370_656 / 2_000_000)  # $1 = 2,000,000 credits

    plain = TaskState(task_id="t", status=TaskStatus.SUCCEEDED)
    novita = adapter_for("novita").actual_cost(request(), plain)
    assert novita.tokens == 102_960 and novita.basis.startswith("formula")


@pytest.mark.parametrize("status", [TaskStatus.FAILED, TaskStatus.EXPIRED, TaskStatus.CANCELLED])
def test_unbilled_outcomes_cost_nothing(status: TaskStatus) -> None:
    state = TaskState(task_id="t", status=status, tokens=102_960)
    assert (
        adapter_for("modelark")
        .actual_cost(request("modelark", "seedance-1-0-lite-i2v-250428"), state)
        .usd
        == 0
    )
