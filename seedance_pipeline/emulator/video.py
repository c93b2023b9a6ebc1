"""Real MP4 files for the emulator, made from the task's input image with PyAV.

The clip is H.264 at the documented pixel size and 24 fps; like the real service, a "5 s" clip has
`5 × 24 + 1 = 121` frames (about 5.04 s). The image slowly pans so that first and last frames differ.
"""

from __future__ import annotations

import io

import av
import numpy as np
from PIL import Image, ImageOps

_PAN_PX = 24  # how far the camera drifts over the clip


def _base_frame(image: bytes | None, width: int, height: int) -> np.ndarray:
    size = (width + _PAN_PX, height + _PAN_PX)
    if image is None:
        # An image the emulator could not fetch (a URL off this machine): a neutral gradient.
        ramp = np.linspace(40, 200, size[0], dtype=np.uint8)
        frame = np.stack([np.tile(ramp, (size[1], 1))] * 3, axis=-1)
        return frame
    with Image.open(io.BytesIO(image)) as opened:
        upright = ImageOps.exif_transpose(opened).convert("RGB")
        fitted = ImageOps.fit(upright, size, method=Image.Resampling.BILINEAR)
    return np.asarray(fitted)


def render_last_frame(image: bytes | None, width: int, height: int) -> bytes:
    """The clip's last frame as a PNG, what `return_last_frame` asks ModelArk for."""
    base = _base_frame(image, width, height)
    window = np.ascontiguousarray(base[_PAN_PX : _PAN_PX + height, _PAN_PX : _PAN_PX + width])
    out = io.BytesIO()
    Image.fromarray(window).save(out, "PNG")
    return out.getvalue()


def render_mp4(
    image: bytes | None, width: int, height: int, duration_s: int, fps: int = 24
) -> bytes:
    base = _base_frame(image, width, height)
    frames = duration_s * fps + 1
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264", rate=fps, options={"preset": "ultrafast", "crf": "30"}
        )
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            shift = round(_PAN_PX * i / max(1, frames - 1))
            window = np.ascontiguousarray(base[shift : shift + height, shift : shift + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(window, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()
