"""What a request should have produced: its documented pixel size, duration and audio (facts.toml),
and its input images as the video should show them.

The input images are read from where the catalog named them (a path or fsspec URL). An http(s)
image is not fetched: QC uses no network, so such a row has no fidelity figures.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import fsspec
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from seedance_pipeline.providers.facts import load_facts, output_size
from seedance_pipeline.providers.models import GenerationRequest


@dataclass(frozen=True)
class Expected:
    width: int | None  # None: the model is not in facts.toml (nothing to compare with)
    height: int | None
    duration_s: int | None
    audio: bool


def expected_for(request: GenerationRequest, image_size: tuple[int, int] | None) -> Expected:
    """The request resolved to the model's defaults, as the provider renders it."""
    provider = load_facts().providers.get(request.provider)
    model = provider.models.get(request.model) if provider else None
    if model is None:
        return Expected(None, None, request.duration, bool(request.generate_audio))
    resolution = request.resolution or model.default_resolution
    ratio = request.aspect_ratio or model.default_aspect_ratio
    width, height = output_size(model.family, resolution, ratio, image_size)
    return Expected(
        width,
        height,
        request.duration or model.default_duration,
        model.with_audio(request.generate_audio),
    )


def reference_image(ref: str | None, width: int, height: int) -> np.ndarray | None:
    """The image at `ref` as the video shows it: upright, cropped to the video's shape, grayscale
    at `width × height`. None when there is none, it is remote (http) or it cannot be read."""
    if not ref or ref.startswith(("http://", "https://")):
        return None
    return _reference(ref, width, height)


@functools.lru_cache(maxsize=16)  # catalogs reuse images: read and reduce each once
def _reference(ref: str, width: int, height: int) -> np.ndarray | None:
    try:
        with fsspec.open(ref, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as opened:
            opened.draft("L", (width * 2, height * 2))  # JPEG: decode at a fraction of the size
            upright = ImageOps.exif_transpose(opened).convert("L")
            fitted = ImageOps.fit(upright, (width, height), method=Image.Resampling.BILINEAR)
        return np.asarray(fitted)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
