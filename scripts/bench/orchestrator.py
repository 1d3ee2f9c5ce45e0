"""The orchestrator: sets up the databases, runs each step of the plan in a child process of its own
on each database, and reports. Runs without Django: the children configure it, one database each."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.bench.common import ENTRY_MODULE, PROJECT, progress
from scripts.bench.databases import Database, migrate, open_databases
from scripts.bench.plan import Plan, Step, schedule
from scripts.bench.processes import exit_on_signal, stop_group
from scripts.bench.report import report
from scripts.bench.results import Results


def run_child(database: Database, step: Step, log_dir: Path) -> dict[str, Any]:
    """Run one measurement in a child process (its own session); always stop it and what it
    started."""
    command = [
        sys.executable,
        "-m",
        ENTRY_MODULE,
        "--child",
        step.measurement,
        "--params",
        json.dumps(step.params),
    ]
    command += ["--log-dir", str(log_dir)]
    process = subprocess.Popen(
        command,
        cwd=PROJECT,
        env=database.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=step.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {step.timeout:.0f}s; stopped"}
    finally:
        stop_group(process)
    lines = out.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = "\n".join((out + err).strip().splitlines()[-15:])
        return {"error": f"exited with {process.returncode} and no result:\n{tail}"}
    noise = [line for line in [*lines[:-1], *err.splitlines()] if line.strip()]
    result.setdefault("problems", []).extend(f"measuring process printed: {line}" for line in noise)
    return result


def measure_all(plan: Plan, databases: list[Database], log_dir: Path) -> Results:
    results = Results()
    for label, step in schedule(plan):
        for database in databases:
            started = time.monotonic()
            result = run_child(database, step, log_dir)
            shown = ", ".join(
                f"{key}={value:,.1f}" for key, value in result.items() if isinstance(value, float)
            )
            outcome = shown or (result.get("error") or "no figures").splitlines()[0]
            progress(
                f"[{label}] {database.label:<10} {step.key:<14} {outcome}  "
                f"({time.monotonic() - started:.0f}s)"
            )
            results.add(database.label, step.key, label, result)
    return results


def orchestrate(plan: Plan) -> int:
    started = time.monotonic()
    signal.signal(signal.SIGTERM, exit_on_signal)
    with (
        tempfile.TemporaryDirectory(prefix="taskqueue-bench-") as work,
        contextlib.ExitStack() as stack,
    ):
        work_dir = Path(work)
        progress(f"Setting up databases in {work_dir} ...")
        databases, notes = open_databases(work_dir, stack)
        for database in databases:
            migrate(database)
        results = measure_all(plan, databases, work_dir)
    report(plan, databases, notes, results, time.monotonic() - started)
    return 0
