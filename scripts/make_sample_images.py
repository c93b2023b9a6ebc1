"""Draws the bundled sample images in data/samples/ (run once; the images are committed).

Varied sizes, shapes and all six accepted formats, plus three that validation must refuse.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "data" / "samples"

SCENES = [  # name, size, format, sky top, sky bottom, ground
    ("harbour.jpg", (1280, 720), "JPEG", (24, 64, 128), (250, 170, 90), (20, 60, 90)),
    ("desert.png", (1024, 768), "PNG", (70, 130, 220), (240, 220, 180), (210, 160, 90)),
    ("forest.webp", (720, 1280), "WEBP", (90, 150, 210), (200, 230, 240), (30, 90, 40)),
    ("city.bmp", (480, 480), "BMP", (10, 10, 40), (80, 40, 120), (40, 40, 50)),
    ("mountain.tiff", (960, 540), "TIFF", (120, 170, 230), (230, 240, 250), (90, 100, 110)),
    ("sunset.gif", (600, 400), "GIF", (60, 20, 80), (250, 120, 60), (40, 30, 30)),
    ("lake.jpg", (1920, 1080), "JPEG", (100, 160, 230), (220, 235, 250), (40, 90, 140)),
    ("meadow.png", (1200, 900), "PNG", (110, 180, 240), (230, 245, 255), (80, 160, 60)),
    ("street.jpg", (900, 1600), "JPEG", (30, 30, 60), (200, 120, 80), (50, 50, 55)),
    ("beach.webp", (1600, 686), "WEBP", (60, 150, 230), (200, 235, 250), (230, 210, 160)),
    ("tower.jpg", (640, 1280), "JPEG", (80, 120, 200), (240, 200, 160), (70, 60, 60)),
    ("garden.jpg", (1000, 1000), "JPEG", (120, 190, 240), (240, 250, 255), (60, 130, 70)),
    (
        "tiny.png",
        (200, 150),
        "PNG",
        (200, 100, 100),
        (250, 200, 200),
        (90, 40, 40),
    ),  # short side too small
    ("banner.jpg", (3000, 600), "JPEG", (40, 40, 90), (160, 160, 220), (30, 30, 30)),  # ratio 5.0
]


def scene(size: tuple[int, int], top: tuple[int, ...], bottom: tuple[int, ...], ground: tuple[int, ...],
          rng: random.Random) -> Image.Image:  # fmt: skip
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    horizon = int(height * 0.62)
    for y in range(horizon):
        t = y / max(1, horizon - 1)
        draw.line(
            [(0, y), (width, y)],
            fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)),
        )
    sun = (int(width * rng.uniform(0.2, 0.8)), int(horizon * rng.uniform(0.3, 0.7)))
    r = int(min(width, height) * 0.08)
    draw.ellipse([sun[0] - r, sun[1] - r, sun[0] + r, sun[1] + r], fill=(255, 236, 170))
    points = [(0, height)]
    for x in range(0, width + 1, max(1, width // 24)):
        points.append((x, int(horizon + math.sin(x / width * 6 + rng.random()) * height * 0.05)))
    points.append((width, height))
    draw.polygon(points, fill=ground)
    for _ in range(12):
        x, y = rng.randrange(width), rng.randrange(horizon, height)
        s = rng.randrange(max(2, width // 80), max(3, width // 30))
        draw.rectangle([x, y - s * 2, x + s, y], fill=tuple(max(0, c - 30) for c in ground))
    return image


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    for name, size, fmt, top, bottom, ground in SCENES:
        image = scene(size, top, bottom, ground, rng)
        options = {"quality": 82} if fmt in ("JPEG", "WEBP") else {}
        if fmt == "TIFF":
            options = {"compression": "tiff_deflate"}
        if fmt == "GIF":
            image = image.convert("P", palette=Image.Palette.ADAPTIVE)
        image.save(OUT / name, fmt, **options)
    (OUT / "corrupt.jpg").write_bytes(b"this file has an image extension but holds text\n")


if __name__ == "__main__":
    main()
