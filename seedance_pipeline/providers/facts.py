"""Provider facts loaded from ``facts.toml`` into frozen dataclasses.

Validation, cost estimation and the emulator all read these objects, so a limit or a price lives in
exactly one place. Prices can be overridden without touching the package by pointing
``SEEDANCE_PRICES_FILE`` at a TOML file holding ``[prices.<provider>."<model>"]`` tables.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

FACTS_PATH = Path(__file__).with_name("facts.toml")
PRICES_ENV = "SEEDANCE_PRICES_FILE"

OPTIONS = (
    "last_image",
    "camera_fixed",
    "seed",
    "watermark",
    "generate_audio",
    "service_tier",
    "fps",
    "execution_expires_after",
    "return_last_frame",
    "draft",
    "from_draft",
)


@dataclass(frozen=True)
class ImageLimits:
    formats: tuple[str, ...]
    max_bytes: int
    short_side_gt: int
    long_side_lt: int
    ratio_gt: float  # width / height must be greater than this...
    ratio_lt: float  # ...and less than this


@dataclass(frozen=True)
class Price:
    billing: str  # "tokens" or "per_generation"
    source: str
    as_of: str
    usd_per_million_tokens: float = 0.0
    usd_per_million_tokens_with_audio: float | None = None
    flex_multiplier: float = 1.0
    per_generation: dict[str, float] = field(default_factory=dict)
    usd_per_credit: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    id: str
    family: str
    resolutions: tuple[str, ...]
    default_resolution: str
    aspect_ratios: tuple[str, ...]
    default_aspect_ratio: str | None
    durations: tuple[int, ...]
    duration_range: tuple[int, int] | None
    default_duration: int
    seed_range: tuple[int, int]
    prompt_max_chars: int
    prompt_required: bool
    options: frozenset[str]
    required_fields: tuple[str, ...] = ()
    aspect_ratio_field: str = "aspect_ratio"
    parameter_style: str = "fields"
    fps: tuple[int, ...] = (24,)
    service_tiers: tuple[str, ...] = ()
    generate_audio_default: bool = False
    execution_expires_after_range: tuple[int, int] | None = None
    execution_expires_after_default: int | None = None
    # Fields the provider's API takes for this model beyond `options`, which the pipeline does not
    # send (yet): the emulator accepts them as the real API does (ModelArk: `return_last_frame`...).
    api_options: frozenset[str] = frozenset()
    frames_range: tuple[int, int] | None = None  # `frames` instead of a duration, 25 + 4n
    # Draft previews (ModelArk 1.5 pro): made at this resolution only, billed at the normal unit
    # price for the normal token count times a factor.
    draft_resolution: str | None = None
    draft_token_factor: float = 1.0
    draft_token_factor_with_audio: float = 1.0

    def allows_duration(self, seconds: int) -> bool:
        if self.duration_range is not None:
            low, high = self.duration_range
            return low <= seconds <= high
        return seconds in self.durations

    def with_audio(self, generate_audio: bool | None) -> bool:
        """Whether a video of this model carries audio, given the request's `generate_audio`."""
        asked = self.generate_audio_default if generate_audio is None else generate_audio
        return "generate_audio" in self.options and asked

    def duration_words(self) -> str:
        if self.duration_range is not None:
            return f"{self.duration_range[0]} to {self.duration_range[1]} s"
        return " or ".join(str(d) for d in self.durations) + " s"


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    api: str
    base_url: str
    env_prefix: str
    video_url_ttl_s: int
    timeout_s: float
    max_in_flight: int
    models: dict[str, ModelSpec]
    prices: dict[str, Price]
    max_queued: int | None = None
    refreshes_video_url: bool = False  # a new poll answers a freshly signed video URL
    submit_id_field: dict[str, str] = field(default_factory=dict)  # documented per-model quirks

    def model(self, model_id: str) -> ModelSpec:
        try:
            return self.models[model_id]
        except KeyError:
            known = ", ".join(sorted(self.models))
            raise KeyError(
                f"provider {self.name!r} has no model {model_id!r}; known: {known}"
            ) from None

    @property
    def default_model(self) -> str:
        return next(iter(self.models))


@dataclass(frozen=True)
class Facts:
    image_limits: ImageLimits
    pixel_sizes: dict[str, dict[str, dict[str, tuple[int, int]]]]
    providers: dict[str, ProviderSpec]


def _model(model_id: str, raw: dict[str, Any]) -> ModelSpec:
    def pair(key: str) -> tuple[int, int] | None:
        value = raw.get(key)
        return (int(value[0]), int(value[1])) if value is not None else None

    seed_range = pair("seed_range")
    assert seed_range is not None, f"{model_id}: seed_range is required"
    return ModelSpec(
        id=model_id,
        family=raw["family"],
        resolutions=tuple(raw["resolutions"]),
        default_resolution=raw["default_resolution"],
        aspect_ratios=tuple(raw.get("aspect_ratios", ())),
        default_aspect_ratio=raw.get("default_aspect_ratio"),
        durations=tuple(raw.get("durations", ())),
        duration_range=pair("duration_range"),
        default_duration=int(raw["default_duration"]),
        seed_range=seed_range,
        prompt_max_chars=int(raw["prompt_max_chars"]),
        prompt_required=bool(raw["prompt_required"]),
        options=frozenset(raw.get("options", ())),
        required_fields=tuple(raw.get("required_fields", ())),
        aspect_ratio_field=raw.get("aspect_ratio_field", "aspect_ratio"),
        parameter_style=raw.get("parameter_style", "fields"),
        fps=tuple(raw.get("fps", (24,))),
        service_tiers=tuple(raw.get("service_tiers", ())),
        generate_audio_default=bool(raw.get("generate_audio_default", False)),
        execution_expires_after_range=pair("execution_expires_after_range"),
        execution_expires_after_default=raw.get("execution_expires_after_default"),
        api_options=frozenset(raw.get("api_options", ())),
        frames_range=pair("frames_range"),
        draft_resolution=raw.get("draft_resolution"),
        draft_token_factor=float(raw.get("draft_token_factor", 1.0)),
        draft_token_factor_with_audio=float(raw.get("draft_token_factor_with_audio", 1.0)),
    )


def _price(raw: dict[str, Any]) -> Price:
    return Price(
        billing=raw["billing"],
        source=raw["source"],
        as_of=str(raw["as_of"]),
        usd_per_million_tokens=float(raw.get("usd_per_million_tokens", 0.0)),
        usd_per_million_tokens_with_audio=raw.get("usd_per_million_tokens_with_audio"),
        flex_multiplier=float(raw.get("flex_multiplier", 1.0)),
        per_generation={k: float(v) for k, v in raw.get("per_generation", {}).items()},
        usd_per_credit=raw.get("usd_per_credit"),
    )


def parse_facts(raw: dict[str, Any], price_overrides: dict[str, Any] | None = None) -> Facts:
    prices_raw: dict[str, dict[str, Any]] = {p: dict(m) for p, m in raw.get("prices", {}).items()}
    for provider, models in (price_overrides or {}).items():
        prices_raw.setdefault(provider, {}).update(models)

    providers: dict[str, ProviderSpec] = {}
    for name, p in raw["providers"].items():
        source = raw["providers"][p["mirrors"]] if "mirrors" in p else p
        models = {mid: _model(mid, m) for mid, m in source.get("models", {}).items()}
        prices = {mid: _price(v) for mid, v in prices_raw.get(name, {}).items()}
        missing = set(models) - set(prices)
        assert not missing, f"{name}: no price for {sorted(missing)}"
        providers[name] = ProviderSpec(
            name=name,
            api=p["api"],
            base_url=p["base_url"],
            env_prefix=p["env_prefix"],
            video_url_ttl_s=int(p["video_url_ttl_s"]),
            timeout_s=float(p["timeout_s"]),
            max_in_flight=int(p["max_in_flight"]),
            models=models,
            prices=prices,
            max_queued=p.get("max_queued"),
            refreshes_video_url=bool(p.get("refreshes_video_url", False)),
            submit_id_field=dict(p.get("submit_id_field", {})),
        )
    pixel_sizes = {
        family: {
            res: {ratio: (int(wh[0]), int(wh[1])) for ratio, wh in by_ratio.items()}
            for res, by_ratio in by_res.items()
        }
        for family, by_res in raw["pixel_sizes"].items()
    }
    return Facts(
        image_limits=ImageLimits(
            **{**raw["image_limits"], "formats": tuple(raw["image_limits"]["formats"])}
        ),
        pixel_sizes=pixel_sizes,
        providers=providers,
    )


@cache
def load_facts() -> Facts:
    """The facts in force: the packaged table plus any price overrides from the environment."""
    raw = tomllib.loads(FACTS_PATH.read_text(encoding="utf-8"))
    overrides = None
    if path := os.environ.get(PRICES_ENV):
        overrides = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("prices", {})
    return parse_facts(raw, overrides)


def provider_spec(name: str) -> ProviderSpec:
    providers = load_facts().providers
    if name not in providers:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(sorted(providers))}")
    return providers[name]


def nearest_ratio(width: int, height: int, ratios: list[str] | tuple[str, ...]) -> str:
    """The listed ratio closest to width/height: how `adaptive` picks the output shape."""
    return _nearest_ratio(width, height, tuple(ratios))


@lru_cache(maxsize=1024)  # asked once per catalog row, about a handful of image sizes
def _nearest_ratio(width: int, height: int, ratios: tuple[str, ...]) -> str:
    def value(ratio: str) -> float:
        w, h = ratio.split(":")
        return int(w) / int(h)

    target = width / height
    return min(ratios, key=lambda r: abs(value(r) - target))


def output_size(
    family: str, resolution: str, ratio: str | None, image_size: tuple[int, int] | None
) -> tuple[int, int]:
    """Documented output pixel size. `adaptive` (or no ratio) follows the first image; when the image
    is unknown, the largest size of that resolution is returned (a safe upper bound for estimates)."""
    table = load_facts().pixel_sizes[family][resolution]
    if ratio in table:
        return table[ratio]
    if image_size is not None:
        return table[nearest_ratio(image_size[0], image_size[1], tuple(table))]
    return max(table.values(), key=lambda wh: wh[0] * wh[1])
