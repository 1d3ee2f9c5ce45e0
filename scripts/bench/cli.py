"""The command line, `python -m scripts.bench`: the orchestrator, or one of the child processes it
starts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scripts import bench as package
from scripts.bench.child import child_main, serve_without_retention
from scripts.bench.common import BenchError, progress
from scripts.bench.orchestrator import orchestrate
from scripts.bench.plan import MEASUREMENT_NAMES, make_plan


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench", description=package.__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--runs", type=int, help="runs per figure; medians are shown (default 3, --quick 1)"
    )
    parser.add_argument(
        "--tasks", type=int, help="tasks per drain and bulk enqueue (default 20,000)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer and smaller runs, for a first look"
    )
    parser.add_argument("--child", choices=sorted(MEASUREMENT_NAMES), help=argparse.SUPPRESS)
    parser.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--log-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-without-retention", metavar="QUEUE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("runs", "tasks"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_without_retention:
        serve_without_retention(args.serve_without_retention)
        return 0
    if args.child:
        return child_main(args.child, json.loads(args.params), args.log_dir)
    try:
        return orchestrate(make_plan(args))
    except KeyboardInterrupt:
        progress("Interrupted: everything the benchmark started has been stopped.")
        return 130
    except BenchError as error:
        progress(f"Benchmark failed: {error}")
        return 1
