"""Every setting of the pipeline, its default and its environment variable, in one place.

The Dagster resource, the headless command and the command line all build their settings here
(`settings_from`), so a value means the same in every entry point: an explicit value wins, then the
environment variable, then the default written below. A spend cap of `-1` or an empty value means
"no cap" wherever it is given (resource field, `--daily-budget-usd`, `SEEDANCE_DAILY_BUDGET_USD`).

API keys are not settings: each provider's key is read from its environment variable when its
client is made, and never enters run config.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seedance_pipeline.providers.facts import load_facts
from seedance_pipeline.state.claims import SpendCap, start_of_utc_day
from seedance_pipeline.state.schema import default_state_url
from seedance_pipeline.state.store import StateStore
from seedance_pipeline.storage import absolute, refuse_credentials, sibling

_CHECKOUT = Path(__file__).resolve().parents[1]
# The default data directory: in a source checkout, its `data/` folder (the bundled sample catalog,
# whatever the working directory, as `dagster dev` runs and ticks need); installed from a wheel,
# `data/` in the working directory.
DEFAULT_DATA = _CHECKOUT / "data" if (_CHECKOUT / "pyproject.toml").is_file() else Path("data")

# The non-secret environment variables that move a setting (`dagster dev`, runs, sensors and the
# headless command all read them). The state URL may carry a password: it is read when the store
# is opened and never written into run config.
ENV = {
    "data_dir": "SEEDANCE_DATA_DIR",
    "catalog": "SEEDANCE_CATALOG",
    "state_url": "SEEDANCE_STATE_URL",
    "videos_url": "SEEDANCE_VIDEOS_URL",
    "ledger_url": "SEEDANCE_LEDGER_URL",
    "daily_budget_usd": "SEEDANCE_DAILY_BUDGET_USD",
    "batch_budget_usd": "SEEDANCE_BATCH_BUDGET_USD",
    "run_budget_usd": "SEEDANCE_RUN_BUDGET_USD",
    "stale_submission_s": "SEEDANCE_STALE_SUBMISSION_S",
    "submission_stay_s": "SEEDANCE_SUBMISSION_STAY_S",
    "sandbox_url": "SEEDANCE_SANDBOX_URL",
}
NO_CAP = -1.0  # as a spend cap: none (so is an empty value)
CAPS = ("daily_budget_usd", "batch_budget_usd", "run_budget_usd")


@dataclass(frozen=True)
class CatalogDefaults:
    """What an empty catalog cell means. None: the model's own documented default (the provider's
    first model, for `model`)."""

    provider: str = "novita"
    model: str | None = None
    batch: str = "default"
    resolution: str | None = None
    aspect_ratio: str | None = None
    duration: int | None = None
    seed: int | None = None
    camera_fixed: bool | None = None
    generate_audio: bool | None = None
    service_tier: str | None = None
    watermark: bool | None = None


@dataclass(frozen=True)
class ReportUrls:
    contact_sheet: str
    chart: str


_STORES: dict[str, StateStore] = {}


def store_for(url: str) -> StateStore:
    """One store (one engine and connection pool) per URL per process: engines are costly to make
    and are meant to be shared."""
    if url not in _STORES:
        _STORES[url] = StateStore(url)
    return _STORES[url]


@dataclass(frozen=True)
class PipelineSettings:
    """The settings themselves. Built directly, they read no environment and None means "none"
    (no cap, the default location); entry points build them with `settings_from`."""

    data_dir: str = str(DEFAULT_DATA)  # state store (SQLite), ledger, videos and reports
    catalog: str = str(DEFAULT_DATA / "catalog.csv")  # CSV or Parquet, a path or any fsspec URL
    # Any SQLAlchemy URL; default SQLite at <data_dir>/state.sqlite. It may carry a password, so
    # it is left out of the repr.
    state_url: str | None = field(default=None, repr=False)
    videos_url: str | None = None  # any fsspec URL; default <data_dir>/videos
    ledger_url: str | None = None  # any fsspec URL; default <data_dir>/ledger
    defaults: CatalogDefaults = field(default_factory=CatalogDefaults)
    max_in_flight: dict[str, int] = field(default_factory=dict)  # per provider; default facts.toml
    daily_budget_usd: float | None = 25.0  # spend cap per UTC day, reserved before each submission
    batch_budget_usd: float | None = None  # spend cap per batch, all time
    run_budget_usd: float | None = None  # per run (a Dagster run, or one headless command)
    poll_time_box_s: float = 40.0  # one polling pass; well under Dagster's 60 s sensor timeout
    poll_concurrency: int = 32
    submit_concurrency: int = 8
    # A submission left in `submitting` this long was abandoned by a process that died mid-call.
    stale_submission_s: float = 900.0
    # A task "not found" this long after submission becomes unknown: longer than any create call
    # may take (Segmind: minutes).
    not_found_grace_s: float = 3600.0
    # A submission step stays this long at most, submitting as its own tasks free slots (0: one
    # pass, then the task sensor takes over); it ends sooner when its batch's share is done.
    submission_stay_s: float = 1800.0
    follow_interval_s: float = 2.0  # how often a staying submission step polls its own tasks
    sandbox_url: str | None = None  # an emulator to use for providers without a key

    def __post_init__(self) -> None:
        for name in CAPS:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be at least 0, or -1 (or empty) for no cap: {value}")
        refuse_credentials("videos_url", self.videos_url)
        refuse_credentials("ledger_url", self.ledger_url)
        _ = self.reports_url  # a ledger at a bucket root has no sibling folder: say so now

    def spend_caps(self, batch: str | None, run_id: str | None, day_start: float) -> list[SpendCap]:
        caps = []
        if self.daily_budget_usd is not None:
            caps.append(SpendCap("daily", self.daily_budget_usd, since=day_start))
        if self.batch_budget_usd is not None and batch is not None:
            caps.append(SpendCap("batch", self.batch_budget_usd, batch=batch))
        if self.run_budget_usd is not None and run_id is not None:
            caps.append(SpendCap("run", self.run_budget_usd, run_id=run_id))
        return caps

    def budget_metadata(self, store: StateStore, batch: str | None = None) -> dict[str, float]:
        """Spend so far and budget left, for materialisation metadata and the headless summary."""
        spent = store.spend(start_of_utc_day())
        values = {"spent_today_usd": round(spent, 6)}
        if self.daily_budget_usd is not None:
            values |= {"daily_budget_usd": self.daily_budget_usd,
                       "budget_left_today_usd": round(max(0.0, self.daily_budget_usd - spent), 6)}  # fmt: skip
        if batch is not None and self.batch_budget_usd is not None:
            batch_spent = store.spend(batch=batch)
            values |= {"batch_spent_usd": round(batch_spent, 6),
                       "batch_budget_left_usd": round(max(0.0, self.batch_budget_usd - batch_spent), 6)}  # fmt: skip
        return values

    def in_flight_limit(self, provider: str) -> int:
        return self.max_in_flight.get(provider, load_facts().providers[provider].max_in_flight)

    @property
    def ledger(self) -> str:
        """The hive-partitioned ledger's folder: an absolute path or an fsspec URL."""
        return absolute(self.ledger_url or str(Path(self.data_dir) / "ledger"))

    @property
    def videos(self) -> str:
        """Where videos are copied: an absolute path or an fsspec URL."""
        return absolute(self.videos_url or str(Path(self.data_dir) / "videos"))

    @property
    def reports_url(self) -> str:
        """Reports (contact sheets, …) go in `reports` beside the ledger's folder, on the same store:
        `s3://b/seedance/ledger` → `s3://b/seedance/reports`, `<data dir>/ledger` → `<data dir>/reports`.
        Beside, not inside: readers of the ledger folder expect Parquet only. Write there with
        `storage.write_bytes_atomic`."""
        return sibling(self.ledger, "reports")

    def report_urls(self, batch: str) -> ReportUrls:
        """`<reports_url>/batch=<batch>/…`, laid out like the ledger's partitions."""
        folder = f"{self.reports_url.rstrip('/')}/batch={batch}"
        return ReportUrls(f"{folder}/contact_sheet.png", f"{folder}/chart.png")

    def store(self) -> StateStore:
        return store_for(self.state_url or default_state_url(self.data_dir))


def spend_cap(value: float | str | None, source: str = "a spend cap") -> float | None:
    """A spend cap as given anywhere: -1 or empty means no cap; a number is the cap in dollars."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        cap = float(value)
    except ValueError:
        raise ValueError(f"{source} is a number of dollars, or -1 for none: {value!r}") from None
    if cap == NO_CAP:
        return None
    if cap < 0 or cap != cap:
        raise ValueError(f"{source} must be at least 0, or -1 (or empty) for no cap: {value!r}")
    return cap


def cap_argument(text: str) -> float:
    """A spend cap on the command line: empty is -1, no cap (argparse's `type`)."""
    return NO_CAP if not text.strip() else float(text)


def settings_from(env: Mapping[str, str] | None = None, **given: Any) -> PipelineSettings:
    """The settings of an entry point: each value `given` (None: not given) wins over its
    environment variable, which wins over the default. A cap of -1 means "no cap" whichever way
    it came, and so does a cap variable that is set but empty; other empty variables are unset."""
    env = os.environ if env is None else env
    known = {f.name for f in dataclasses.fields(PipelineSettings)}
    unknown = set(given) - known
    if unknown:
        raise TypeError(f"not a setting: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name in known:
        value, variable = given.get(name), ENV.get(name)
        raw = env.get(variable) if variable else None
        if name in CAPS:
            if value is not None:
                values[name] = spend_cap(value, name)
            elif raw is not None:
                values[name] = spend_cap(raw, variable or name)
        elif value is not None:
            values[name] = value
        elif raw:
            values[name] = _typed(name, raw)
    return PipelineSettings(**values)


def _typed(name: str, raw: str) -> Any:
    if name in ("stale_submission_s", "submission_stay_s"):
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{ENV[name]} must be a number of seconds: {raw!r}") from None
    return raw
