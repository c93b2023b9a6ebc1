"""Cost formulas: an estimate before submission and the actual cost after completion.

Seedance bills per token, `tokens = width × height × fps × duration / 1024`, only for videos that
were delivered; content-review rejections and failures are free. Prices come from `facts.toml`.
"""

from __future__ import annotations

from seedance_pipeline.providers.facts import ModelSpec, Price, ProviderSpec, output_size
from seedance_pipeline.providers.models import (
    CostEstimate,
    GenerationRequest,
    TaskState,
    TaskStatus,
)

FPS = 24
# A reported usage above this many times the documented formula's is not believed: no option
# makes a video cost ten times its documented size (draft and flex only make it cheaper).
ABSURD_FACTOR = 10.0


def video_tokens(width: int, height: int, fps: int, duration_s: int) -> int:
    return width * height * fps * duration_s // 1024


def requested_tokens(
    model: ModelSpec, request: GenerationRequest, image_size: tuple[int, int] | None = None
) -> int:
    """Tokens the request will be billed if it succeeds, from the documented pixel sizes."""
    draft_resolution = model.draft_resolution if request.draft else None
    resolution = request.resolution or draft_resolution or model.default_resolution
    ratio = request.aspect_ratio or model.default_aspect_ratio
    width, height = output_size(model.family, resolution, ratio, image_size)
    duration = request.duration or model.default_duration
    tokens = video_tokens(width, height, request.fps or FPS, duration)
    return draft_tokens(model, tokens, request.generate_audio) if request.draft else tokens


def draft_tokens(model: ModelSpec, tokens: int, generate_audio: bool | None) -> int:
    """A draft preview's tokens: the normal video's times the model's documented factor."""
    audio = model.generate_audio_default if generate_audio is None else generate_audio
    factor = model.draft_token_factor_with_audio if audio else model.draft_token_factor
    return int(tokens * factor)


def _with_audio(model: ModelSpec, request: GenerationRequest) -> bool:
    if "generate_audio" not in model.options:
        return False
    return (
        model.generate_audio_default if request.generate_audio is None else request.generate_audio
    )


def usd_for_tokens(
    price: Price, model: ModelSpec, request: GenerationRequest, tokens: int
) -> float:
    rate = price.usd_per_million_tokens
    if _with_audio(model, request) and price.usd_per_million_tokens_with_audio is not None:
        rate = price.usd_per_million_tokens_with_audio
    if request.service_tier == "flex":
        rate *= price.flex_multiplier
    return tokens * rate / 1_000_000


def _per_generation(price: Price, model: ModelSpec, request: GenerationRequest) -> float:
    key = f"{request.resolution or model.default_resolution}/{request.duration or model.default_duration}s"
    if key not in price.per_generation:
        # An unpriced combination must not look free: take the dearest listed generation.
        return max(price.per_generation.values())
    return price.per_generation[key]


def estimate_cost_usd(
    spec: ProviderSpec, request: GenerationRequest, image_size: tuple[int, int] | None = None
) -> CostEstimate:
    """What a request will cost if it succeeds. With `adaptive` ratio and no image size, the
    largest output size is assumed, so the estimate is an upper bound fit for budgets."""
    model = spec.model(request.model)
    price = spec.prices[request.model]
    if price.billing == "per_generation":
        return CostEstimate(
            usd=_per_generation(price, model, request),
            tokens=None,
            basis=f"per generation ({price.as_of})",
        )
    tokens = requested_tokens(model, request, image_size)
    return CostEstimate(
        usd=usd_for_tokens(price, model, request, tokens),
        tokens=tokens,
        basis=f"{tokens} tokens from documented pixel size ({price.as_of})",
    )


def actual_cost_usd(
    spec: ProviderSpec,
    request: GenerationRequest,
    state: TaskState,
    image_size: tuple[int, int] | None = None,
) -> CostEstimate:
    """What a finished task cost: the provider's reported usage where it reports one, else the
    formula; zero for anything that did not deliver a video."""
    if state.status is not TaskStatus.SUCCEEDED:
        return CostEstimate(
            usd=0.0, tokens=0 if state.status.terminal else None, basis="not billed"
        )
    model = spec.model(request.model)
    price = spec.prices[request.model]
    estimate = estimate_cost_usd(spec, request, image_size)
    anomaly = state.usage_anomaly
    if anomaly is not None:
        pass  # reported, but unreadable: the formula, and the anomaly on the row
    elif state.tokens is not None and price.billing == "tokens":
        usd = usd_for_tokens(price, model, request, state.tokens)
        anomaly = _untrusted("tokens", state.tokens, usd, estimate.usd)
        if anomaly is None:
            return CostEstimate(usd=usd, tokens=state.tokens, basis="provider-reported tokens")
    elif state.credits is not None and price.usd_per_credit is not None:
        usd = state.credits * price.usd_per_credit
        anomaly = _untrusted("credits", state.credits, usd, estimate.usd)
        if anomaly is None:
            return CostEstimate(
                usd=usd,
                tokens=estimate.tokens,
                basis=f"provider-reported credits ({state.credits})",
            )
    return CostEstimate(
        usd=estimate.usd,
        tokens=estimate.tokens,
        basis=f"formula: {estimate.basis}",
        anomaly=anomaly,
    )


def _untrusted(what: str, reported: float, usd: float, formula_usd: float) -> str | None:
    """Why a reported usage is not believed (negative, not a number, absurdly large), or None. An
    untrusted usage is replaced by the formula, so a provider's bug can neither lift a spend cap
    (a negative cost) nor blow it (10**30 tokens)."""
    if usd != usd or reported != reported:
        return f"reported {what} is not a number"
    if reported < 0 or usd < 0:
        return f"reported {what} {reported} is negative"
    if usd > max(formula_usd, 0.01) * ABSURD_FACTOR:
        shown = f"{reported:.3g}" if isinstance(reported, float) or reported > 10**12 else reported
        return (
            f"reported {what} {shown} cost ${usd:.4g}, over {ABSURD_FACTOR:g}x the documented "
            f"formula's ${formula_usd:.4f}"
        )
    return None
