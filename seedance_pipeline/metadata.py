"""Small helpers for what several stages show in the Dagster UI (metadata, tick messages)."""

from collections.abc import Mapping

import dagster as dg

TRIGGER_TAG = "seedance/trigger"  # sensor, schedule, backfill or manual
BATCH_TAG = "seedance/batch"
PROVIDERS_TAG = "seedance/providers"  # the providers a submission run sent requests for


def link(url: str) -> dg.MetadataValue:
    """A clickable URL for object stores and web locations, a path for local files."""
    if "://" in url and not url.startswith("file://"):
        return dg.MetadataValue.url(url)
    return dg.MetadataValue.path(url.removeprefix("file://"))


def short_list(items: list[str], most: int = 10) -> str:
    """`a, b, c and 4 more` for a tick message; `none` for nothing."""
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "") or "none"


def trigger_of(tags: Mapping[str, str]) -> str:
    """What launched a run, from the tags Dagster gives it (a backfill's runs carry no sensor)."""
    if "dagster/backfill" in tags:
        return "backfill"
    if "dagster/sensor_name" in tags:
        return "sensor"
    if "dagster/schedule_name" in tags:
        return "schedule"
    return "manual"


def tag_run(context: dg.AssetExecutionContext, provider: str | None = None) -> None:
    """Give the run its `seedance/batch`, `seedance/trigger` (and `seedance/providers`) tags, so the
    runs list can be filtered by batch, provider and trigger whoever launched it: backfills and
    the launchpad cannot tag their runs themselves."""
    run = context.instance.get_run_by_id(context.run.run_id)
    tags = run.tags if run is not None else context.run.tags
    wanted = {TRIGGER_TAG: tags.get(TRIGGER_TAG) or trigger_of(tags)}
    if context.has_partition_key:
        wanted[BATCH_TAG] = context.partition_key
    if provider is not None:
        present = [p for p in tags.get(PROVIDERS_TAG, "").split(",") if p]
        wanted[PROVIDERS_TAG] = ",".join(sorted({*present, provider}))
    missing = {k: v for k, v in wanted.items() if tags.get(k) != v}
    if missing:
        context.instance.add_run_tags(context.run.run_id, missing)
