"""QC's measures on videos the emulator renders: conformance to the documented size and audio,
similarity scores that tell an image from an unrelated one, limits moved by the environment."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seedance_pipeline.emulator.video import render_mp4
from seedance_pipeline.providers.models import GenerationRequest
from seedance_pipeline.qc import QcThresholds, check_video, checked_columns
from seedance_pipeline.qc.similarity import psnr, ssim
from seedance_pipeline.settings import settings_from

MODEL = "seedance-1-0-pro-250528"  # 480p 16:9 is 864 × 480, no audio (facts.toml)


def picture(width: int = 640, height: int = 360) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    wave = 128 + 90 * np.sin(x / 13) * np.cos(y / 9)
    rgb = np.stack([x * 255 // width, wave, y * 255 // height], axis=-1).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


def request(image: Path, **given: object) -> GenerationRequest:
    return GenerationRequest(provider="modelark", model=MODEL, image=str(image), resolution="480p",
                             aspect_ratio="16:9", duration=2, **given)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "input.png"
    path.write_bytes(picture())
    return path


def test_a_good_clip_of_the_documented_size_passes(tmp_path: Path, image: Path) -> None:
    video = tmp_path / "good.mp4"
    video.write_bytes(render_mp4(image.read_bytes(), 864, 480, 2))
    result = check_video(str(video), request(image), (640, 360), QcThresholds())
    assert (result.qc_status, result.qc_reasons) == ("pass", None)
    assert result.qc_frames == 49 and result.qc_audio is False


def test_the_wrong_size_and_an_unasked_audio_track_fail_conformance(
    tmp_path: Path, image: Path
) -> None:
    video = tmp_path / "odd.mp4"
    video.write_bytes(render_mp4(image.read_bytes(), 640, 480, 2, audio=True))
    result = check_video(str(video), request(image), (640, 360), QcThresholds())
    assert result.qc_status == "fail"
    assert "size 640x480, documented 864x480" in (result.qc_reasons or "")
    assert "an audio stream, no audio was asked for" in (result.qc_reasons or "")


def test_audio_asked_of_a_model_with_audio_must_be_there(tmp_path: Path, image: Path) -> None:
    video = tmp_path / "silent.mp4"
    video.write_bytes(render_mp4(image.read_bytes(), 864, 480, 4))
    asked = GenerationRequest(provider="modelark", model="seedance-1-5-pro-251215", image=str(image),
                              resolution="480p", aspect_ratio="16:9", duration=4)  # fmt: skip
    result = check_video(str(video), asked, (640, 360), QcThresholds())
    assert "no audio stream, audio was asked for" in (result.qc_reasons or "")


def test_an_unreadable_copy_fails_qc_instead_of_raising(tmp_path: Path, image: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0\0\0\x18ftypmp42" + b"garbage" * 100)
    result = check_video(str(broken), request(image), None, QcThresholds())
    assert result.qc_status == "fail" and (result.qc_reasons or "").startswith("undecodable")


def brute_force_ssim(a: np.ndarray, b: np.ndarray, w: int = 7) -> float:
    """SSIM by its definition, window by window (sample variances, as scikit-image)."""
    c1, c2, scores = (0.01 * 255) ** 2, (0.03 * 255) ** 2, []
    for i in range(a.shape[0] - w + 1):
        for j in range(a.shape[1] - w + 1):
            x, y = a[i : i + w, j : j + w].astype(float), b[i : i + w, j : j + w].astype(float)
            cov = np.cov(x.ravel(), y.ravel())
            scores.append((2 * x.mean() * y.mean() + c1) * (2 * cov[0, 1] + c2)
                          / ((x.mean() ** 2 + y.mean() ** 2 + c1) * (cov[0, 0] + cov[1, 1] + c2)))  # fmt: skip
    return float(np.mean(scores))


def test_ssim_is_the_textbook_formula_and_ranks_likeness() -> None:
    rng = np.random.default_rng(0)
    base = np.asarray(Image.open(io.BytesIO(picture(160, 90))).convert("L"))
    noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    other = rng.integers(0, 256, base.shape, dtype=np.uint8)
    crop = (slice(0, 24), slice(0, 30))
    assert ssim(base[crop], noisy[crop]) == pytest.approx(brute_force_ssim(base[crop], noisy[crop]))
    assert ssim(base, base) == pytest.approx(1.0) and psnr(base, base) == 100.0
    assert 0.5 < ssim(base, noisy) < 0.95 and ssim(base, other) < 0.1
    assert psnr(base, noisy) > 25 > psnr(base, other)


def test_the_limits_come_from_the_environment_or_their_defaults() -> None:
    moved = settings_from({"SEEDANCE_QC_BLACK_LUMA": "35", "SEEDANCE_QC_FRAME_TOLERANCE": "4"})
    assert moved.qc.black_luma == 35.0 and moved.qc.frame_tolerance == 4
    assert settings_from({}).qc == QcThresholds()
    with pytest.raises(ValueError, match="SEEDANCE_QC_SSIM_FAIL must be a number"):
        settings_from({"SEEDANCE_QC_SSIM_FAIL": "high"})


def test_a_black_clip_fails_only_under_its_threshold(tmp_path: Path, image: Path) -> None:
    video = tmp_path / "black.mp4"
    video.write_bytes(render_mp4(image.read_bytes(), 864, 480, 2, defect="black"))
    strict = check_video(str(video), request(image), None, QcThresholds())
    assert strict.qc_black_share == 1.0 and "100% of frames black" in (strict.qc_reasons or "")
    lax = check_video(str(video), request(image), None, QcThresholds(black_luma=0.0))
    assert lax.qc_black_share == 0.0 and "black" not in (lax.qc_reasons or "")


def test_a_bug_in_qc_leaves_the_video_kept_without_a_verdict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, image: Path
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("a bug in measuring")

    monkeypatch.setattr("seedance_pipeline.qc.verdict.measure_video", broken)
    video = tmp_path / "good.mp4"
    video.write_bytes(render_mp4(image.read_bytes(), 864, 480, 2))
    assert checked_columns(str(video), request(image), None, QcThresholds()) == {}
