"""Small helpers for Dagster metadata that several stages show."""

import dagster as dg


def link(url: str) -> dg.MetadataValue:
    """A clickable URL for object stores and web locations, a path for local files."""
    if "://" in url and not url.startswith("file://"):
        return dg.MetadataValue.url(url)
    return dg.MetadataValue.path(url.removeprefix("file://"))
