"""First and last frames of a kept video, decoded with PyAV from any fsspec URL."""

from __future__ import annotations

import av
import fsspec
from PIL import Image


class FramesUnreadable(Exception):
    """The kept copy is missing or cannot be decoded."""


def first_and_last_frames(uri: str, box: int) -> tuple[Image.Image, Image.Image]:
    """The video's first and last frames, each shrunk to fit a `box` × `box` square.

    The last frame is found by seeking to the end (to the keyframe before it) and decoding from
    there, so a long video is not decoded whole."""
    try:
        with fsspec.open(uri, "rb") as f, av.open(f) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            first = next(container.decode(stream), None)
            if first is None:
                raise FramesUnreadable("no frames")
            first_image = _fit(first.to_image(), box)
            last = None
            if container.duration:
                container.seek(container.duration, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    last = frame
            last_image = _fit(last.to_image(), box) if last is not None else first_image
            return first_image, last_image
    except FramesUnreadable:
        raise
    except (OSError, av.error.FFmpegError, IndexError) as exc:
        raise FramesUnreadable(f"{type(exc).__name__}: {exc}") from None


def still_image(uri: str, box: int) -> Image.Image:
    """A kept still (the provider's last frame), shrunk to fit a `box` × `box` square."""
    try:
        with fsspec.open(uri, "rb") as f, Image.open(f) as image:
            return _fit(image, box)
    except (OSError, SyntaxError) as exc:
        raise FramesUnreadable(f"{type(exc).__name__}: {exc}") from None


def _fit(image: Image.Image, box: int) -> Image.Image:
    image = image.convert("RGB")
    image.thumbnail((box, box), Image.Resampling.BILINEAR)
    return image
