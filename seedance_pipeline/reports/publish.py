"""How a batch's report is written: through fsspec, so `reports_url` may be a local folder or any
object store URL; and how it is previewed inline in the Dagster UI."""

from __future__ import annotations

import base64
import io

from PIL import Image

from seedance_pipeline.storage import write_bytes_atomic

PREVIEW_MAX_BYTES = 150_000  # inline previews live in Dagster's event log: keep them small
FULL_SIZE_MAX_BYTES = 2_000_000  # one full-size copy per report, so a click shows every tile


def write_png(image: Image.Image, url: str) -> int:
    """Encode first, then write atomically, so a failure leaves the previous file."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    write_bytes_atomic(url, buffer.getvalue())
    return len(buffer.getvalue())


def inline_image(image: Image.Image, max_width: int, alt: str, max_height: int = 600) -> str | None:
    """A markdown image with the picture inline (a data: URI) for the Dagster UI: shrunk to
    `max_width`, cropped to its top `max_height` pixels (a preview; the file has it all); None
    when it would still be larger than PREVIEW_MAX_BYTES."""
    preview = image.copy()
    if preview.width > max_width:
        preview.thumbnail((max_width, preview.height), Image.Resampling.LANCZOS)
    if preview.height > max_height:
        preview = preview.crop((0, 0, preview.width, max_height))
    buffer = io.BytesIO()
    preview.save(buffer, "JPEG", quality=70)
    if buffer.tell() > PREVIEW_MAX_BYTES:
        return None
    return f"![{alt}](data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()})"


def full_size_image(image: Image.Image, alt: str) -> str | None:
    """The whole picture at its own size as a markdown image (JPEG, inline), one click away in the
    UI ("Show Markdown"); None when it would be larger than FULL_SIZE_MAX_BYTES (open the file)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=85)
    if buffer.tell() > FULL_SIZE_MAX_BYTES:
        return None
    return f"![{alt}](data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()})"
