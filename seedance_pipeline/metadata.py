"""Small helpers for what several stages show in the Dagster UI (metadata, tick messages)."""

import dagster as dg


def link(url: str) -> dg.MetadataValue:
    """A clickable URL for object stores and web locations, a path for local files."""
    if "://" in url and not url.startswith("file://"):
        return dg.MetadataValue.url(url)
    return dg.MetadataValue.path(url.removeprefix("file://"))


def short_list(items: list[str], most: int = 10) -> str:
    """`a, b, c and 4 more` for a tick message; `none` for nothing."""
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "") or "none"
