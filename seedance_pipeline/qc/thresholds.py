"""The limits a kept video is judged by, with their documented defaults.

Each can be moved through its `SEEDANCE_QC_*` environment variable (settings.py lists them); the
defaults let a clip that moves, matches its request and starts on its input image pass, and catch
the bad kinds a dataset cannot use: black, frozen, the wrong length or size, an ignored image.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QcThresholds:
    # A frame is black when its mean luma (0-255, full range) is under this.
    black_luma: float = 20.0
    # Share of black (sampled) frames from which a clip warns, and from which it fails.
    black_warn_share: float = 0.1
    black_fail_share: float = 0.5
    # Two sampled frames (`sample_fps` apart) are "near-identical" when their mean absolute luma
    # difference, on the downscaled frames, is under this.
    frozen_diff: float = 0.5
    # Share of near-identical consecutive sampled frames from which a clip warns, and fails.
    frozen_warn_share: float = 0.5
    frozen_fail_share: float = 0.9
    # Frames per second compared for motion: a slow pan moves too little between two frames at
    # 24 fps to tell it from a still, but plainly between frames 1/6 s apart.
    sample_fps: float = 6.0
    # Fidelity: SSIM of the first frame against the input image (last frame against last_image)
    # under which a clip fails (it ignored its image), and under which it warns.
    ssim_fail: float = 0.3
    ssim_warn: float = 0.5
    # Conformance: how far the measured duration may be from the requested one, in seconds,
    # and the decoded frame count from fps × measured duration, in frames.
    duration_tolerance_s: float = 0.5
    frame_tolerance: int = 2
    # The long side, in pixels, frames and images are reduced to before they are compared.
    analysis_px: int = 160
    # QC retry (`seedance-pipeline retry --qc-fail`): at most this many attempts of one request,
    # the first included, so a prompt that keeps failing QC stops costing money.
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.sample_fps <= 0:
            raise ValueError(f"sample_fps must be above 0: {self.sample_fps}")
        if self.analysis_px < 32:
            raise ValueError(
                f"analysis_px must be at least 32 (SSIM needs room): {self.analysis_px}"
            )
