"""First and last frames come from the right ends of the video; broken copies are reported."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from seedance_pipeline.emulator.video import render_mp4
from seedance_pipeline.reports.frames import FramesUnreadable, first_and_last_frames


def test_first_and_last_frames_are_the_ends_of_the_clip(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (180, 1))
    buffer = io.BytesIO()
    Image.fromarray(np.stack([ramp, 255 - ramp, ramp], axis=-1)).save(buffer, "PNG")
    video = tmp_path / "clip.mp4"
    video.write_bytes(render_mp4(buffer.getvalue(), 256, 144, 2))  # pans across the ramp
    with av.open(str(video)) as container:
        decoded = [f.to_image() for f in container.decode(video=0)]
    first, last = first_and_last_frames(str(video), 64)
    assert first.size == last.size == (64, 36)
    for got, want in ((first, decoded[0]), (last, decoded[-1])):
        want = want.resize(got.size, Image.Resampling.BILINEAR)
        assert np.abs(np.asarray(got, float) - np.asarray(want, float)).mean() < 3
    assert np.abs(np.asarray(first, float) - np.asarray(last, float)).mean() > 3


def test_a_missing_or_broken_copy_is_unreadable(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    for uri in (str(broken), str(tmp_path / "missing.mp4")):
        with pytest.raises(FramesUnreadable):
            first_and_last_frames(uri, 64)
