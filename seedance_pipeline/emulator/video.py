"""Real MP4 files for the emulator, made from the task's input image with PyAV.

The clip is H.264 at the documented pixel size and 24 fps; like the real service, a "5 s" clip has
`5 × 24 + 1 = 121` frames (about 5.04 s). It starts on the input image itself and moves, so that a
good clip passes QC: the camera slowly pans (the far edges mirrored in) while a band of light
sweeps across, which moves even over a flat image. With a `last_image` the clip fades into it and
ends on it; with audio asked for, it carries a silent AAC track.

Faults (`Faults.bad_video`) make the bad kinds QC must catch: all black, frozen on its first frame,
the wrong duration, or a first frame unrelated to the input image. Every frame is a numpy slice of
one prepared picture plus a narrow band, so a clip costs little more than its encoding.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
from PIL import Image, ImageOps

BAD_VIDEOS = ("black", "frozen", "wrong_duration", "unrelated")
_LIGHT = np.uint8(28)  # how much the band of light brightens what it sweeps over
_AUDIO_RATE = 48_000
_AUDIO_SAMPLES = 1024  # per AAC frame


def _pan_px(width: int, height: int) -> int:
    """How far the camera drifts over the clip: a sixteenth of the short side (more motion
    costs the encoder more, and the band of light already moves over any picture)."""
    return max(4, min(width, height) // 16)


def _picture(image: bytes | None, width: int, height: int) -> np.ndarray:
    """The input image as the first frame shows it: upright, cropped to the clip's shape."""
    if image is None:
        # An image the emulator could not fetch (a URL off this machine): a neutral gradient.
        ramp = np.linspace(40, 200, width, dtype=np.uint8)
        return np.stack([np.tile(ramp, (height, 1))] * 3, axis=-1)
    with Image.open(io.BytesIO(image)) as opened:
        upright = ImageOps.exif_transpose(opened).convert("RGB")
        fitted = ImageOps.fit(upright, (width, height), method=Image.Resampling.BILINEAR)
    return np.asarray(fitted)


def _unrelated(width: int, height: int) -> np.ndarray:
    """A picture that has nothing to do with any input: coloured checks over diagonal stripes."""
    y, x = np.mgrid[0:height, 0:width]
    checks = ((x // max(8, width // 12) + y // max(8, height // 7)) % 2) * 120
    stripes = ((x + y) // max(4, width // 40) % 2) * 60
    return np.stack([checks + stripes, 200 - checks, stripes * 3], axis=-1).astype(np.uint8)


def _padded(picture: np.ndarray, pan: int) -> np.ndarray:
    """The picture with `pan` mirrored pixels below and to the right: the pan's window."""
    return np.pad(picture, ((0, pan), (0, pan), (0, 0)), mode="reflect")


def render_last_frame(
    image: bytes | None, width: int, height: int, last_image: bytes | None = None
) -> bytes:
    """The clip's last frame as a PNG, what `return_last_frame` asks ModelArk for."""
    if last_image is not None:
        window = _picture(last_image, width, height)
    else:
        pan = _pan_px(width, height)
        padded = _padded(_picture(image, width, height), pan)
        window = np.ascontiguousarray(padded[pan : pan + height, pan : pan + width])
    out = io.BytesIO()
    Image.fromarray(window).save(out, "PNG")
    return out.getvalue()


def render_mp4(
    image: bytes | None,
    width: int,
    height: int,
    duration_s: int,
    fps: int = 24,
    *,
    last_image: bytes | None = None,
    audio: bool = False,
    defect: str | None = None,
) -> bytes:
    if defect is not None and defect not in BAD_VIDEOS:
        raise ValueError(f"unknown bad video {defect!r}; known: {', '.join(BAD_VIDEOS)}")
    if defect == "wrong_duration":
        duration_s = duration_s // 2 if duration_s >= 2 else duration_s + 2
    frames = duration_s * fps + 1
    picture = _unrelated(width, height) if defect == "unrelated" else _picture(image, width, height)
    pan = _pan_px(width, height)
    padded = _padded(picture, pan)
    ending = _picture(last_image, width, height) if last_image is not None else None
    fade_from = frames - max(2, frames // 3)  # the last third fades into last_image
    band = max(8, width // 6)
    lit = np.minimum(padded, 255 - _LIGHT) + _LIGHT  # the picture under the band of light
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=fps, options={"preset": "ultrafast", "crf": "30"}
        )
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=_AUDIO_RATE) if audio else None
        for i in range(frames):
            if defect == "black":
                window = np.zeros((height, width, 3), np.uint8)
            elif defect == "frozen":
                window = padded[:height, :width]
            else:
                shift = round(pan * i / max(1, frames - 1))
                window = np.array(padded[shift : shift + height, shift : shift + width], order="C")
                left = round(-band + (width + band) * i / max(1, frames - 1))
                lo, hi = max(0, left), min(width, left + band)
                if hi > lo:  # off-screen on the first and the last frame
                    window[:, lo:hi] = lit[shift : shift + height, shift + lo : shift + hi]
                if ending is not None and i >= fade_from:
                    weight = round(256 * (i - fade_from + 1) / (frames - fade_from))  # of 256
                    mixed = window.astype(np.uint16) * (256 - weight) + ending * np.uint16(weight)
                    window = (mixed // 256).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(window), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _silence(container, sound, frames / fps)
    return out.getvalue()


def _silence(
    container: av.container.OutputContainer, stream: av.AudioStream, seconds: float
) -> None:
    """A silent track as long as the video."""
    silent = np.zeros((1, _AUDIO_SAMPLES), np.float32)
    for n in range(int(seconds * _AUDIO_RATE) // _AUDIO_SAMPLES):
        frame = av.AudioFrame.from_ndarray(silent, format="fltp", layout="mono")
        frame.sample_rate = _AUDIO_RATE
        frame.pts = n * _AUDIO_SAMPLES
        frame.time_base = Fraction(1, _AUDIO_RATE)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
