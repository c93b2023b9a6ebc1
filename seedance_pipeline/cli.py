"""`seedance-pipeline`: the project's command line."""

from __future__ import annotations

import argparse
import sys

from seedance_pipeline.emulator import EmulatorConfig, serve


def _emulator(args: argparse.Namespace) -> int:
    config = EmulatorConfig(queued_s=args.queued_s, running_s=args.running_s, seed=args.seed)
    try:
        serve(args.host, args.port, config)
    except ValueError as exc:
        print(f"seedance-pipeline emulator: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seedance-pipeline",
        description="Image catalog → Seedance image-to-video providers → Parquet ledger.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
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
    emulator.add_argument("--seed", type=int, default=0, help="seed of the fault-injection dice")
    emulator.set_defaults(func=_emulator)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
