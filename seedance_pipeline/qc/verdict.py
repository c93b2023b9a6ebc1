"""The verdict on one kept video: `pass`, `warn` or `fail`, its reasons, and the figures behind it,
as the state store keeps them (`qc_*` columns) and the ledger shows them.

QC never changes a request's status: the provider delivered and billed the video. A `fail` says a
dataset should not use it (and a retry may replace it); a `warn` says look before using it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from seedance_pipeline.providers.models import GenerationRequest
from seedance_pipeline.qc.expected import Expected, expected_for, reference_image
from seedance_pipeline.qc.measure import VideoFigures, VideoUndecodable, measure_video
from seedance_pipeline.qc.similarity import psnr, ssim
from seedance_pipeline.qc.thresholds import QcThresholds

log = logging.getLogger(__name__)

PASS, WARN, FAIL = "pass", "warn", "fail"
# The state store's (and the ledger's) QC columns, in this order.
QC_COLUMNS = ("qc_status", "qc_reasons", "qc_frames", "qc_audio", "qc_black_share", "qc_motion",
              "qc_frozen_share", "qc_first_psnr", "qc_first_ssim", "qc_last_psnr",
              "qc_last_ssim")  # fmt: skip


@dataclass(frozen=True)
class QcResult:
    qc_status: str
    qc_reasons: str | None  # "; "-separated, worst first; None when it passed
    qc_frames: int | None = None
    qc_audio: bool | None = None
    qc_black_share: float | None = None
    qc_motion: float | None = None
    qc_frozen_share: float | None = None
    qc_first_psnr: float | None = None
    qc_first_ssim: float | None = None
    qc_last_psnr: float | None = None
    qc_last_ssim: float | None = None

    def columns(self) -> dict[str, Any]:
        """The store's `qc_*` values, to set in the move that keeps the video."""
        return asdict(self)


def check_video(
    uri: str,
    request: GenerationRequest,
    image_size: tuple[int, int] | None,
    thresholds: QcThresholds,
) -> QcResult:
    """Measure the kept video at `uri` against what `request` asked for."""
    try:
        figures = measure_video(uri, thresholds)
    except VideoUndecodable as exc:
        return QcResult(FAIL, f"undecodable: {exc}")
    expected = expected_for(request, image_size)
    height, width = figures.first.shape
    first = reference_image(request.image, width, height)
    last = reference_image(request.last_image, width, height)
    first_psnr = psnr(figures.first, first) if first is not None else None
    first_ssim = ssim(figures.first, first) if first is not None else None
    last_psnr = psnr(figures.last, last) if last is not None else None
    last_ssim = ssim(figures.last, last) if last is not None else None
    reasons = judge(figures, expected, first_ssim, last_ssim, thresholds)
    status = FAIL if any(s == FAIL for s, _ in reasons) else WARN if reasons else PASS
    reasons.sort(key=lambda r: r[0] != FAIL)
    return QcResult(
        qc_status=status,
        qc_reasons="; ".join(text for _, text in reasons) or None,
        qc_frames=figures.frames,
        qc_audio=figures.has_audio,
        qc_black_share=round(figures.black_share, 4),
        qc_motion=round(figures.motion, 3),
        qc_frozen_share=round(figures.frozen_share, 4),
        qc_first_psnr=_rounded(first_psnr, 2),
        qc_first_ssim=_rounded(first_ssim, 4),
        qc_last_psnr=_rounded(last_psnr, 2),
        qc_last_ssim=_rounded(last_ssim, 4),
    )


def checked_columns(
    uri: str,
    request: GenerationRequest,
    image_size: tuple[int, int] | None,
    thresholds: QcThresholds,
) -> dict[str, Any]:
    """`check_video`'s columns, or none when QC itself breaks: a bug in measuring must never
    stop a paid video from being recorded as kept (the row then has no verdict)."""
    try:
        return check_video(uri, request, image_size, thresholds).columns()
    except Exception:
        log.exception("QC of %s failed; the video is kept without a verdict", uri)
        return {}


def judge(
    figures: VideoFigures,
    expected: Expected,
    first_ssim: float | None,
    last_ssim: float | None,
    t: QcThresholds,
) -> list[tuple[str, str]]:
    """(severity, reason) for every limit the video misses."""
    reasons: list[tuple[str, str]] = []
    if expected.width is not None and (figures.width, figures.height) != (
        expected.width,
        expected.height,
    ):
        reasons.append((FAIL, f"size {figures.width}x{figures.height}, documented "
                              f"{expected.width}x{expected.height}"))  # fmt: skip
    if expected.duration_s is not None:
        off = abs(figures.duration_s - expected.duration_s)
        if off > t.duration_tolerance_s:
            reasons.append((FAIL, f"duration {figures.duration_s:.2f} s, asked "
                                  f"{expected.duration_s} s"))  # fmt: skip
    if figures.fps:
        frames_due = figures.fps * figures.duration_s
        if abs(figures.frames - frames_due) > t.frame_tolerance:
            reasons.append((FAIL, f"{figures.frames} frames decoded, {frames_due:.0f} due "
                                  f"({figures.fps:g} fps × {figures.duration_s:.2f} s)"))  # fmt: skip
    if figures.has_audio != expected.audio:
        reasons.append((FAIL, "no audio stream, audio was asked for" if expected.audio
                              else "an audio stream, no audio was asked for"))  # fmt: skip
    black = f"{figures.black_share:.0%} of frames black"
    if figures.black_share >= t.black_fail_share:
        reasons.append((FAIL, black))
    elif figures.black_share >= t.black_warn_share:
        reasons.append((WARN, black))
    frozen = f"frozen: {figures.frozen_share:.0%} of sampled frames unchanged (motion {figures.motion:.2f})"
    if figures.frozen_share >= t.frozen_fail_share:
        reasons.append((FAIL, frozen))
    elif figures.frozen_share >= t.frozen_warn_share:
        reasons.append((WARN, frozen))
    for which, score in (("first frame", first_ssim), ("last frame", last_ssim)):
        image = "input image" if which == "first frame" else "last_image"
        if score is None:
            continue
        text = f"{which} unlike the {image} (SSIM {score:.2f})"
        if score < t.ssim_fail:
            reasons.append((FAIL, text))
        elif score < t.ssim_warn:
            reasons.append((WARN, text))
    return reasons


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
