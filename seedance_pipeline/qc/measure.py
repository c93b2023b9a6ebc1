"""What a video file is, measured in one decoding pass with PyAV and numpy.

Speed: every frame must be decoded (H.264 predicts each frame from the previous ones), but only
the sampled ones (`sample_fps`, 6 a second) and the last are turned into small grayscale arrays,
by PyAV's own scaler (`analysis_px` on the long side); motion, black share and the first and last
frames are read from those. A 5 s 720p clip takes about 0.1 s on one core, 1.2 to 1.9 × a
bare decode of the same clip (BENCHMARKS.md, `qc`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import av
import fsspec
import numpy as np

from seedance_pipeline.qc.thresholds import QcThresholds


@dataclass(frozen=True)
class VideoFigures:
    width: int
    height: int
    fps: float
    duration_s: float
    frames: int  # decoded video frames
    has_audio: bool
    black_share: float  # share of sampled frames whose mean luma is under `black_luma`
    motion: float  # mean absolute luma difference of consecutive sampled frames (0-255)
    frozen_share: float  # share of those pairs under `frozen_diff`
    first: np.ndarray  # the first and last frames, grayscale at the analysis size
    last: np.ndarray


class VideoUndecodable(Exception):
    """The file cannot be decoded into frames; the message says why on one line."""


def analysis_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """`width × height` scaled so its long side is `long_side` (never larger), in even pixels."""
    scale = min(1.0, long_side / max(width, height))
    return max(8, round(width * scale / 2) * 2), max(8, round(height * scale / 2) * 2)


@contextlib.contextmanager
def _opened(uri: str) -> Iterator[str | IO[bytes]]:
    """A local path as it is (PyAV reads it directly); any fsspec URL as a file object."""
    if "://" not in uri or uri.startswith("file://"):
        yield uri.removeprefix("file://")
        return
    with fsspec.open(uri, "rb") as f:
        yield f


def measure_video(uri: str, thresholds: QcThresholds) -> VideoFigures:
    """Decode the video at `uri` (a path or fsspec URL) once and measure it."""
    try:
        with _opened(uri) as source, av.open(source, mode="r") as container:
            if not container.streams.video:
                raise VideoUndecodable("the file has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # frame threads where there are cores; harmless on one
            fps = float(stream.average_rate or 0)
            # The video stream's own duration: an audio track may run a little longer.
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
            width, height = stream.width, stream.height
            small_w, small_h = analysis_size(width, height, thresholds.analysis_px)
            stride = max(1, round(fps / thresholds.sample_fps)) if fps else 1
            has_audio = bool(container.streams.audio)
            frames = black = sampled = 0
            first = previous = None
            final: av.VideoFrame | None = None
            diffs: list[float] = []
            for frame in container.decode(stream):
                if frames % stride == 0:
                    small = frame.to_ndarray(width=small_w, height=small_h, format="gray")
                    sampled += 1
                    black += float(small.mean()) < thresholds.black_luma
                    if previous is not None:
                        diffs.append(_mean_abs_diff(small, previous))
                    previous = small
                    if first is None:
                        first = small
                final = frame
                frames += 1
            last = (
                None
                if final is None
                else final.to_ndarray(width=small_w, height=small_h, format="gray")
            )
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoUndecodable(f"{type(exc).__name__}: {exc}".splitlines()[0][:200]) from None
    if first is None or last is None:
        raise VideoUndecodable("the video stream holds no frame")
    return VideoFigures(
        width=width,
        height=height,
        fps=fps,
        duration_s=round(duration, 3),
        frames=frames,
        has_audio=has_audio,
        black_share=black / sampled,
        motion=float(np.mean(diffs)) if diffs else 0.0,
        frozen_share=(sum(d < thresholds.frozen_diff for d in diffs) / len(diffs))
        if diffs
        else 1.0,
        first=first,
        last=last,
    )


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))
