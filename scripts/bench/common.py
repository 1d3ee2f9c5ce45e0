"""What both sides of the benchmark share: paths, module and queue names, timings, BenchError."""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent.parent
ENTRY_MODULE = "scripts.bench"  # run with -m by measuring children and workers without retention
TASKS_MODULE = "scripts.bench.tasks"  # the workers' task module (TASKQUEUE_TASK_MODULES)
NOOP_QUEUE, STAMP_QUEUE = "bench-noop", "bench-stamp"
DJANGO_QUEUE, CELERY_QUEUE = "bench-django", "bench-celery"
STAMP_FILE_ENV = "BENCH_STAMP_FILE"
SQLITE, POSTGRES = "SQLite", "PostgreSQL"

POLL_SECONDS = 0.05  # how often a drain is checked for its end
WORKER_POLL_SECONDS = 1.0  # an idle worker's poll interval with the default settings
# after registering, a worker opens its LISTEN connection and makes its first poll
SETTLE_SECONDS = 1.0
# before idle cost is counted, PostgreSQL counts the start-up transactions
IDLE_SETTLE_SECONDS = 3.0
INSERT_SLICE = 20_000  # tasks per add_tasks call, to bound the measuring process's memory
WORKER_STOP_SECONDS = 30.0
CHILD_STOP_SECONDS = 45.0
MIGRATE_SECONDS = 180.0


class BenchError(Exception):
    pass


def drain_timeout(tasks: int) -> float:
    return 60.0 + tasks / 200


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
