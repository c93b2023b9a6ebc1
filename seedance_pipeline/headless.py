"""`seedance-pipeline run`: the same Dagster assets and sensor logic, in-process, until every request
of the catalog is terminal. Useful for CI jobs, notebooks and machines without a Dagster daemon."""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import dagster as dg
from tqdm import tqdm

from seedance_pipeline.catalog.reading import CatalogError
from seedance_pipeline.definitions import build_definitions
from seedance_pipeline.polling.tick import reconciliation_pending
from seedance_pipeline.resources import (
    BudgetResource,
    CatalogResource,
    PipelineResources,
    SeedanceResource,
    SubmissionResource,
)
from seedance_pipeline.settings import PipelineSettings
from seedance_pipeline.state.claims import start_of_utc_day
from seedance_pipeline.state.lifecycle import ACTIVE, OPEN, TERMINAL, RequestStatus
from seedance_pipeline.state.store import StateStore
from seedance_pipeline.submission.retry import (
    DEFAULT_STATUSES,
    RetryReport,
    qc_retry_requests,
    retry_requests,
)


class CannotProceed(RuntimeError):
    """The run cannot finish: the message says why and what to do."""


@dataclass(frozen=True)
class RunSummary:
    counts: dict[str, int]
    cost_usd: float
    cost_usd_estimated: float
    spent_today_usd: float
    daily_budget_usd: float | None
    ledger_path: str  # an absolute path or an fsspec URL
    sandbox_rows: int
    submitted: int
    qc: dict[str, int] = field(default_factory=dict)  # kept videos by QC verdict

    def qc_line(self) -> str | None:
        """Kept videos by QC verdict, and what each passing clip cost."""
        if not self.qc:
            return None
        verdicts = ", ".join(f"{v} {n}" for v, n in sorted(self.qc.items()))
        passing = self.qc.get("pass", 0)
        per_clip = (
            f"${self.cost_usd / passing:.4f} per passing clip" if passing else "no clip passes"
        )
        return f"QC: {verdicts}; {per_clip}"

    def lines(self) -> list[str]:
        total = sum(self.counts.values())
        out = [f"requests: {total}"]
        out += [f"  {status:10s} {n}" for status, n in sorted(self.counts.items())]
        out.append(f"cost: ${self.cost_usd:.4f} (estimated ${self.cost_usd_estimated:.4f})")
        qc = self.qc_line()
        if qc:
            out.append(qc)
        if self.daily_budget_usd is not None:
            left = max(0.0, self.daily_budget_usd - self.spent_today_usd)
            out.append(
                f"budget: ${self.spent_today_usd:.4f} spent today of ${self.daily_budget_usd:.2f}, ${left:.4f} left"
            )
        out.append(f"tasks created by this run: {self.submitted}")
        out.append(f"ledger: {self.ledger_path}")
        if self.sandbox_rows:
            out.append(
                f"SANDBOX: {self.sandbox_rows} rows were produced by the local emulator, not a provider"
            )
        return out


def _stuck_reason(store: StateStore, settings: PipelineSettings) -> str:
    """Why pending requests are not going out: the last refusal recorded, or the budget."""
    reasons: Counter[str] = Counter()
    for record in store.records(statuses=[RequestStatus.PENDING]):
        details = [
            d
            for _, to, d in store.transitions(record.request_id)
            if to == RequestStatus.PENDING and d
        ]
        if details and details[-1].startswith("back to pending"):
            reasons[details[-1]] += 1
    if reasons:
        return "; ".join(f"{n} × {why}" for why, n in reasons.most_common(3))
    cap = settings.daily_budget_usd
    if cap is not None and store.spend(start_of_utc_day()) >= cap - 1e-9:
        return f"today's budget of ${cap:.2f} is spent"
    return "the next request would exceed today's budget or no provider slot frees up"


HEADLESS_POLL_TIME_BOX_S = 20.0  # shorter passes than the sensor's: the command loops on them


def _absolute(location: str | None) -> str | None:
    return str(Path(location).resolve()) if location and "://" not in location else location


PLAIN_PROGRESS_EVERY_S = 10.0  # without a terminal: one progress line this often, not a redraw


class Progress:
    """What the command shows while it works, on stderr. On a terminal: one bar, updated in place,
    with each message printed once above it. Otherwise (CI logs, pipes): a plain line when the
    count changed, at most every PLAIN_PROGRESS_EVERY_S seconds, and each message once."""

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.enabled = total, enabled
        self.tty = enabled and self.stream.isatty()
        self.bar = tqdm(total=total, desc="requests done", unit="req", file=self.stream,
                        dynamic_ncols=True) if self.tty else None  # fmt: skip
        self.started = time.monotonic()
        self.shown: tuple[int, float] | None = None  # (count, when) of the last plain line
        self.said: set[str] = set()
        self.handler = _ToProgress(self)
        logging.getLogger().addHandler(self.handler)

    def update(self, done: int) -> None:
        if self.bar is not None:
            self.bar.n = done
            self.bar.refresh()
            return
        now = time.monotonic()
        if not self.enabled or (self.shown and (self.shown[0] == done or (
                now - self.shown[1] < PLAIN_PROGRESS_EVERY_S and done < self.total))):  # fmt: skip
            return
        self.shown = (done, now)
        self.note(f"requests done: {done}/{self.total} after {now - self.started:.0f} s")

    def note(self, message: str) -> None:
        """A line above the bar; a message already said (each run repeats its warnings) is not."""
        if message in self.said and not message.startswith("requests done"):
            return
        self.said.add(message)
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        logging.getLogger().removeHandler(self.handler)
        if self.bar is not None:
            self.bar.close()


class _ToProgress(logging.Handler):
    """The package's warnings (SANDBOX, retries) go through the progress display, once each."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.WARNING)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.note(record.getMessage())


def run_headless(
    catalog: str | None = None,
    data_dir: str | None = None,
    *,
    daily_budget_usd: float | None = None,
    batch_budget_usd: float | None = None,
    run_budget_usd: float | None = None,
    sandbox_url: str | None = None,
    ledger_url: str | None = None,
    videos_url: str | None = None,
    stale_submission_s: float | None = None,
    poll_interval_s: float = 1.0,
    timeout_s: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    prepare: Callable[[PipelineSettings, str], None] | None = None,
) -> RunSummary:
    """Every setting left None takes its environment variable, then its default (settings.py),
    exactly as under `dagster dev`; a cap of -1 means no cap. `prepare(settings, run label)` runs
    once the catalog is read, before anything is submitted (a retry moves requests back to pending
    there)."""
    logging.getLogger("dagster").setLevel(logging.WARNING)  # the progress bar and summary speak
    run_label = f"headless-{uuid.uuid4().hex[:12]}"  # one run budget for the whole command
    resources = PipelineResources(
        seedance=SeedanceResource(
            data_dir=_absolute(data_dir),
            sandbox_url=sandbox_url,
            ledger_url=ledger_url,
            videos_url=videos_url,
            stale_submission_s=stale_submission_s,
        ),
        seedance_catalog=CatalogResource(catalog=_absolute(catalog)),
        seedance_budget=BudgetResource(
            daily_budget_usd=daily_budget_usd,
            batch_budget_usd=batch_budget_usd,
            run_budget_usd=run_budget_usd,
        ),
        seedance_submission=SubmissionResource(
            run_label=run_label,
            poll_time_box_s=HEADLESS_POLL_TIME_BOX_S,
            # One pass per submission step: this command runs steps one after another in process
            # and polls every second itself, so a step that stayed would hold up the other providers.
            submission_stay_s=0,
        ),
    )
    try:
        settings: PipelineSettings = resources.settings()
    except ValueError as exc:  # a location that cannot work (credentials in a URL, a bucket root)
        raise CannotProceed(str(exc)) from None
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    defs = build_definitions(resources)
    instance = dg.DagsterInstance.ephemeral()

    def execute(job_name: str, partition_key: str | None = None) -> None:
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance,
            partition_key=partition_key,
            resources=resources.by_key(),
            raise_on_error=False,
            # A run's warnings (SANDBOX, budget stops) are in the summary or the stop message.
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        if not result.success:
            errors = [e.message for e in result.all_events if e.is_failure]
            raise CannotProceed(
                f"{job_name} ({partition_key or 'all'}) failed: {errors[-1] if errors else 'see logs'}"
            )

    try:
        execute("catalog_job")
    except CannotProceed as exc:
        if isinstance(exc.__cause__, CatalogError):
            raise CannotProceed(str(exc.__cause__)) from None
        raise
    store = settings.store()
    if prepare is not None:
        prepare(settings, run_label)
    audit_before = sum(1 for r in store.records() if r.submitted_at)
    total = len(store.records())
    sensor = defs.resolve_sensor_def("task_sensor")
    seen_run_keys: set[str] = set()
    started = time.monotonic()
    bar = Progress(total, progress)
    idle_ticks = 0
    cursor: str | None = None  # kept between ticks, as the daemon does, so tick summaries are exact
    try:
        while True:
            context = dg.build_sensor_context(
                instance=instance, resources=resources.by_key(), definitions=defs, cursor=cursor
            )
            context.log.setLevel(logging.WARNING)  # its tick summary is for the UI, not a terminal
            result = sensor(context)
            cursor = (
                result.cursor if isinstance(result, dg.SensorResult) else None
            ) or context.cursor
            run_requests = result.run_requests if isinstance(result, dg.SensorResult) else []
            launched = 0
            for request in run_requests or []:
                if request.run_key and request.run_key in seen_run_keys:
                    continue
                if request.run_key:
                    seen_run_keys.add(request.run_key)
                execute(request.job_name or "", request.partition_key)
                launched += 1
            counts = store.counts()
            done = sum(n for status, n in counts.items() if status in TERMINAL)
            bar.update(done)
            open_count = sum(n for status, n in counts.items() if status in OPEN)
            if open_count == 0 and launched == 0 and not reconciliation_pending(settings):
                break
            # Pending work but nothing in flight after a tick's submissions: something refuses them.
            active = sum(counts.get(status, 0) for status in ACTIVE)
            idle_ticks = (
                idle_ticks + 1 if active == 0 and counts.get(RequestStatus.PENDING, 0) else 0
            )
            if idle_ticks >= 3:
                raise CannotProceed(
                    f"{counts.get(RequestStatus.PENDING, 0)} requests cannot be submitted now: {_stuck_reason(store, settings)}. "
                    "Fix the cause (API key, credit, budget: --daily-budget-usd) and run again; "
                    "nothing already submitted will be submitted twice."
                )
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise CannotProceed(
                    f"not finished after {timeout_s:.0f} s; run again to continue where it stopped"
                )
            time.sleep(poll_interval_s)
    finally:
        bar.close()

    records = store.records()
    submitted = sum(1 for r in records if r.submitted_at) - audit_before
    return RunSummary(
        counts=dict(
            Counter(RequestStatus.PENDING if r.status in OPEN else r.status for r in records)
        ),
        cost_usd=sum(r.cost_usd or 0.0 for r in records),
        cost_usd_estimated=sum(
            r.cost_usd_estimated for r in records if r.status != RequestStatus.REJECTED
        ),
        spent_today_usd=store.spend(start_of_utc_day()),
        daily_budget_usd=settings.daily_budget_usd,
        ledger_path=settings.ledger,
        sandbox_rows=sum(1 for r in records if r.sandbox),
        submitted=submitted,
        qc=dict(Counter(r.qc_status for r in records if r.qc_status)),
    )


def retry_headless(
    catalog: str | None = None,
    data_dir: str | None = None,
    *,
    batch: str | None = None,
    statuses: Sequence[RequestStatus] = DEFAULT_STATUSES,
    qc_fail: bool = False,
    **run: Any,
) -> tuple[RetryReport, RunSummary]:
    """`seedance-pipeline retry`: new attempts of the requests of `batch` (None: all) in `statuses`,
    within the spend caps, then the same loop as `run` until they are done and their ledgers
    rewritten. `qc_fail`: instead, the succeeded requests whose video failed QC, each with a new
    seed (`qc_retry_requests`). `run` takes `run_headless`'s keyword arguments."""
    reports: list[RetryReport] = []

    def retry(settings: PipelineSettings, run_label: str) -> None:
        if qc_fail:
            reports.append(qc_retry_requests(settings, batch, run_id=run_label))
        else:
            reports.append(retry_requests(settings, batch, statuses, run_id=run_label))

    summary = run_headless(catalog, data_dir, prepare=retry, **run)
    return reports[0], summary
