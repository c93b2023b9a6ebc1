"""`seedance-pipeline`: the project's command line."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from pathlib import Path

import seedance_pipeline
from seedance_pipeline.emulator import EmulatorConfig, serve
from seedance_pipeline.providers.facts import load_facts
from seedance_pipeline.settings import (
    DEFAULT_DAGSTER_HOME,
    ENV,
    PipelineSettings,
    cap_argument,
    settings_from,
)

DEFAULTS = PipelineSettings()
INSTANCE_CONFIG = Path(__file__).with_name("dagster.yaml")  # one machine's pools and run queue


def _emulator(args: argparse.Namespace) -> int:
    limits = (
        {name: args.max_in_flight for name in load_facts().providers} if args.max_in_flight else {}
    )
    config = EmulatorConfig(
        queued_s=args.queued_s, running_s=args.running_s, seed=args.seed, max_in_flight=limits
    )
    try:
        serve(args.host, args.port, config, port_file=args.port_file, idle_exit_s=args.idle_exit_s)
    except ValueError as exc:
        print(f"seedance-pipeline emulator: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _run(args: argparse.Namespace) -> int:
    from seedance_pipeline.headless import CannotProceed, run_headless

    try:
        summary = run_headless(
            args.catalog,
            args.data_dir,
            daily_budget_usd=args.daily_budget_usd,
            batch_budget_usd=args.batch_budget_usd,
            run_budget_usd=args.run_budget_usd,
            ledger_url=args.ledger_url,
            videos_url=args.videos_url,
            stale_submission_s=args.stale_submission_s,
            timeout_s=args.timeout_s,
            progress=not args.no_progress,
        )
    except CannotProceed as exc:
        print(f"seedance-pipeline run: {exc}", file=sys.stderr)
        return 1
    print("\n".join(summary.lines()))
    return 0


def _retry(args: argparse.Namespace) -> int:
    from seedance_pipeline.headless import CannotProceed, retry_headless
    from seedance_pipeline.submission.retry import parse_statuses

    try:
        statuses = parse_statuses([args.status])
    except ValueError as exc:
        print(f"seedance-pipeline retry: {exc}", file=sys.stderr)
        return 2
    try:
        report, summary = retry_headless(
            args.catalog,
            args.data_dir,
            batch=args.batch,
            statuses=statuses,
            qc_fail=args.qc_fail,
            daily_budget_usd=args.daily_budget_usd,
            batch_budget_usd=args.batch_budget_usd,
            run_budget_usd=args.run_budget_usd,
            ledger_url=args.ledger_url,
            videos_url=args.videos_url,
            timeout_s=args.timeout_s,
            progress=not args.no_progress,
        )
    except CannotProceed as exc:
        print(f"seedance-pipeline retry: {exc}", file=sys.stderr)
        return 1
    print("\n".join([*report.lines(), *summary.lines()]))
    return 0


def prepare_dagster_home(home: Path) -> Path:
    """Make `home` a Dagster home: the shipped `dagster.yaml` (pools, run queue) is copied in when
    the home has none; one already there is the user's and is kept. Returns its absolute path."""
    home = home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(INSTANCE_CONFIG, home / "dagster.yaml")
    return home


def _dev(args: argparse.Namespace, extra: list[str]) -> int:
    home = prepare_dagster_home(
        Path(args.home or os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME)
    )
    print(
        f"seedance-pipeline dev: DAGSTER_HOME={home} (runs, backfills and sensor cursors are kept there)"
    )
    if args.prepare_only:
        return 0
    workspace = Path(seedance_pipeline.__file__).resolve().parents[1] / "workspace.yaml"
    target = (
        ["-w", str(workspace)] if workspace.is_file() else ["-m", "seedance_pipeline.definitions"]
    )
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    os.execve(dagster, [dagster, "dev", *target, *extra], {**os.environ, "DAGSTER_HOME": str(home)})
    return 0  # not reached: the process is now `dagster dev`


def _resolve_unknown(args: argparse.Namespace) -> int:
    from seedance_pipeline.state.lifecycle import Move, RequestStatus

    store = settings_from(data_dir=args.data_dir, state_url=args.state_url).store()
    if args.request_id is None:
        for unknown in store.records(statuses=[RequestStatus.UNKNOWN]):
            print(
                f"{unknown.request_id}  {unknown.provider:9s} {unknown.batch:16s} {unknown.image_id}  {unknown.error_message}"
            )
        return 0
    if not (args.task_id or args.resubmit or args.abandon):
        print(
            "seedance-pipeline resolve-unknown: say what to do: --task-id, --resubmit or --abandon",
            file=sys.stderr,
        )
        return 2
    record = store.get(args.request_id)
    if args.task_id and record is not None:
        from seedance_pipeline.providers import adapter_for

        if adapter_for(record.provider).synchronous:
            print(f"seedance-pipeline resolve-unknown: {record.provider} has no tasks to adopt; "
                  "use --resubmit or --abandon", file=sys.stderr)  # fmt: skip
            return 2
    if args.task_id:
        moved = store.move(args.request_id, Move.OPERATOR_ADOPT, task_id=args.task_id)
    elif args.resubmit:
        moved = store.move(args.request_id, Move.OPERATOR_RESUBMIT, submitted_at=None)
    else:
        moved = store.move(
            args.request_id,
            Move.OPERATOR_ABANDON,
            cost_usd=0.0,
            error_message="abandoned by an operator after an unknown submission outcome",
        )
    if not moved:
        print(
            f"seedance-pipeline resolve-unknown: {args.request_id} is not an unknown request",
            file=sys.stderr,
        )
        return 1
    print(f"{args.request_id}: {store.transitions(args.request_id)[-1][1]}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from seedance_pipeline.ledger.export import export_dataset

    settings = settings_from(data_dir=args.data_dir, state_url=args.state_url)
    verdicts = [v.strip() for v in args.qc.split(",") if v.strip()]
    try:
        done = export_dataset(settings, args.out, verdicts)
    except ValueError as exc:
        print(f"seedance-pipeline export: {exc}", file=sys.stderr)
        return 2
    print(f"exported {done.videos} videos (QC {', '.join(verdicts)}); "
          f"{done.left_out} kept videos left out by their QC verdict; manifest: {done.manifest}")  # fmt: skip
    if done.mismatched:
        print(f"seedance-pipeline export: {len(done.mismatched)} videos left out, their copy no longer "
              f"matches its sha256: {', '.join(done.mismatched[:10])}", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seedance-pipeline",
        description="Image catalog → Seedance image-to-video providers → Parquet ledger.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "bench", help="measure the pipeline against baselines; writes BENCHMARKS.md", add_help=False
    )
    run = commands.add_parser(
        "run",
        help="run the pipeline headless until every request of the catalog is terminal",
        description="Runs the Dagster assets and sensor logic in-process: validates the catalog, "
        "submits, polls, keeps the videos and writes the ledger; then prints a summary. Running it "
        "again on the same catalog and data dir submits nothing new. Providers without an API key "
        "run in the sandbox emulator.",
    )
    run.add_argument("--catalog", help="CSV or Parquet, path or fsspec URL; default "
                     f"${ENV['catalog']}, else {DEFAULTS.catalog}")  # fmt: skip
    run.add_argument("--data-dir", help="state store, ledger and videos go here; default "
                     f"${ENV['data_dir']}, else {DEFAULTS.data_dir}")  # fmt: skip
    run.add_argument("--ledger-url", help="the ledger's folder, a path or fsspec URL (s3://bucket/prefix/"
                     "ledger); default $SEEDANCE_LEDGER_URL, else <data dir>/ledger")  # fmt: skip
    run.add_argument("--videos-url", help="where videos are copied, a path or fsspec URL; default "
                     "$SEEDANCE_VIDEOS_URL, else <data dir>/videos")  # fmt: skip
    run.add_argument("--daily-budget-usd", type=cap_argument, help="spend cap per UTC day, -1 for none; "
                     f"default ${ENV['daily_budget_usd']}, else {DEFAULTS.daily_budget_usd:g}")  # fmt: skip
    run.add_argument("--batch-budget-usd", type=cap_argument, help="spend cap per batch, -1 for none; "
                     f"default ${ENV['batch_budget_usd']}, else none")  # fmt: skip
    run.add_argument("--run-budget-usd", type=cap_argument, help="spend cap for this command, -1 for "
                     f"none; default ${ENV['run_budget_usd']}, else none")  # fmt: skip
    run.add_argument("--stale-submission-s", type=float, help="a submission unanswered this long "
                     "is flagged unknown (its process died); default "
                     f"${ENV['stale_submission_s']}, else {DEFAULTS.stale_submission_s:g}")  # fmt: skip
    run.add_argument("--timeout-s", type=float, default=None, help="give up after this long")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_run)

    retry = commands.add_parser(
        "retry",
        help="new attempts of requests that failed or expired, then run them to the end",
        description="Sends the requests of a batch (or of every batch) whose provider ended them "
        "(--status: failed, expired, cancelled) back to pending as new attempts, as many as the spend "
        "caps allow, then submits and polls them like `run` and rewrites the ledgers. The ledger keeps "
        "one row per request: its latest attempt, `attempts` and `total_cost_usd` (every attempt); "
        "the state store keeps every attempt. A request whose outcome is unknown is never retried: "
        "see resolve-unknown. A request whose seed was random gets a new one from the provider.",
    )
    retry.add_argument("--catalog", help=f"default ${ENV['catalog']}, else {DEFAULTS.catalog}")
    retry.add_argument("--data-dir", help=f"default ${ENV['data_dir']}, else {DEFAULTS.data_dir}")
    retry.add_argument("--batch", help="the batch to retry (default: every batch)")
    retry.add_argument("--status", default="failed,expired", help="comma-separated statuses to "
                       "retry: failed, expired, cancelled (default failed,expired)")  # fmt: skip
    retry.add_argument("--qc-fail", action="store_true", help="instead, succeeded requests whose "
                       "video failed QC, each with a new random seed, up to "
                       "$SEEDANCE_QC_MAX_ATTEMPTS attempts (default 3)")  # fmt: skip
    retry.add_argument("--ledger-url", help="the ledger's folder; default $SEEDANCE_LEDGER_URL")
    retry.add_argument("--videos-url", help="where videos are copied; default $SEEDANCE_VIDEOS_URL")
    for cap, what in (
        ("daily", "per UTC day"),
        ("batch", "per batch"),
        ("run", "for this command"),
    ):
        retry.add_argument(f"--{cap}-budget-usd", type=cap_argument, help=f"spend cap {what}, -1 "
                           f"for none; default ${ENV[f'{cap}_budget_usd']}")  # fmt: skip
    retry.add_argument("--timeout-s", type=float, default=None, help="give up after this long")
    retry.add_argument("--no-progress", action="store_true", help="no progress bar")
    retry.set_defaults(func=_retry)

    resolve = commands.add_parser(
        "resolve-unknown",
        help="list, or decide about, requests whose submission outcome is unknown",
        description="A create call that timed out or lost its answer may have made (and billed) a task, so "
        "the pipeline never resubmits it by itself. Look the request up at the provider, then either adopt "
        "the task it made (--task-id), resubmit (--resubmit: may pay twice), or give it up (--abandon). "
        "Without a request id, lists the unknown requests.",
    )
    resolve.add_argument("request_id", nargs="?", help="the request to decide about")
    resolve.add_argument("--data-dir", help=f"default ${ENV['data_dir']}, else {DEFAULTS.data_dir}")
    resolve.add_argument(
        "--state-url",
        help="SQLAlchemy URL of the state store (default: $SEEDANCE_STATE_URL, else SQLite in the data dir)",
    )
    action = resolve.add_mutually_exclusive_group()
    action.add_argument("--task-id", help="the provider task this request created: polling resumes")
    action.add_argument("--resubmit", action="store_true", help="submit it again")
    action.add_argument("--abandon", action="store_true", help="mark it failed")
    resolve.set_defaults(func=_resolve_unknown)

    export = commands.add_parser(
        "export",
        help="write the kept videos that pass QC, with a Parquet manifest, as a dataset",
        description="Copies every kept video whose QC verdict is wanted to OUT/videos/ and writes "
        "OUT/manifest.parquet (file_name, prompt, image, seed used, QC figures, …), readable by "
        "pandas, DuckDB and Hugging Face datasets. OUT is a path or fsspec URL.",
    )
    export.add_argument("--data-dir", help=f"default ${ENV['data_dir']}, else {DEFAULTS.data_dir}")
    export.add_argument(
        "--state-url",
        help="SQLAlchemy URL of the state store (default: $SEEDANCE_STATE_URL, else SQLite in the data dir)",
    )
    export.add_argument("--out", required=True, help="where the dataset goes: a path or fsspec URL")
    export.add_argument("--qc", default="pass", help="the QC verdicts to export, comma-separated: "
                        "pass, warn, fail (default pass)")  # fmt: skip
    export.set_defaults(func=_export)

    dev = commands.add_parser(
        "dev",
        help="start `dagster dev` on a Dagster home that persists",
        description="Starts `dagster dev` (extra arguments go to it, e.g. -p 3001) with DAGSTER_HOME "
        f"set to --home, else $DAGSTER_HOME, else {DEFAULT_DAGSTER_HOME} (ignored by git), after "
        "copying the shipped dagster.yaml (pool limits seedance_<provider>, run queue for one "
        "machine) there if the home has none. Runs, backfills and sensor cursors survive restarts.",
    )
    dev.add_argument("--home", help="the Dagster home folder")
    dev.add_argument("--prepare-only", action="store_true", help="make the home, do not start")

    emulator = commands.add_parser(
        "emulator",
        help="serve a local emulator of every provider API (loopback only)",
        description="Serve Novita, myrouter, AI/ML API, Segmind and ModelArk on one loopback port, "
        "each under /<provider>: point <PREFIX>_BASE_URL at http://HOST:PORT/<provider>.",
    )
    emulator.add_argument(
        "--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)"
    )
    emulator.add_argument("--port", type=int, default=8787, help="port (default 8787)")
    emulator.add_argument("--queued-s", type=float, default=2.0, help="seconds a task stays queued")
    emulator.add_argument("--running-s", type=float, default=8.0, help="seconds a task then runs")
    emulator.add_argument(
        "--max-in-flight", type=int, help="per-key limit of tasks in flight, every provider"
    )
    emulator.add_argument("--seed", type=int, default=0, help="seed of the fault-injection dice")
    emulator.add_argument(
        "--port-file", help="write {url, pid} here once listening (useful with --port 0)"
    )
    emulator.add_argument(
        "--idle-exit-s", type=float, help="exit after this many seconds without a call"
    )
    emulator.set_defaults(func=_emulator)
    return parser


def _bench(argv: list[str]) -> int:
    """The benchmarks are developer tooling beside the package in the source checkout, not in the
    wheel; with an editable install that checkout is the folder above the package."""
    checkout = Path(seedance_pipeline.__file__).resolve().parents[1]
    if not (checkout / "benchmarks" / "runner.py").is_file():
        print(
            f"seedance-pipeline bench: no benchmarks/ beside the package in {checkout}; "
            "run it from a clone installed with `pip install -e .`",
            file=sys.stderr,
        )
        return 2
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))  # inherited by the cases' spawned processes
    runner = importlib.import_module("benchmarks.runner")
    return int(runner.main(argv))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own options: see `seedance-pipeline bench --help`
        return _bench(argv[1:])
    args, extra = build_parser().parse_known_args(argv)
    if args.command == "dev":
        return _dev(args, extra)
    if extra:
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
