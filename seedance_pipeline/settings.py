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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seedance_pipeline.providers.facts import load_facts
from seedance_pipeline.qc import QcThresholds
from seedance_pipeline.state.claims import SpendCap, start_of_utc_day
from seedance_pipeline.state.schema import default_state_url
from seedance_pipeline.state.store import StateStore
from seedance_pipeline.storage import absolute, refuse_credentials, sibling

_CHECKOUT = Path(__file__).resolve().parents[1]
# The default data directory: in a source checkout, its `data/` folder (the bundled sample catalog,
# whatever the working directory, as `dagster dev` runs and ticks need); installed from a wheel,
# `data/` in the working directory.
DEFAULT_DATA = _CHECKOUT / "data" if (_CHECKOUT / "pyproject.toml").is_file() else Path("data")
# `seedance-pipeline dev`'s DAGSTER_HOME when none is set: beside the data, ignored by git, so
# Dagster's runs and sensor cursors survive a restart.
DEFAULT_DAGSTER_HOME = DEFAULT_DATA.parent / ".dagster_home"

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
    "max_failure_share": "SEEDANCE_MAX_FAILURE_SHARE",
    "image_roots": "SEEDANCE_IMAGE_ROOTS",
}
# Video QC's limits (qc/thresholds.py documents each and its default): SEEDANCE_QC_BLACK_LUMA, …
QC_ENV = {f.name: f"SEEDANCE_QC_{f.name.upper()}" for f in dataclasses.fields(QcThresholds)}
NO_CAP = -1.0  # as a spend cap: none (so is an empty value)
CAPS = ("daily_budget_usd", "batch_budget_usd", "run_budget_usd")
# The caps `set_budget_job` stores in the state store; they win over the environment (not over a
# value given explicitly to a run or command), and every tick reads them again.
UI_CAPS = ("daily_budget_usd", "batch_budget_usd")
MONEY_DECIMALS = (
    4  # dollars in UI metadata: $0.1739, not 0.17387999999999998 (the ledger keeps all)
)


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
    qc: QcThresholds = field(default_factory=QcThresholds)  # what a kept video is judged by
    # The ledger's `no_failed_rows` check warns about any failed row, and fails (ERROR) when more
    # than this share of the rows sent failed, expired or lost their video.
    max_failure_share: float = 0.2
    # Folders local catalog images must be in (after symlinks); None: any path the catalog names.
    # The variable separates folders with the OS path separator (`:` on Linux and macOS).
    image_roots: tuple[str, ...] | None = None
    # Where each spend cap came from ("set in the UI …", "$SEEDANCE_DAILY_BUDGET_USD", "default"),
    # for the UI metadata; filled by settings_from.
    cap_sources: dict[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_failure_share <= 1.0:
            raise ValueError(f"max_failure_share is a share from 0 to 1: {self.max_failure_share}")
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
        """Spend so far and budget left, for materialisation metadata (to the hundredth of a cent)."""
        spent = store.spend(start_of_utc_day())
        values = {"spent_today_usd": round(spent, MONEY_DECIMALS)}
        if self.daily_budget_usd is not None:
            values |= {"daily_budget_usd": self.daily_budget_usd,
                       "budget_left_today_usd": round(max(0.0, self.daily_budget_usd - spent), MONEY_DECIMALS)}  # fmt: skip
        if batch is not None and self.batch_budget_usd is not None:
            batch_spent = store.spend(batch=batch)
            values |= {"batch_spent_usd": round(batch_spent, MONEY_DECIMALS),
                       "batch_budget_left_usd": round(max(0.0, self.batch_budget_usd - batch_spent), MONEY_DECIMALS)}  # fmt: skip
        return values

    def caps_shown(self) -> str:
        """`daily $25.0000 (default); batch none (set in the UI …)`: each cap and where it came from."""
        parts = []
        for name in UI_CAPS:
            cap = getattr(self, name)
            shown = "none" if cap is None else f"${cap:.4f}"
            source = self.cap_sources.get(name)
            parts.append(
                f"{name.removesuffix('_budget_usd')} {shown}" + (f" ({source})" if source else "")
            )
        return "; ".join(parts)

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


def settings_from(
    env: Mapping[str, str] | None = None, *, stored_caps: bool = False, **given: Any
) -> PipelineSettings:
    """The settings of an entry point: each value `given` (None: not given) wins over its
    environment variable, which wins over the default. A cap of -1 means "no cap" whichever way
    it came, and so does a cap variable that is set but empty; other empty variables are unset.
    With `stored_caps`, a daily or batch cap set from the UI (`set_budget_job`, kept in the state
    store) wins over the environment and the default, not over a value given explicitly."""
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
        elif name == "qc":
            values[name] = qc_thresholds_from(env)
        elif raw:
            values[name] = _typed(name, raw)
    sources = {
        name: "given to this run" if given.get(name) is not None
        else f"${ENV[name]}" if env.get(ENV[name]) is not None else "default"
        for name in CAPS
    }  # fmt: skip
    settings = PipelineSettings(**values, cap_sources=sources)
    if not stored_caps:
        return settings
    overrides: dict[str, Any] = {}
    for name, stored in settings.store().stored_caps().items():
        if name in UI_CAPS and given.get(name) is None:
            overrides[name] = stored.cap_usd
            at = datetime.fromtimestamp(stored.set_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            sources[name] = f"set in the UI {at}" + (
                f" by run {stored.set_by[:8]}" if stored.set_by else ""
            )
    return (
        dataclasses.replace(settings, **overrides, cap_sources=sources) if overrides else settings
    )


def qc_thresholds_from(env: Mapping[str, str]) -> QcThresholds:
    """QC's limits: each `SEEDANCE_QC_*` variable that is set, else its documented default."""
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(QcThresholds):
        raw = env.get(QC_ENV[spec.name], "").strip()
        if raw:
            kind = int if spec.type in ("int", int) else float
            try:
                values[spec.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{QC_ENV[spec.name]} must be a number: {raw!r}") from None
    return QcThresholds(**values)


def _typed(name: str, raw: str) -> Any:
    if name == "max_failure_share":
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{ENV[name]} must be a share from 0 to 1: {raw!r}") from None
    if name == "image_roots":
        return tuple(part for part in raw.split(os.pathsep) if part.strip())
    if name in ("stale_submission_s", "submission_stay_s"):
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{ENV[name]} must be a number of seconds: {raw!r}") from None
    return raw
