"""The child processes' entry points: a measurement (`--child`) and a worker without result
retention (`--serve-without-retention`). Each sets Django up before importing what needs it (the
task module)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import django

from scripts.bench.common import BenchError
from scripts.bench.processes import exit_on_signal


def child_main(name: str, params: dict[str, Any], log_dir: Path) -> int:
    """Run one measurement; its result (or error), with the problems seen, is the last line of
    stdout."""
    signal.signal(signal.SIGTERM, exit_on_signal)
    django.setup()
    from scripts.bench.measurements import MEASUREMENTS, reset_database
    from scripts.bench.workers import Bench

    with Bench(log_dir) as bench:
        try:
            reset_database(bench)
            result = MEASUREMENTS[name](bench, **params)
        except BenchError as error:
            result = {"error": str(error)}
    print(json.dumps(result | {"problems": bench.problems}), flush=True)
    return 0


def serve_without_retention(queue: str) -> None:
    """`manage.py taskqueue_worker --queues <queue> --threads 1` with TASKQUEUE RESULT_RETENTION=0.

    The settings read TASKQUEUE from no environment variable, so it is set here, in-process.
    """
    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.TASKQUEUE = {
        **settings.TASKQUEUE,
        "RESULT_RETENTION": 0,
    }  # TASK_MODULES kept: scripts.bench.tasks
    call_command("taskqueue_worker", queues=queue, threads=1)
