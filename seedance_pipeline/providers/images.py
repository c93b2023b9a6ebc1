"""Reading image headers and encoding images for the wire.

Only the header is read (Pillow opens lazily), so validating a 30 MB TIFF costs a few kilobytes of
I/O. EXIF orientation is applied to the size, because the providers see the image as displayed.
"""

from __future__ import annotations

import base64
import io
import warnings
from functools import lru_cache
from pathlib import Path
from typing import IO

from PIL import Image

from seedance_pipeline.providers.models import ImageInfo

_EXIF_ORIENTATION = 0x0112
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # 90° or 270°: width and height swap on display


class ImageUnreadable(ValueError):
    """The bytes are not an image Pillow can read; the message says why in plain words."""


def _orientation(img: Image.Image) -> int | None:
    """EXIF orientation without decoding pixels. Pillow's `getexif()` loads a whole PNG to look
    for a late eXIf chunk; only an early one (already in `info`) is read here."""
    if img.format in ("JPEG", "MPO", "TIFF", "WEBP"):
        return img.getexif().get(_EXIF_ORIENTATION)
    raw = img.info.get("exif")
    if not raw:
        return None
    exif = Image.Exif()
    exif.load(raw)
    return exif.get(_EXIF_ORIENTATION)


def is_truncated(data: bytes, fmt: str | None) -> bool:
    """Whether a file stops before its format's end marker, checked without decoding: a JPEG
    without its EOI marker, a PNG without IEND, a GIF without its trailer, a WEBP or BMP shorter
    than its header says. (TIFF has no end marker and is not checked.)"""
    if fmt in ("JPEG", "MPO"):
        return data.rfind(b"\xff\xd9") == -1
    if fmt == "PNG":
        return data.rfind(b"IEND") == -1
    if fmt == "GIF":
        return data.rstrip(b"\x00")[-1:] != b";"
    if fmt == "WEBP":
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    if fmt == "BMP":
        return int.from_bytes(data[2:6], "little") > len(data)
    return False


def is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def inspect_image(source: str | Path | bytes) -> ImageInfo:
    """Format, displayed size and byte count of an image file or byte string, from its header."""
    if isinstance(source, bytes):
        size = len(source)
        stream: IO[bytes] = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageUnreadable(f"file not found: {path}")
        size = path.stat().st_size
        stream = path.open("rb")
    if size == 0:
        raise ImageUnreadable("the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                width, height = img.size
                orientation = _orientation(img)
                if orientation in _ROTATED_ORIENTATIONS:
                    width, height = height, width
                frames = 2 if getattr(img, "is_animated", False) else 1
                cut = isinstance(source, bytes) and is_truncated(source, img.format)
                return ImageInfo(
                    format=img.format,
                    width=width,
                    height=height,
                    bytes=size,
                    frames=frames,
                    mode=img.mode,
                    truncated=cut,
                )
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageUnreadable(f"refused as a decompression bomb: {exc}") from None
    except Image.UnidentifiedImageError:
        raise ImageUnreadable("not an image: its bytes match no known image format") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageUnreadable(f"not a readable image ({type(exc).__name__}: {exc})") from None
    finally:
        stream.close()


def data_uri(image_bytes: bytes) -> str:
    """`data:image/<fmt>;base64,...`, the form every provider documents for inline images."""
    with Image.open(io.BytesIO(image_bytes)) as img:
        fmt = (img.format or "png").lower()
    return f"data:image/{fmt};base64,{base64.b64encode(image_bytes).decode('ascii')}"


def image_reference(ref: str) -> str:
    """What goes on the wire for an image: URLs as they are, local files as data: URIs."""
    if is_url(ref):
        return ref
    stat = Path(ref).stat()
    return _local_data_uri(ref, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _local_data_uri(path: str, mtime_ns: int, size: int) -> str:
    """Catalogs reuse images: encode each file once (keyed by path, mtime and size, so an edited
    file is read again)."""
    return data_uri(Path(path).read_bytes())
