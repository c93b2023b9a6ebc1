"""Every documented validation rule, proved with real image files made by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from seedance_pipeline.providers import GenerationRequest, adapter_for
from seedance_pipeline_tests.conftest import MODELS, ImageFactory

LITE = ("novita", "seedance-v1-lite-i2v")


def violations(
    image: Path | str, provider: str = LITE[0], model: str = LITE[1], **fields: object
) -> list:
    request = GenerationRequest(provider=provider, model=model, image=str(image), **fields)  # type: ignore[arg-type]
    return adapter_for(provider).validate(request)


def rules(found: list) -> set[tuple[str, str]]:
    return {(v.field, v.rule) for v in found}


@pytest.mark.parametrize("provider,model", MODELS)
def test_a_good_request_passes_for_every_model(
    make_image: ImageFactory, provider: str, model: str
) -> None:
    assert violations(make_image(1280, 720), provider, model, prompt="a cat walks") == []


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_documented_format_is_accepted(make_image: ImageFactory, fmt: str) -> None:
    assert violations(make_image(640, 480, fmt)) == []


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "TGA"])
def test_other_formats_are_refused_by_name(make_image: ImageFactory, fmt: str) -> None:
    found = violations(make_image(256 if fmt == "ICO" else 640, 256 if fmt == "ICO" else 480, fmt))
    assert ("image", "format") in rules(found)
    assert fmt in str(found[0])


@pytest.mark.parametrize(
    "size,ok",
    [
        ((301, 400), True),  # short side must be > 300
        ((300, 400), False),
        ((5999, 3000), True),  # long side must be < 6000
        ((6000, 3000), False),
        ((1000, 2500), False),  # ratio 0.4 is outside the open interval (0.4, 2.5)
        ((1001, 2500), True),  # 0.4004
        ((1000, 2600), False),  # 0.385
        ((2500, 1000), False),  # ratio 2.5 is outside too
        ((2499, 1000), True),  # 2.499
        ((2510, 1000), False),  # 2.51
    ],
)
def test_size_and_ratio_limits_are_exact(
    make_image: ImageFactory, size: tuple[int, int], ok: bool
) -> None:
    found = violations(make_image(*size, fmt="JPEG"))
    assert (found == []) is ok, found


def test_bytes_over_the_limit_are_refused(make_image: ImageFactory) -> None:
    limit = 30_000_000  # "30MB", read strictly: not 30 MiB
    assert violations(make_image(640, 480, "JPEG", pad_to=limit)) == []
    found = violations(make_image(640, 480, "JPEG", pad_to=limit + 1))
    assert rules(found) == {("image", "bytes")}
    assert "30 MB (30,000,000 bytes)" in str(found[0])


def test_exif_rotation_gives_the_displayed_size(make_image: ImageFactory) -> None:
    # The ratio range is symmetric (0.4 = 1/2.5), so rotation never flips the verdict, but the
    # displayed shape decides the `adaptive` output size and the words the user reads.
    from seedance_pipeline.providers.images import inspect_image

    info = inspect_image(make_image(1200, 800, "JPEG", exif_orientation=6))
    assert (info.width, info.height) == (800, 1200)
    found = violations(make_image(2450, 950, "JPEG", exif_orientation=8))
    assert ("image", "ratio") in rules(found)
    assert "950x2450" in str(found[0])


def test_header_only_read_is_enough_for_a_truncated_file(
    make_image: ImageFactory, tmp_path: Path
) -> None:
    good = make_image(800, 600, "PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:100])
    assert violations(truncated) == []  # the header is intact; the provider would decode the rest


@pytest.mark.parametrize(
    "content,words",
    [(b"", "empty"), (b"this is not an image at all", "match no known image format")],
)
def test_unreadable_files_are_refused_in_plain_words(
    tmp_path: Path, content: bytes, words: str
) -> None:
    path = tmp_path / "fake.jpg"
    path.write_bytes(content)
    found = violations(path)
    assert rules(found) == {("image", "unreadable")}
    assert words in str(found[0])


def test_missing_file_and_foreign_schemes_are_refused(tmp_path: Path) -> None:
    assert "file not found" in str(violations(tmp_path / "nope.png")[0])
    found = violations("ftp://example.com/a.png")
    assert rules(found) == {("image", "scheme")}


def test_http_urls_are_not_fetched_by_validation() -> None:
    assert violations("https://example.com/cat.png", prompt="x") == []


def test_every_violation_of_a_row_is_reported_at_once(make_image: ImageFactory) -> None:
    found = violations(
        make_image(200, 2000, "PNG"),
        "novita",
        "seedance-v1-lite-i2v",
        prompt="x" * 2001,
        resolution="4k",
        aspect_ratio="2:1",
        duration=7,
        seed=-2,
        generate_audio=True,
        last_image="/does/not/exist.png",
    )
    assert rules(found) == {
        ("image", "short_side"),
        ("image", "ratio"),
        ("last_image", "unreadable"),
        ("prompt", "prompt"),
        ("resolution", "enum"),
        ("aspect_ratio", "enum"),
        ("duration", "duration"),
        ("seed", "seed"),
        ("generate_audio", "unsupported"),
    }
    text = "\n".join(map(str, found))
    assert "'4k' is not offered by seedance-v1-lite-i2v at novita (use 480p, 720p, 1080p)" in text
    assert "7 s is not offered" in text and "(use 5 or 10 s)" in text


@pytest.mark.parametrize(
    "provider,model,fields,expected",
    [
        ("novita", "seedance-v1.5-pro-i2v", {"prompt": ""}, ("prompt", "prompt")),  # required
        (
            "novita",
            "seedance-v1.5-pro-i2v",
            {"prompt": "p", "resolution": "1080p"},
            ("resolution", "enum"),
        ),
        (
            "novita",
            "seedance-v1.5-pro-i2v",
            {"prompt": "p", "duration": 13},
            ("duration", "duration"),
        ),
        (
            "novita",
            "seedance-v1.5-pro-i2v",
            {"prompt": "p", "duration": 3},
            ("duration", "duration"),
        ),
        ("novita", "seedance-v1.5-pro-i2v", {"prompt": "p", "seed": 2**32}, ("seed", "seed")),
        ("novita", "seedance-v1.5-pro-i2v", {"prompt": "p", "fps": 30}, ("fps", "enum")),
        (
            "novita",
            "seedance-v1.5-pro-i2v",
            {"prompt": "p", "service_tier": "slow"},
            ("service_tier", "enum"),
        ),
        (
            "novita",
            "seedance-v1.5-pro-i2v",
            {"prompt": "p", "execution_expires_after": 60},
            ("execution_expires_after", "range"),
        ),
        (
            "aimlapi",
            "bytedance/seedance-1-0-lite-i2v",
            {"prompt": "p", "aspect_ratio": "16:9"},
            ("aspect_ratio", "unsupported"),
        ),
        (
            "aimlapi",
            "bytedance/seedance-1-0-lite-i2v",
            {"prompt": "p", "last_image": "x.png"},
            ("last_image", "unsupported"),
        ),
        (
            "segmind",
            "seedance-v1-lite-image-to-video",
            {"prompt": "p", "seed": 0},
            ("seed", "seed"),
        ),
        (
            "segmind",
            "seedance-v1-lite-image-to-video",
            {"prompt": "p", "seed": -1},
            ("seed", "seed"),
        ),
        (
            "segmind",
            "seedance-v1-lite-image-to-video",
            {"prompt": "p", "resolution": "1080p"},
            ("resolution", "enum"),
        ),
        ("modelark", "seedance-1-0-lite-i2v-250428", {"duration": 1}, ("duration", "duration")),
        (
            "modelark",
            "seedance-1-0-lite-i2v-250428",
            {"generate_audio": False},
            ("generate_audio", "unsupported"),
        ),
        (
            "modelark",
            "seedance-1-0-lite-i2v-250428",
            {"service_tier": "flex"},
            ("service_tier", "unsupported"),
        ),
        ("novita", "seedance-v9", {}, ("model", "enum")),
        ("modelark", "seedance-1-0-pro-250528", {"duration": 13}, ("duration", "duration")),
        ("modelark", "seedance-1-0-pro-250528", {"generate_audio": True}, ("generate_audio", "unsupported")),
        ("modelark", "seedance-1-0-pro-fast-251015", {"resolution": "2k"}, ("resolution", "enum")),
        ("modelark", "seedance-1-0-pro-fast-251015", {"last_image": "x.png"}, ("last_image", "unsupported")),
        ("aimlapi", "bytedance/seedance-1-0-lite-i2v", {"prompt": "p", "seed": -1}, ("seed", "seed")),
    ],
)  # fmt: skip
def test_model_specific_rules(
    make_image: ImageFactory, provider: str, model: str, fields: dict, expected: tuple[str, str]
) -> None:
    assert expected in rules(violations(make_image(1280, 720), provider, model, **fields))


@pytest.mark.parametrize(
    "model",
    ["seedance-1-0-lite-i2v-250428", "seedance-1-0-pro-250528", "seedance-1-0-pro-fast-251015"],
)
@pytest.mark.parametrize("duration", [2, 12])
def test_modelark_10_models_take_any_duration_in_their_range(
    make_image: ImageFactory, model: str, duration: int
) -> None:
    assert violations(make_image(), "modelark", model, duration=duration) == []


def test_decompression_bombs_are_refused_without_decoding(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(path)  # 400 Mpx, a few KB on disk
    found = violations(path)
    assert rules(found) == {("image", "unreadable")}
    assert "decompression bomb" in str(found[0])
