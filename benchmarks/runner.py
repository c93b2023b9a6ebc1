"""`seedance-pipeline bench`: is the pipeline ever the bottleneck? Each case runs in its own process
(its peak memory counts the processes it starts) against the emulator over loopback, and every ratio is measured side
by side in one run, because these machines are noisy. Results go to a table, to BENCHMARKS.md, and
to the exit code (non-zero when a target is missed, unless --smoke).
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import Result, Skipped

# Each case is the module of that name in this package, with `run(scale, repeats, work) -> Result`.
CASES = ("validation", "submission", "polling", "capacity", "daemon_capacity", "ledger", "catalog",
         "qc", "pg_submission", "pg_claims", "pg_ledger")  # fmt: skip
PEAK_LIMITS_MIB = {"ledger": 2048.0, "catalog": 1024.0, "pg_ledger": 2048.0}


def _child(case: str, scale: float, repeats: int, queue: Any) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"seedance-bench-{case}-"))
    try:
        # Imported here, in the case's own process, so its peak memory counts only what it loads.
        result: Result = importlib.import_module(f"benchmarks.{case}").run(scale, repeats, work)
    except Skipped as exc:  # not a miss outside --smoke; CI's smoke run has what every case needs
        result = Result(case, "skipped", "—", "—", "—", True, notes=[str(exc)], skipped=True)
    except Exception as exc:  # reported as a miss, with why
        result = Result(case, "error", "—", "—", "—", False, notes=[f"{type(exc).__name__}: {exc}"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # The case's process or any child it started (the emulator, the ledger's SQLite reader).
    peaks = (
        resource.getrusage(who).ru_maxrss
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    result.peak_mib = max(peaks) / 1024
    queue.put(asdict(result))


def run_case(case: str, scale: float, repeats: int) -> Result:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(case, scale, repeats, queue))
    process.start()
    result = Result(**queue.get())
    process.join()
    limit = PEAK_LIMITS_MIB.get(case)
    if limit is not None and result.peak_mib > limit:
        result.ok = False
        result.notes.append(f"peak {result.peak_mib:.0f} MiB is over {limit:.0f} MiB")
    return result


def table(results: list[Result]) -> str:
    lines = [
        "| case | measured | baseline (same run) | ratio | target | peak memory | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        notes = f" ({'; '.join(r.notes)})" if r.notes else ""
        lines.append(f"| {r.case} | {r.measured}{notes} | {r.baseline} | {r.ratio} | {r.target} | "
                     f"{r.peak_mib:,.0f} MiB | {'skipped' if r.skipped else 'yes' if r.ok else '**no**'} |")  # fmt: skip
    return "\n".join(lines)


def kept_rows(results_section: str, ran: list[str]) -> list[str]:
    """The table rows of an earlier Results section for cases not run this time, marked † with
    the date of the run that measured them."""
    stamp = next((line for line in results_section.splitlines() if line.strip()), "")[:16]
    rows = []
    for line in results_section.splitlines():
        cells = line.split(" | ")
        if not line.startswith("| ") or len(cells) < 7 or line.startswith(("| case ", "|---")):
            continue
        case = cells[0][2:].split(" ")[0]
        if case in CASES and case not in ran:
            marked = cells[0] if "†" in cells[0] else f"{cells[0]} † {stamp}"
            rows.append(" | ".join([marked, *cells[1:]]))
    return rows


def machine() -> str:
    return f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seedance-pipeline bench", description=__doc__)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="fraction of the default sizes (CI: 0.02)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per case; medians are reported"
    )
    parser.add_argument("--only", nargs="*", choices=CASES, help="run only these cases")
    parser.add_argument(
        "--output", default="BENCHMARKS.md", help="where to write the results ('' for nowhere)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="keep the benchmark working; never fail on timing"
    )
    args = parser.parse_args(argv)
    results = []
    for case in args.only or CASES:
        print(f"running {case}…", flush=True)
        results.append(run_case(case, args.scale, args.repeats))
    text = table(results)
    print(text)
    if args.output:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        only = f" --only {' '.join(args.only)}" if args.only else ""
        header = (f"## Results\n\n{stamp} on {machine()}; `seedance-pipeline bench --scale {args.scale:g} "
                  f"--repeats {args.repeats}{only}`; medians of the repeats.\n\n")  # fmt: skip
        path = Path(args.output)
        old = path.read_text() if path.exists() else "# Benchmarks\n\n"
        intro, _, before = old.partition("## Results")
        kept = kept_rows(before, [r.case for r in results])
        if kept:  # a run of some cases: the others' rows stay, said to be from an earlier run
            text = "\n".join([text, *kept])
            header += "Rows marked † are kept from the earlier run dated in them.\n\n"
        path.write_text(intro + header + text + "\n")
    if args.smoke:
        return 0 if all(r.measured != "error" and not r.skipped for r in results) else 1
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
