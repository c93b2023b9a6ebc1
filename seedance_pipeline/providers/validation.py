"""Validation of a request against a model's documented limits, before any network call.

Every violation of a request is reported at once, worded so that whoever wrote the catalog row can
fix it without reading provider documentation.
"""

from __future__ import annotations

from collections.abc import Mapping

from seedance_pipeline.providers.facts import ImageLimits, ModelSpec, load_facts
from seedance_pipeline.providers.images import ImageUnreadable, inspect_image, is_url
from seedance_pipeline.providers.models import GenerationRequest, ImageInfo, Violation

_OPTION_LABELS = {
    "last_image": "a last frame image",
    "camera_fixed": "camera_fixed",
    "seed": "a seed",
    "watermark": "watermark",
    "generate_audio": "generate_audio",
    "service_tier": "service_tier",
    "fps": "fps",
    "execution_expires_after": "execution_expires_after",
    "return_last_frame": "return_last_frame (the last frame as an image)",
    "draft": "draft previews",
    "from_draft": "finals from a draft (from_draft)",
}


def image_violations(field: str, info: ImageInfo, limits: ImageLimits) -> list[Violation]:
    """The shared image rules: format, bytes, sides and aspect ratio."""
    found: list[Violation] = []
    if info.format not in limits.formats:
        allowed = ", ".join(f.lower() for f in limits.formats)
        found.append(
            Violation(
                field,
                f"format {info.format or 'unknown'} is not accepted (use {allowed})",
                "format",
            )
        )
    if info.bytes > limits.max_bytes:
        found.append(
            Violation(
                field,
                f"{info.bytes:,} bytes is over the {limits.max_bytes / 1e6:.0f} MB "
                f"({limits.max_bytes:,} bytes) limit",
                "bytes",
            )
        )
    if info.truncated:
        found.append(
            Violation(field, "the file is truncated (an incomplete copy or download?)", "truncated")
        )
    # Not in the documents: refused rather than paid for with undefined results [guess].
    if info.mode == "CMYK":
        found.append(
            Violation(field, "CMYK colour is not accepted; save the image as RGB", "colour_mode")
        )
    elif info.mode.startswith("I;16") or info.mode in ("I", "F"):
        found.append(
            Violation(
                field,
                f"{info.mode} (16/32-bit) pixels are not accepted; save as 8-bit",
                "bit_depth",
            )
        )
    if info.frames > 1:
        found.append(
            Violation(field, "animated images are not accepted; use a still frame", "animated")
        )
    short, long = sorted((info.width, info.height))
    if short <= limits.short_side_gt:
        found.append(
            Violation(
                field,
                f"short side {short} px must be greater than {limits.short_side_gt} px",
                "short_side",
            )
        )
    if long >= limits.long_side_lt:
        found.append(
            Violation(
                field,
                f"long side {long} px must be less than {limits.long_side_lt} px",
                "long_side",
            )
        )
    ratio = info.width / info.height
    if not limits.ratio_gt < ratio < limits.ratio_lt:
        found.append(
            Violation(
                field,
                f"aspect ratio {info.width}x{info.height} = {ratio:.2f} must be between "
                f"{limits.ratio_gt} and {limits.ratio_lt}, both excluded (width / height, as "
                "displayed)",
                "ratio",
            )
        )
    return found


def _image_ref_violations(
    field: str, ref: str, known: ImageInfo | None, limits: ImageLimits
) -> list[Violation]:
    if not isinstance(ref, str) or not ref.strip():
        return [Violation(field, "no image given", "missing")]
    if "://" in ref and not is_url(ref):
        scheme = ref.split("://", 1)[0]
        return [
            Violation(
                field,
                f"scheme {scheme}:// is not supported (use an http(s) URL or a local path)",
                "scheme",
            )
        ]
    info = known
    if info is None and not is_url(ref):
        try:
            info = inspect_image(ref)
        except ImageUnreadable as exc:
            return [Violation(field, str(exc), "unreadable")]
    # An http(s) image whose header the caller did not fetch cannot be checked here.
    return image_violations(field, info, limits) if info is not None else []


def validate_request(
    request: GenerationRequest,
    model: ModelSpec,
    images: Mapping[str, ImageInfo] | None = None,
) -> list[Violation]:
    """Every way `request` breaks `model`'s documented limits; an empty list means it may be sent.

    `images` may carry already-inspected headers keyed by reference (e.g. for URLs the caller
    fetched); local files not in it are inspected here.
    """
    images = images or {}
    limits = load_facts().image_limits
    where = f"{model.id} at {request.provider}"
    found: list[Violation] = []

    found += _image_ref_violations("image", request.image, images.get(request.image), limits)
    if request.last_image is not None:
        found += _image_ref_violations(
            "last_image", request.last_image, images.get(request.last_image), limits
        )

    prompt = request.prompt
    if not isinstance(prompt, str):
        found.append(Violation("prompt", "must be text", "prompt"))
    elif model.prompt_required and not prompt.strip():
        found.append(Violation("prompt", f"is required by {where}", "prompt"))
    elif len(prompt) > model.prompt_max_chars:
        found.append(
            Violation(
                "prompt",
                f"{len(prompt)} characters is over the {model.prompt_max_chars} limit",
                "prompt",
            )
        )

    if request.resolution is not None and request.resolution not in model.resolutions:
        found.append(
            Violation(
                "resolution",
                f"{request.resolution!r} is not offered by {where} (use {', '.join(model.resolutions)})",
                "enum",
            )
        )
    if request.aspect_ratio is not None:
        if not model.aspect_ratios:
            found.append(
                Violation(
                    "aspect_ratio",
                    f"{where} takes no aspect ratio (the video follows the image); leave it empty",
                    "unsupported",
                )
            )
        elif request.aspect_ratio not in model.aspect_ratios:
            found.append(
                Violation(
                    "aspect_ratio",
                    f"{request.aspect_ratio!r} is not offered by {where} "
                    f"(use {', '.join(model.aspect_ratios)})",
                    "enum",
                )
            )
    if request.duration is not None and (
        isinstance(request.duration, bool)
        or not isinstance(request.duration, int)
        or not model.allows_duration(request.duration)
    ):
        found.append(
            Violation(
                "duration",
                f"{request.duration!r} s is not offered by {where} (use {model.duration_words()})",
                "duration",
            )
        )

    for option, label in _OPTION_LABELS.items():
        if getattr(request, option) is not None and option not in model.options:
            found.append(
                Violation(
                    option, f"{where} does not support {label}; leave it empty", "unsupported"
                )
            )

    if request.seed is not None and "seed" in model.options:
        low, high = model.seed_range
        if (
            isinstance(request.seed, bool)
            or not isinstance(request.seed, int)
            or not low <= request.seed <= high
        ):
            hint = " (leave it empty for a random seed)" if request.seed == -1 else ""
            found.append(
                Violation(
                    "seed", f"{request.seed!r} is outside {low}…{high} for {where}{hint}", "seed"
                )
            )
    if request.fps is not None and "fps" in model.options and request.fps not in model.fps:
        found.append(
            Violation(
                "fps",
                f"{request.fps} is not offered (use {', '.join(map(str, model.fps))})",
                "enum",
            )
        )
    if (
        request.service_tier is not None
        and "service_tier" in model.options
        and request.service_tier not in model.service_tiers
    ):
        found.append(
            Violation(
                "service_tier",
                f"{request.service_tier!r} is not one of {', '.join(model.service_tiers)}",
                "enum",
            )
        )
    if "draft" in model.options:
        found += _draft_violations(request, model)
    expires = request.execution_expires_after
    if expires is not None and model.execution_expires_after_range is not None:
        low, high = model.execution_expires_after_range
        if not low <= expires <= high:
            found.append(
                Violation(
                    "execution_expires_after", f"{expires} s is outside {low}–{high} s", "range"
                )
            )
    return found


def _draft_violations(request: GenerationRequest, model: ModelSpec) -> list[Violation]:
    """A draft is made at one resolution, without its last frame, not on the flex tier; a final
    is made from a draft, so it cannot be one."""
    found: list[Violation] = []
    if request.from_draft is not None and (
        not isinstance(request.from_draft, str) or not request.from_draft.strip()
        or len(request.from_draft) > 128 or any(c.isspace() for c in request.from_draft)
    ):  # fmt: skip
        found.append(Violation("from_draft", "must be the draft's task id (task_id in the ledger)"))
    if not request.draft:
        return found
    if request.from_draft is not None:
        found.append(
            Violation("draft", "a final made from a draft cannot itself be a draft", "conflict")
        )
    if request.resolution is not None and request.resolution != model.draft_resolution:
        found.append(
            Violation(
                "resolution",
                f"a draft is made at {model.draft_resolution} only; leave resolution empty or "
                f"use {model.draft_resolution}",
                "draft",
            )
        )
    if request.return_last_frame:
        found.append(
            Violation("return_last_frame", "a draft has no last frame; leave it empty", "draft")
        )
    if request.service_tier == "flex":
        found.append(
            Violation("service_tier", "a draft cannot run on the flex tier; use default", "draft")
        )
    return found
