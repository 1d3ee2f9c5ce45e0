"""The measurements, each run by a child process of its own on emptied tables (see `child`).

Child side: imported once Django is set up. Each takes the Bench and its parameters (from the plan's
Step) and returns its figures; problems it sees go to `bench.problems`.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Min

from scripts.bench.common import (
    IDLE_SETTLE_SECONDS,
    POLL_SECONDS,
    SETTLE_SECONDS,
    STAMP_FILE_ENV,
    STAMP_QUEUE,
    WORKER_POLL_SECONDS,
    BenchError,
    drain_timeout,
)
from scripts.bench.enqueueing import bulk_enqueue, enqueue_committed, single_enqueuer
from scripts.bench.front_doors import FRONT_DOORS, QUEUE_CLASS, FrontDoor
from scripts.bench.processes import cpu_seconds, rss_mib
from scripts.bench.tasks import BenchStamp
from scripts.bench.workers import Bench
from taskqueue.models import UNFINISHED, Status, Task, WorkerProcess


def reset_database(bench: Bench) -> None:
    """Empty the task tables, so every measurement starts alike; report worker rows left
    registered."""
    left = list(WorkerProcess.objects.values_list("name", "pid"))
    if left:
        bench.problems.append(
            f"{len(left)} worker process rows still registered before the measurement: {left[:3]}"
        )
    tables = (Task._meta.db_table, WorkerProcess._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)}")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")


def status_counts() -> dict[str, int]:
    """How many tasks there are of each kind, queue and status, as "<kind> <queue> <status>"."""
    groups = (
        Task.objects.order_by().values_list("kind", "queue_name", "status").annotate(Count("id"))
    )
    return {f"{kind} {queue} {status}": count for kind, queue, status, count in groups}


def wait_drained(bench: Bench, timeout: float, on_poll: Callable[[], None] | None = None) -> float:
    """Poll every 50 ms until no task is ready or running; the monotonic time that was first
    seen."""
    unfinished = Task.objects.filter(status__in=UNFINISHED)
    deadline = time.monotonic() + timeout
    while unfinished.exists():
        if on_poll:
            on_poll()
        bench.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(
                f"tasks still unfinished {timeout:.0f}s after enqueueing: {status_counts()}"
            )
        time.sleep(POLL_SECONDS)
    return time.monotonic()


def check_outcomes(
    bench: Bench, tasks: int, door: FrontDoor, queue: str | None = None, retention: bool = True
) -> None:
    """Every task, of the front door's kind and in its queue (or `queue`), succeeded exactly once
    (with RESULT_RETENTION=0 their rows are gone)."""
    counts = status_counts()
    expected = (
        {f"{door.kind} {queue or door.queue} {Status.SUCCEEDED.value}": tasks} if retention else {}
    )
    if counts != expected:
        bench.problems.append(
            f"tasks by kind, queue and status after the run: {counts}, expected {expected}"
        )
    failed = Task.objects.filter(status=Status.FAILED).values_list("errors", flat=True).first()
    if failed:
        bench.problems.append(
            "a failed task's last error: "
            f"{failed[-1].get('exc_class')}: {failed[-1].get('message')}"
        )
    repeated = Task.objects.filter(attempts__gt=1).count()
    if repeated:
        bench.problems.append(f"{repeated} tasks took more than one attempt")


def measure_enqueue(
    bench: Bench, count: int, budget: float, front: str = QUEUE_CLASS
) -> dict[str, Any]:
    """One no-op task at a time through a front door (`add_task`, `enqueue()`, `delay()`), each its
    own transaction (autocommit), for `count` tasks or `budget` seconds."""
    enqueue_one = single_enqueuer(front)
    enqueue_one()  # opens the connection
    done = 0
    started = time.perf_counter()
    deadline = started + budget
    while done < count and time.perf_counter() < deadline:
        enqueue_one()
        done += 1
    return {"rate": done / (time.perf_counter() - started)}


def measure_bulk(bench: Bench, tasks: int) -> dict[str, Any]:
    bulk_enqueue(QUEUE_CLASS, 1)  # opens the connection
    started = time.perf_counter()
    bulk_enqueue(QUEUE_CLASS, tasks)
    return {"rate": tasks / (time.perf_counter() - started)}


def measure_drain(
    bench: Bench, tasks: int, workers: int, retention: bool = True, front: str = QUEUE_CLASS
) -> dict[str, Any]:
    """Idle workers first; then bulk-insert the front door's no-op tasks and time from the commit
    until none is unfinished.

    The insert comes at a random point of the workers' idle poll cycle, which matters where nothing
    wakes them (SQLite). With the rows kept, `steady_rate` is the rate from the first task's start
    (or the commit, if stamped earlier) to the last one's finish, as the rows record them.
    """
    door = FRONT_DOORS[front]
    settle = SETTLE_SECONDS + random.uniform(0, WORKER_POLL_SECONDS)
    bench.start_workers(workers, queue=door.queue, retention=retention, settle=settle)
    cpu = bench.worker_cpu_seconds()
    committed, committed_wall = enqueue_committed(tasks, front)
    seconds = wait_drained(bench, drain_timeout(tasks)) - committed
    cpu = bench.worker_cpu_seconds() - cpu
    result: dict[str, Any] = {
        "rate": tasks / seconds,
        "seconds": seconds,
        "worker_cpu_percent": cpu / seconds * 100,
        "worker_cpu_us_per_task": cpu / tasks * 1e6,
    }
    if retention:
        span = Task.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
        first = span["first"].timestamp()
        result["first_pickup_ms"] = (first - committed_wall) * 1000
        result["steady_rate"] = tasks / (span["last"].timestamp() - max(first, committed_wall))
    check_outcomes(bench, tasks, door, retention=retention)
    return result


def wait_for_growth(path: Path, size: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (grown := path.stat().st_size) <= size:
        if time.monotonic() > deadline:
            raise BenchError(f"a task did not run within {timeout:.0f}s of its enqueue")
        time.sleep(0.001)
    return grown


def measure_pickup(bench: Bench, samples: int, budget: float) -> dict[str, Any]:
    """One idle worker; enqueue one task at a time, each after the last ran and a random pause.

    Latency: from `add_task` returning (its commit done) to the task's `process` starting. Where
    only polling wakes the worker (SQLite), the pause spans its poll interval, so each task comes at
    a random point of the poll cycle rather than just after the worker's last look.
    """
    stamps = bench.log_dir / f"stamps-{os.getpid()}.txt"
    stamps.touch()
    bench.start_workers(1, queue=STAMP_QUEUE, env={STAMP_FILE_ENV: str(stamps)})
    queue = BenchStamp
    longest_pause = 0.05 if connection.vendor == "postgresql" else WORKER_POLL_SECONDS
    enqueued: dict[int, float] = {}
    size = 0
    deadline = time.monotonic() + budget
    while len(enqueued) < samples and time.monotonic() < deadline:
        task_id = queue.add_task(None).id
        enqueued[task_id] = time.time()
        size = wait_for_growth(stamps, size)
        time.sleep(random.uniform(0.01, longest_pause))
    wait_drained(bench, drain_timeout(0))
    ran = {
        int(task_id): float(at)
        for task_id, at in (line.split() for line in stamps.read_text().splitlines())
    }
    latencies = [(ran[task_id] - at) * 1000 for task_id, at in enqueued.items()]
    if len(latencies) < 2:
        raise BenchError(f"only {len(latencies)} pickup sample(s) within {budget:.0f}s")
    check_outcomes(bench, len(enqueued), FRONT_DOORS[QUEUE_CLASS], queue=STAMP_QUEUE)
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": statistics.quantiles(latencies, n=100, method="inclusive")[98],
        "samples": len(latencies),
    }


def measure_memory(bench: Bench, tasks: int, warmup: int) -> dict[str, Any]:
    """A worker's RSS idle, after a warm-up, at its peak during `tasks` tasks, and after them."""
    [worker] = bench.start_workers(1)
    idle = rss_mib(worker.pid)
    enqueue_committed(warmup)
    wait_drained(bench, drain_timeout(warmup))
    warm = rss_mib(worker.pid)
    peak = warm

    def sample() -> None:
        nonlocal peak
        peak = max(peak, rss_mib(worker.pid))

    cpu = bench.worker_cpu_seconds()
    committed, _ = enqueue_committed(tasks)
    seconds = wait_drained(bench, drain_timeout(tasks), on_poll=sample) - committed
    cpu_percent = (bench.worker_cpu_seconds() - cpu) / seconds * 100
    time.sleep(0.5)
    after = rss_mib(worker.pid)
    check_outcomes(bench, warmup + tasks, FRONT_DOORS[QUEUE_CLASS])
    return {
        "rate": tasks / seconds,
        "worker_cpu_percent": cpu_percent,
        "idle_mib": idle,
        "warm_mib": warm,
        "peak_mib": max(peak, after),
        "after_mib": after,
        "growth_mib": after - warm,
    }


def transactions_so_far() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = "
            "current_database()"
        )
        return int(cursor.fetchone()[0])


def measure_idle(bench: Bench, seconds: float) -> dict[str, Any]:
    """One worker on an empty queue: its CPU use and, on PostgreSQL, the transactions it commits.

    The transactions counted in a window without the worker (this process's own readings, and any
    background work) are subtracted. PostgreSQL counts a session's transactions when it goes idle,
    at most once a second, so the figure is approximate.
    """
    counted = connection.vendor == "postgresql"
    baseline = 0
    if counted:
        time.sleep(
            IDLE_SETTLE_SECONDS
        )  # this process's earlier statements get counted before the window
        before = transactions_so_far()
        time.sleep(seconds)
        baseline = transactions_so_far() - before
    [worker] = bench.start_workers(1)
    time.sleep(IDLE_SETTLE_SECONDS)
    transactions = transactions_so_far() if counted else 0
    cpu, started = cpu_seconds(worker.pid), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {"cpu_percent": (cpu_seconds(worker.pid) - cpu) / elapsed * 100}
    if counted:
        result["xact_per_second"] = (transactions_so_far() - transactions - baseline) / elapsed
        result["baseline_transactions"] = float(baseline)
    bench.check_alive()
    return result


# By the names a Step gives (plan.MEASUREMENT_NAMES, which `--child` accepts).
MEASUREMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "enqueue": measure_enqueue,
    "bulk": measure_bulk,
    "drain": measure_drain,
    "pickup": measure_pickup,
    "memory": measure_memory,
    "idle": measure_idle,
}
