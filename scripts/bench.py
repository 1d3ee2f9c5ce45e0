"""Benchmark the task queue on SQLite and on a throwaway PostgreSQL 15, side by side.

    python -m scripts.bench [--runs N] [--tasks N] [--quick]

Measures enqueue rates (one per transaction, and bulk), the drain rate of no-op tasks by one and by
two real worker processes (`manage.py taskqueue_worker --threads 1`), the pickup latency of an idle
worker, a worker's memory over a long run, and what an idle worker costs. The task queue's three front
doors (queue classes, `django.tasks`, the Celery-style `shared_task`) are compared on the one-worker
drain and on single enqueues. Prints the median of each figure over the runs, its ratio
PostgreSQL/SQLite and against its target, and ends with a markdown table for the README.

Each measurement runs in a child process of its own (`--child`, Django configured for one database),
started in a session of its own, so everything it starts can be stopped through it, even on errors,
timeouts or Ctrl+C. The worker processes import the queue classes and tasks below as
`scripts.bench.<name>` (`scripts.bench.BenchNoOp`, `scripts.bench.django_noop`, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scripts.pgcluster import DEFAULT_BIN_DIR, Cluster, ClusterError, binaries_available

if TYPE_CHECKING:  # imported at run time only once Django is configured
    from taskqueue.celery import SharedTask
    from taskqueue.engine.enqueue import TaskSpec

PROJECT = Path(__file__).resolve().parent.parent
MODULE = "scripts.bench"
NOOP_QUEUE, STAMP_QUEUE = "bench-noop", "bench-stamp"
DJANGO_QUEUE, CELERY_QUEUE = "bench-django", "bench-celery"
STAMP_FILE_ENV = "BENCH_STAMP_FILE"

# What child processes keep of this process's environment (as the test suite's worker fixture does).
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYENV_VERSION")
SECRET_KEY = "bench-only-secret-key-8f3Kq9zL2wXv7Rt5Yp1Nm4Bc6Hd0Js8Ga2Ue"
SQLITE, POSTGRES = "SQLite", "PostgreSQL"

POLL_SECONDS = 0.05  # how often a drain is checked for its end
WORKER_POLL_SECONDS = 1.0  # an idle worker's poll interval with the default settings
SETTLE_SECONDS = 1.0  # after registering, a worker opens its LISTEN connection and makes its first poll
IDLE_SETTLE_SECONDS = 3.0  # before idle cost is counted, PostgreSQL counts the start-up transactions
INSERT_SLICE = 20_000  # tasks per add_tasks call, to bound the measuring process's memory
WORKER_STOP_SECONDS = 30.0
CHILD_STOP_SECONDS = 45.0
MIGRATE_SECONDS = 180.0
MAX_PROBLEMS_SHOWN = 40
RATIO = "x"  # the unit of a figure that is a ratio of two others


class BenchError(Exception):
    pass


# --- The queue classes and tasks the worker processes run ----------------------------------------


def __getattr__(name: str) -> Any:
    """`BenchNoOp`, `BenchStamp`, `django_noop` and `celery_noop`, defined on first use.

    The front doors need Django's app registry (and `django.tasks` its TASKS setting), and this module
    is also the benchmark's entry point, which runs before Django is configured; worker processes get
    here after `django.setup()`.
    """
    define = LAZY_DEFINITIONS.get(name)
    if define is None:
        raise AttributeError(f"module {MODULE!r} has no attribute {name!r}")
    globals().update(define())
    return globals()[name]


def define_queues() -> dict[str, type]:
    from taskqueue.queues import BaseQueue, Retry, TaskInfo

    class BenchNoOp(BaseQueue[None]):
        """Does nothing: what remains is the engine's cost per task."""

        __module__ = MODULE
        __qualname__ = "BenchNoOp"
        queue_name = NOOP_QUEUE

        @classmethod
        def process(cls, task_info: TaskInfo[None]) -> Retry | None:
            return None

    class BenchStamp(BaseQueue[None]):
        """Appends `<task id> <time.time()>` to the file named by BENCH_STAMP_FILE as it starts."""

        __module__ = MODULE
        __qualname__ = "BenchStamp"
        queue_name = STAMP_QUEUE

        @classmethod
        def process(cls, task_info: TaskInfo[None]) -> Retry | None:
            line = f"{task_info.id} {time.time()!r}\n".encode()
            fd = os.open(os.environ[STAMP_FILE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
            return None

    return {"BenchNoOp": BenchNoOp, "BenchStamp": BenchStamp}


def define_tasks() -> dict[str, Any]:
    """`django_noop`, a `django.tasks` task, and `celery_noop`, a Celery-style `@shared_task`: no-ops.

    Both front doors refuse functions that are not at module level, judging by `__qualname__`, and
    store `__module__` + `__qualname__` as the path workers import: both are set to this module's.
    """
    from django.tasks import task

    from taskqueue.celery import shared_task

    def django_noop() -> None:
        """Does nothing, as a django.tasks task."""

    def celery_noop() -> None:
        """Does nothing, as a Celery-style task."""

    for function in (django_noop, celery_noop):
        function.__module__, function.__qualname__ = MODULE, function.__name__
    return {
        "django_noop": task(queue_name=DJANGO_QUEUE)(django_noop),
        "celery_noop": shared_task(queue=CELERY_QUEUE)(celery_noop),
    }


LAZY_DEFINITIONS: dict[str, Callable[[], dict[str, Any]]] = {
    "BenchNoOp": define_queues,
    "BenchStamp": define_queues,
    "django_noop": define_tasks,
    "celery_noop": define_tasks,
}


def define_in_worker() -> None:
    """A worker imports this module as one of its TASKQUEUE["TASK_MODULES"], with Django set up: the
    queue classes and tasks are defined (and so declared, as workers run only declared tasks) at once."""
    from django.apps import apps

    if apps.ready:
        for define in dict.fromkeys(LAZY_DEFINITIONS.values()):
            globals().update(define())


define_in_worker()


def bench_object(name: str) -> Any:
    """A queue class or task of this module, imported the way worker processes import it."""
    from django.utils.module_loading import import_string

    return import_string(f"{MODULE}.{name}")


@dataclass(frozen=True)
class FrontDoor:
    """A way into the engine, as the benchmark uses it: its no-op task and that task's queue."""

    kind: str  # what the engine stores as the kind of its tasks
    label: str
    single_call: str  # how one task is enqueued
    noop: str  # the no-op's name in this module
    queue: str


QUEUE_CLASS, DJANGO_TASK, CELERY_TASK = "queue", "django", "celery"
FRONT_DOORS = {
    door.kind: door
    for door in (
        FrontDoor(QUEUE_CLASS, "queue classes", "add_task", "BenchNoOp", NOOP_QUEUE),
        FrontDoor(DJANGO_TASK, "django.tasks", "task.enqueue()", "django_noop", DJANGO_QUEUE),
        FrontDoor(CELERY_TASK, "Celery-style", "shared_task.delay()", "celery_noop", CELERY_QUEUE),
    )
}
OTHER_FRONT_DOORS = (FRONT_DOORS[DJANGO_TASK], FRONT_DOORS[CELERY_TASK])


def single_enqueuer(front: str) -> Callable[[], object]:
    """Enqueues one no-op task the front door's own way: `add_task(None)`, `enqueue()` or `delay()`."""
    noop = bench_object(FRONT_DOORS[front].noop)
    if front == DJANGO_TASK:
        return noop.enqueue
    if front == CELERY_TASK:
        return noop.delay
    return lambda: noop.add_task(None)


def bulk_enqueue(front: str, count: int) -> None:
    """Enqueues `count` no-op tasks in one go: `add_tasks`, the backend's `enqueue_all`, or, as the
    Celery-style API has no bulk call, the engine's `enqueue_many` with what `delay()` stores."""
    noop = bench_object(FRONT_DOORS[front].noop)
    if front == DJANGO_TASK:
        noop.get_backend().enqueue_all([(noop, [], {})] * count)
    elif front == CELERY_TASK:
        from taskqueue.engine.enqueue import enqueue_many

        enqueue_many([celery_spec(noop)] * count)
    else:
        noop.add_tasks([None] * count)


def celery_spec(task: SharedTask) -> TaskSpec:
    """The TaskSpec `task.delay()` stores for a call without arguments (see SharedTask.apply_async)."""
    from taskqueue.celery import KIND
    from taskqueue.engine.enqueue import TaskSpec

    return TaskSpec(
        kind=KIND,
        task_path=task.name,
        payload={"args": [], "kwargs": {}},
        queue_name=task.queue,
        priority=task.priority,
        max_attempts=task.policy.max_retries + 1,
    )


# --- Child side: one measurement, Django configured for one database -----------------------------


@dataclass
class StartedWorker:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_lines(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]


@dataclass
class Bench:
    """One measurement: the worker processes it started (all stopped on exit) and the problems seen."""

    log_dir: Path
    problems: list[str] = field(default_factory=list)
    workers: list[StartedWorker] = field(default_factory=list)

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_workers()

    def start_workers(
        self,
        count: int,
        queue: str = NOOP_QUEUE,
        retention: bool = True,
        env: dict[str, str] | None = None,
        settle: float = SETTLE_SECONDS,
    ) -> list[StartedWorker]:
        """Start worker processes, wait until each has registered, then let them settle into idling."""
        if retention:
            command = [sys.executable, "manage.py", "taskqueue_worker", "--queues", queue, "--threads", "1"]
        else:
            command = [sys.executable, "-m", MODULE, "--serve-without-retention", queue]
        started = []
        for _ in range(count):
            log_path = self.log_dir / f"worker-{os.getpid()}-{len(self.workers)}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    command, cwd=PROJECT, env=os.environ | (env or {}), stdout=log, stderr=subprocess.STDOUT
                )
            started.append(StartedWorker(process, log_path))
        self.workers.extend(started)
        self.wait_registered(started)
        time.sleep(settle)
        return started

    def wait_registered(self, workers: list[StartedWorker], timeout: float = 30.0) -> None:
        from taskqueue.models import WorkerProcess

        pids = [worker.pid for worker in workers]
        deadline = time.monotonic() + timeout
        while WorkerProcess.objects.filter(pid__in=pids).count() < len(pids):
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"worker processes {pids} did not register within {timeout:.0f}s")
            time.sleep(POLL_SECONDS)

    def worker_cpu_seconds(self) -> float:
        return sum(cpu_seconds(worker.pid) for worker in self.workers)

    def check_alive(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is not None:
                tail = "\n".join(worker.log_lines()[-15:])
                raise BenchError(f"worker {worker.pid} exited with {worker.process.returncode}:\n{tail}")

    def stop_workers(self) -> None:
        """SIGTERM, as a deployment would stop them; kill what has not exited after WORKER_STOP_SECONDS."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                code = worker.process.wait(timeout=WORKER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
                self.problems.append(f"worker {worker.pid} did not stop within {WORKER_STOP_SECONDS:.0f}s of SIGTERM")
                code = 0
            if code != 0:
                self.problems.append(f"worker {worker.pid} exited with {code} after SIGTERM")
            self.problems.extend(f"worker {worker.pid} logged: {line}" for line in worker.log_lines())
        self.workers.clear()


def reset_database(bench: Bench) -> None:
    """Empty the task tables, so every measurement starts alike; report worker rows left registered."""
    from django.db import connection

    from taskqueue.models import Task, WorkerProcess

    left = list(WorkerProcess.objects.values_list("name", "pid"))
    if left:
        bench.problems.append(f"{len(left)} worker process rows still registered before the measurement: {left[:3]}")
    tables = (Task._meta.db_table, WorkerProcess._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)}")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")


def status_counts() -> dict[str, int]:
    """How many tasks there are of each kind, queue and status, as "<kind> <queue> <status>"."""
    from django.db.models import Count

    from taskqueue.models import Task

    groups = Task.objects.order_by().values_list("kind", "queue_name", "status").annotate(Count("id"))
    return {f"{kind} {queue} {status}": count for kind, queue, status, count in groups}


def drain_timeout(tasks: int) -> float:
    return 60.0 + tasks / 200


def wait_drained(bench: Bench, timeout: float, on_poll: Callable[[], None] | None = None) -> float:
    """Poll every 50 ms until no task is ready or running; the monotonic time that was first seen."""
    from taskqueue.models import UNFINISHED, Task

    unfinished = Task.objects.filter(status__in=UNFINISHED)
    deadline = time.monotonic() + timeout
    while unfinished.exists():
        if on_poll:
            on_poll()
        bench.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"tasks still unfinished {timeout:.0f}s after enqueueing: {status_counts()}")
        time.sleep(POLL_SECONDS)
    return time.monotonic()


def check_outcomes(bench: Bench, tasks: int, door: FrontDoor, queue: str | None = None, retention: bool = True) -> None:
    """Every task, of the front door's kind and in its queue (or `queue`), succeeded exactly once
    (with RESULT_RETENTION=0 their rows are gone)."""
    from taskqueue.models import Status, Task

    counts = status_counts()
    expected = {f"{door.kind} {queue or door.queue} {Status.SUCCEEDED.value}": tasks} if retention else {}
    if counts != expected:
        bench.problems.append(f"tasks by kind, queue and status after the run: {counts}, expected {expected}")
    failed = Task.objects.filter(status=Status.FAILED).values_list("errors", flat=True).first()
    if failed:
        bench.problems.append(f"a failed task's last error: {failed[-1].get('exc_class')}: {failed[-1].get('message')}")
    repeated = Task.objects.filter(attempts__gt=1).count()
    if repeated:
        bench.problems.append(f"{repeated} tasks took more than one attempt")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_enqueue(bench: Bench, count: int, budget: float, front: str = QUEUE_CLASS) -> dict[str, Any]:
    """One no-op task at a time through a front door (`add_task`, `enqueue()`, `delay()`), each its own
    transaction (autocommit), for `count` tasks or `budget` seconds."""
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


def enqueue_committed(tasks: int, front: str = QUEUE_CLASS) -> tuple[float, float]:
    """Bulk-insert no-op tasks in one transaction; the monotonic and wall-clock times of its commit."""
    from django.db import transaction

    commit: list[float] = []
    with transaction.atomic():
        for start in range(0, tasks, INSERT_SLICE):
            bulk_enqueue(front, min(INSERT_SLICE, tasks - start))
        transaction.on_commit(lambda: commit.extend((time.monotonic(), time.time())))
    return commit[0], commit[1]


def measure_drain(
    bench: Bench, tasks: int, workers: int, retention: bool = True, front: str = QUEUE_CLASS
) -> dict[str, Any]:
    """Idle workers first; then bulk-insert the front door's no-op tasks and time from the commit until
    none is unfinished.

    The insert comes at a random point of the workers' idle poll cycle, which matters where nothing
    wakes them (SQLite). With the rows kept, `steady_rate` is the rate from the first task's start (or
    the commit, if stamped earlier) to the last one's finish, as the rows record them.
    """
    from django.db.models import Max, Min

    from taskqueue.models import Task

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

    Latency: from `add_task` returning (its commit done) to the task's `process` starting. Where only
    polling wakes the worker (SQLite), the pause spans its poll interval, so each task comes at a
    random point of the poll cycle rather than just after the worker's last look.
    """
    from django.db import connection

    stamps = bench.log_dir / f"stamps-{os.getpid()}.txt"
    stamps.touch()
    bench.start_workers(1, queue=STAMP_QUEUE, env={STAMP_FILE_ENV: str(stamps)})
    queue = bench_object("BenchStamp")
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
    ran = {int(task_id): float(at) for task_id, at in (line.split() for line in stamps.read_text().splitlines())}
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
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def measure_idle(bench: Bench, seconds: float) -> dict[str, Any]:
    """One worker on an empty queue: its CPU use and, on PostgreSQL, the transactions it commits.

    The transactions counted in a window without the worker (this process's own readings, and any
    background work) are subtracted. PostgreSQL counts a session's transactions when it goes idle, at
    most once a second, so the figure is approximate.
    """
    from django.db import connection

    counted = connection.vendor == "postgresql"
    baseline = 0
    if counted:
        time.sleep(IDLE_SETTLE_SECONDS)  # this process's earlier statements get counted before the window
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


MEASUREMENTS: dict[str, Callable[..., dict[str, Any]]] = {
    "enqueue": measure_enqueue,
    "bulk": measure_bulk,
    "drain": measure_drain,
    "pickup": measure_pickup,
    "memory": measure_memory,
    "idle": measure_idle,
}


def child_main(name: str, params: dict[str, Any], log_dir: Path) -> int:
    """Run one measurement; its result (or error), with the problems seen, is the last line of stdout."""
    import django

    signal.signal(signal.SIGTERM, exit_on_signal)
    django.setup()
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
    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    settings.TASKQUEUE = {**settings.TASKQUEUE, "RESULT_RETENTION": 0}  # TASK_MODULES kept: this module
    call_command("taskqueue_worker", queues=queue, threads=1)


def exit_on_signal(signum: int, frame: object) -> None:
    signal.signal(signum, signal.SIG_IGN)
    raise SystemExit(128 + signum)


# --- Orchestrator side ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    runs: int
    tasks: int  # per drain and per bulk enqueue
    single_enqueues: int
    single_budget: float
    pickup_samples: int
    pickup_budget: float
    memory_tasks: int
    warmup_tasks: int
    idle_seconds: float
    quick: bool


@dataclass(frozen=True)
class Step:
    key: str
    measurement: str
    params: dict[str, Any]
    timeout: float


@dataclass(frozen=True)
class Database:
    label: str
    url: str
    description: str

    def env(self) -> dict[str, str]:
        inherited = {key: value for key, value in os.environ.items() if key in INHERITED}
        return inherited | {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "ENV_FILE": "",
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": self.url,
            "LOG_LEVEL": "WARNING",
            "TASKQUEUE_TASK_MODULES": MODULE,
            "PYTHONUNBUFFERED": "1",
        }


@dataclass(frozen=True)
class Target:
    value: float
    at_least: bool  # the figure must be >= value (rates), else <= value (latencies)

    def cell(self, figure: float | None, unit: str) -> str:
        bound = f"{'>=' if self.at_least else '<='} {number(self.value, unit)}"
        if figure is None:
            return f"{bound}: no figure"
        met = figure >= self.value if self.at_least else figure <= self.value
        verdict = f"{bound}: {'MET' if met else 'MISSED'}"
        return verdict if unit == RATIO else f"{verdict} ({figure / self.value:.2f}x)"


WITHIN_20_PERCENT = Target(0.8, True)  # of the queue-class figure of the same run


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    field: str
    unit: str
    targets: dict[str, Target] = field(default_factory=dict)
    summary: bool = True  # shown in the closing markdown table
    relative_to: str | None = None  # a step: the figure divided by that step's, same field, run and database


@dataclass
class Results:
    # (database, step) -> run -> result
    figures: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, database: str, step: str, run: str, result: dict[str, Any]) -> None:
        where = f"{database} {step} ({run})"
        self.problems.extend(f"{where}: {problem}" for problem in result.pop("problems", []))
        if "error" in result:
            self.problems.append(f"{where}: ERROR {result['error']}")
        else:
            self.figures.setdefault((database, step), {})[run] = result

    def values(self, database: str, row: Row) -> list[float]:
        """The row's figure of each run, in run order (only runs where every figure it needs exists)."""
        runs = self.figures.get((database, row.key), {})
        if row.relative_to is None:
            return [result[row.field] for result in runs.values() if row.field in result]
        bases = self.figures.get((database, row.relative_to), {})
        return [
            result[row.field] / bases[run][row.field]
            for run, result in runs.items()
            if row.field in result and bases.get(run, {}).get(row.field)
        ]

    def median(self, database: str, row: Row) -> float | None:
        values = self.values(database, row)
        return statistics.median(values) if values else None


def make_plan(args: argparse.Namespace) -> Plan:
    quick = args.quick
    return Plan(
        runs=args.runs or (1 if quick else 3),
        tasks=args.tasks or (5_000 if quick else 20_000),
        single_enqueues=500 if quick else 3_000,
        single_budget=5.0,
        pickup_samples=50 if quick else 200,
        pickup_budget=8.0 if quick else 25.0,
        memory_tasks=20_000 if quick else 100_000,
        warmup_tasks=2_000,
        idle_seconds=5.0 if quick else 10.0,
        quick=quick,
    )


def run_steps(plan: Plan, run: int) -> list[Step]:
    """The measurements of run number `run` (from 0). The one-worker drains of the three front doors
    run back to back, in an order rotated from run to run, so that the ratios between them compare
    like with like and no front door always comes first."""
    drain = drain_timeout(plan.tasks) + 90
    single = {"count": plan.single_enqueues, "budget": plan.single_budget}
    one_worker = [
        Step("drain-1", "drain", {"tasks": plan.tasks, "workers": 1}, drain),
        *(
            Step(f"drain-1-{door.kind}", "drain", {"tasks": plan.tasks, "workers": 1, "front": door.kind}, drain)
            for door in OTHER_FRONT_DOORS
        ),
    ]
    turn = run % len(one_worker)
    return [
        Step("enqueue", "enqueue", single, 120),
        *(Step(f"enqueue-{door.kind}", "enqueue", single | {"front": door.kind}, 120) for door in OTHER_FRONT_DOORS),
        Step("bulk", "bulk", {"tasks": plan.tasks}, 120),
        *one_worker[turn:],
        *one_worker[:turn],
        Step("drain-2", "drain", {"tasks": plan.tasks, "workers": 2}, drain),
        Step("drain-1-r0", "drain", {"tasks": plan.tasks, "workers": 1, "retention": False}, drain),
        Step(
            "pickup", "pickup", {"samples": plan.pickup_samples, "budget": plan.pickup_budget}, plan.pickup_budget + 90
        ),
    ]


def schedule(plan: Plan) -> list[tuple[str, Step]]:
    """What runs, in order: idle cost first, on fresh databases, then the runs, then the memory run.

    Background work (autovacuum after heavy writes) would count as the idle worker's transactions.
    """
    memory = {"tasks": plan.memory_tasks, "warmup": plan.warmup_tasks}
    idle = Step("idle", "idle", {"seconds": plan.idle_seconds}, 2 * plan.idle_seconds + 90)
    runs = [(f"run {run + 1}/{plan.runs}", step) for run in range(plan.runs) for step in run_steps(plan, run)]
    memory_step = Step("memory", "memory", memory, drain_timeout(plan.memory_tasks + plan.warmup_tasks) + 120)
    return [("once", idle), *runs, ("once", memory_step)]


def run_rows(plan: Plan) -> list[Row]:
    n = f"{plan.tasks:,}"
    return [
        Row(
            "Enqueue, add_task one per transaction (tasks/s)", "enqueue", "rate", "/s", {POSTGRES: Target(3_000, True)}
        ),
        *(
            Row(
                f"  {door.label}: {door.single_call} one per transaction (tasks/s)",
                f"enqueue-{door.kind}",
                "rate",
                "/s",
            )
            for door in OTHER_FRONT_DOORS
        ),
        Row(f"Enqueue, bulk add_tasks of {n} (tasks/s)", "bulk", "rate", "/s", {POSTGRES: Target(50_000, True)}),
        Row(
            f"Drain {n}, 1 worker process (tasks/s)",
            "drain-1",
            "rate",
            "/s",
            {SQLITE: Target(20_000, True), POSTGRES: Target(10_000, True)},
        ),
        *(row for door in OTHER_FRONT_DOORS for row in front_door_drain_rows(door, n)),
        Row(f"Drain {n}, 2 worker processes (tasks/s)", "drain-2", "rate", "/s"),
        Row(f"Drain {n}, 1 worker, RESULT_RETENTION=0 (tasks/s)", "drain-1-r0", "rate", "/s"),
        Row("  1 worker: first task started after commit (ms)", "drain-1", "first_pickup_ms", "ms", summary=False),
        Row("  1 worker: first start to last finish (tasks/s)", "drain-1", "steady_rate", "/s", summary=False),
        Row("  2 workers: first start to last finish (tasks/s)", "drain-2", "steady_rate", "/s", summary=False),
        Row("  1 worker: its CPU while draining (% of a core)", "drain-1", "worker_cpu_percent", "%", summary=False),
        Row("  1 worker: its CPU per task (us)", "drain-1", "worker_cpu_us_per_task", "us", summary=False),
        Row("  2 workers: their CPU while draining (% of a core)", "drain-2", "worker_cpu_percent", "%", summary=False),
        Row("Pickup latency of an idle worker, p50 (ms)", "pickup", "p50_ms", "ms", {POSTGRES: Target(5, False)}),
        Row("Pickup latency of an idle worker, p99 (ms)", "pickup", "p99_ms", "ms", {POSTGRES: Target(20, False)}),
        Row("  pickup samples per run", "pickup", "samples", "n", summary=False),
    ]


def front_door_drain_rows(door: FrontDoor, n: str) -> list[Row]:
    """A front door's one-worker drain, and its ratios to the queue classes' drain of the same run."""
    key = f"drain-1-{door.kind}"
    within = {SQLITE: WITHIN_20_PERCENT, POSTGRES: WITHIN_20_PERCENT}
    return [
        Row(f"Drain {n}, 1 worker process, {door.label} (tasks/s)", key, "rate", "/s"),
        Row(f"  {door.label} / queue classes, same run (ratio)", key, "rate", RATIO, within, relative_to="drain-1"),
        Row(
            f"  {door.label} / queue classes, first start to last finish",
            key,
            "steady_rate",
            RATIO,
            summary=False,
            relative_to="drain-1",
        ),
        Row(f"  {door.label}: the worker's CPU per task (us)", key, "worker_cpu_us_per_task", "us", summary=False),
    ]


def once_rows(plan: Plan) -> list[Row]:
    n = f"{plan.memory_tasks:,}"
    return [
        Row(f"Drain {n} (memory run), 1 worker (tasks/s)", "memory", "rate", "/s"),
        Row("  its CPU while draining (% of a core)", "memory", "worker_cpu_percent", "%", summary=False),
        Row("Worker RSS idle, just started (MiB)", "memory", "idle_mib", "MiB", summary=False),
        Row(f"Worker RSS after {plan.warmup_tasks:,}-task warm-up (MiB)", "memory", "warm_mib", "MiB"),
        Row(f"Worker RSS peak during {n} tasks (MiB)", "memory", "peak_mib", "MiB", summary=False),
        Row(f"Worker RSS after {n} tasks (MiB)", "memory", "after_mib", "MiB"),
        Row("Worker RSS growth, warm-up to end (MiB)", "memory", "growth_mib", "MiB"),
        Row("Idle worker: transactions/s (PostgreSQL's pg_stat_database)", "idle", "xact_per_second", "/s"),
        Row("Idle worker: CPU (% of one core)", "idle", "cpu_percent", "%"),
    ]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_child(database: Database, step: Step, log_dir: Path) -> dict[str, Any]:
    """Run one measurement in a child process (its own session); always stop it and what it started."""
    command = [sys.executable, "-m", MODULE, "--child", step.measurement, "--params", json.dumps(step.params)]
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


def stop_group(process: subprocess.Popen[str]) -> None:
    """Stop a child started in a session of its own, then anything left in its process group.

    The child gets SIGTERM and stops its workers itself; it is reaped only after its group has been
    swept, so the group id (its PID) cannot have been reused by then. A child that failed on its own
    is already reaped: its group then exists only while processes it left behind remain in it (Linux
    does not reuse a PID still in use as a group id).
    """
    if process.returncode is not None:
        if process.returncode != 0:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_SECONDS
    while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def migrate(database: Database) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=PROJECT,
        env=database.env(),
        capture_output=True,
        text=True,
        timeout=MIGRATE_SECONDS,
    )
    if result.returncode != 0:
        raise BenchError(f"migrating {database.label} failed:\n{result.stdout}{result.stderr}")


def filesystem(path: Path) -> str:
    """The type of the filesystem `path` is on, from /proc/mounts."""
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        mount_point, fs_type = line.split()[1:3]
        if path.is_relative_to(mount_point) and len(mount_point) > len(best):
            best, kind = mount_point, fs_type
    return kind


def postgres_version() -> str:
    result = subprocess.run(
        [str(DEFAULT_BIN_DIR / "postgres"), "--version"], capture_output=True, text=True, timeout=30
    )
    return result.stdout.strip().removeprefix("postgres (PostgreSQL) ") or "15"


def open_databases(work_dir: Path, stack: contextlib.ExitStack) -> tuple[list[Database], list[str]]:
    """A fresh SQLite file and, where the binaries exist, a throwaway PostgreSQL cluster (stopped on exit)."""
    sqlite_file = work_dir / "bench.sqlite3"
    databases = [
        Database(
            SQLITE,
            f"sqlite:///{sqlite_file}",
            f"SQLite {sqlite3.sqlite_version}: the project's settings (WAL, synchronous=NORMAL, "
            f"BEGIN IMMEDIATE), file on {filesystem(work_dir)}",
        )
    ]
    notes: list[str] = []
    if not binaries_available():
        notes.append(f"No PostgreSQL binaries in {DEFAULT_BIN_DIR}: PostgreSQL was not measured.")
        return databases, notes
    try:
        cluster = Cluster.create(fast=False)
        stack.callback(cluster.destroy)
        cluster.start()
        cluster.create_database()
    except ClusterError as error:
        notes.append(f"The throwaway PostgreSQL cluster did not start ({error}): PostgreSQL was not measured.")
        return databases, notes
    databases.append(
        Database(
            POSTGRES,
            cluster.url,
            f"PostgreSQL {postgres_version()}: throwaway cluster on 127.0.0.1, default postgresql.conf, "
            f"durability ON (fsync, synchronous_commit, full_page_writes), data on {filesystem(cluster.data_dir)}",
        )
    )
    return databases, notes


def measure_all(plan: Plan, databases: list[Database], log_dir: Path) -> Results:
    results = Results()
    for label, step in schedule(plan):
        for database in databases:
            started = time.monotonic()
            result = run_child(database, step, log_dir)
            shown = ", ".join(f"{key}={value:,.1f}" for key, value in result.items() if isinstance(value, float))
            outcome = shown or (result.get("error") or "no figures").splitlines()[0]
            progress(f"[{label}] {database.label:<10} {step.key:<14} {outcome}  ({time.monotonic() - started:.0f}s)")
            results.add(database.label, step.key, label, result)
    return results


def number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == RATIO:
        return f"{value:.2f}"
    return f"{value:,.0f}" if unit == "n" or abs(value) >= 100 else f"{value:.1f}"


def table_cells(row: Row, results: Results) -> list[str]:
    """Label, SQLite, PostgreSQL, PG/SQLite, SQLite target, PostgreSQL target."""
    sqlite, pg = (results.median(database, row) for database in (SQLITE, POSTGRES))
    comparable = sqlite is not None and pg is not None and sqlite > 0 and pg > 0 and row.unit not in ("n", RATIO)
    ratio = f"{pg / sqlite:.3g}x" if comparable else "-"
    targets = [
        row.targets[database].cell(results.median(database, row), row.unit) if database in row.targets else ""
        for database in (SQLITE, POSTGRES)
    ]
    return [row.label, number(sqlite, row.unit), number(pg, row.unit), ratio, *targets]


def render_text(headers: list[str], cells: list[list[str]]) -> str:
    widths = [max(len(line[column]) for line in [headers, *cells]) for column in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(
            value.ljust(width) if column in (0, 4, 5) else value.rjust(width)
            for column, (value, width) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *map(line, cells)])


def render_markdown(headers: list[str], cells: list[list[str]]) -> str:
    align = ["---" if column in (0, 4, 5) else "---:" for column in range(len(headers))]
    return "\n".join(f"| {' | '.join(value.strip() for value in values)} |" for values in [headers, align, *cells])


def per_run_lines(rows: list[Row], results: Results, databases: list[Database]) -> Iterator[str]:
    for row in rows:
        parts = [
            f"{database.label} {' / '.join(number(v, row.unit) for v in results.values(database.label, row))}"
            for database in databases
        ]
        yield f"  {row.label.strip()}: {'; '.join(parts)}"


NOTES = """\
  Medians of {runs} run(s). Workers: manage.py taskqueue_worker --threads 1, LOG_LEVEL=WARNING, default
  TASKQUEUE settings (1 s idle poll, RESULT_RETENTION 86400: successes kept as rows). Every measurement
  starts on emptied tables. Drains: workers idle first, then one bulk insert at a random point of their
  poll cycle; timed from its commit to the first 50 ms poll finding no task ready or running, so the
  first pickup is included (see "first task started"). RESULT_RETENTION=0: the same command run through
  call_command with settings.TASKQUEUE set in-process. Pickup latency: add_task() returned (committed)
  -> process() started. Ratios: PostgreSQL/SQLite, and figure/target. A negative "first task started"
  means the worker stamped its claim before waiting for SQLite's write lock, held by the insert.
  Front doors: drains not labelled otherwise are of queue-class (BaseQueue) no-op tasks. The django.tasks
  and Celery-style drains are measured the same way, back to back with the queue classes' drain in each
  run (in an order rotated from run to run), with the same worker command. Their bulk inserts: the
  backend's enqueue_all(); for the Celery-style API (no bulk call) the engine's enqueue_many(), storing
  what delay() stores. Their ratios (figure / queue-class figure, same run and database; medians of the
  per-run ratios) must be >= 0.80: within 20% of the queue classes. On SQLite, where only polling wakes
  a worker, each drain's first pickup (0-1 s) weighs on its figure and so on the ratio; the "first start
  to last finish" ratio leaves it out. Single enqueues through the front doors are informational. CPU
  per task: the worker process's user+system time over the drain / tasks.
"""


def report(plan: Plan, databases: list[Database], notes: list[str], results: Results, seconds: float) -> None:
    headers = ["Measurement", SQLITE, POSTGRES, "PG/SQLite", f"{SQLITE} target", f"{POSTGRES} target"]
    main_rows, single_rows = run_rows(plan), once_rows(plan)
    print("\nTask queue benchmark" + (" (--quick)" if plan.quick else ""))
    print(f"  {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    for database in databases:
        print(f"  {database.description}")
    for note in notes:
        print(f"  NOTE: {note}")
    print(NOTES.format(runs=plan.runs))
    print(render_text(headers, [table_cells(row, results) for row in main_rows]))
    print(f"\nSingle runs ({plan.memory_tasks:,}-task memory run, {plan.idle_seconds:.0f} s idle window):\n")
    print(render_text(headers[:4], [table_cells(row, results)[:4] for row in single_rows]))
    print("\nPer-run values:")
    print("\n".join(per_run_lines(main_rows, results, databases)))
    print("\nProblems observed (worker logs at WARNING and above, exit codes, task outcomes):")
    shown = results.problems[:MAX_PROBLEMS_SHOWN]
    print("\n".join(f"  - {problem}" for problem in shown) or "  none")
    if len(results.problems) > len(shown):
        print(f"  ... and {len(results.problems) - len(shown)} more")
    minutes, rest = divmod(round(seconds), 60)
    print(f"\nTotal time: {minutes} min {rest} s\n")
    print(f"Summary (medians of {plan.runs} run(s), {os.cpu_count()} CPUs):\n")
    summary = [table_cells(row, results) for row in [*main_rows, *single_rows] if row.summary]
    print(render_markdown(headers, summary))


def orchestrate(plan: Plan) -> int:
    started = time.monotonic()
    signal.signal(signal.SIGTERM, exit_on_signal)
    with tempfile.TemporaryDirectory(prefix="taskqueue-bench-") as work, contextlib.ExitStack() as stack:
        work_dir = Path(work)
        progress(f"Setting up databases in {work_dir} ...")
        databases, notes = open_databases(work_dir, stack)
        for database in databases:
            migrate(database)
        results = measure_all(plan, databases, work_dir)
    report(plan, databases, notes, results, time.monotonic() - started)
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="runs per figure; medians are shown (default 3, --quick 1)")
    parser.add_argument("--tasks", type=int, help="tasks per drain and bulk enqueue (default 20,000)")
    parser.add_argument("--quick", action="store_true", help="fewer and smaller runs, for a first look")
    parser.add_argument("--child", choices=sorted(MEASUREMENTS), help=argparse.SUPPRESS)
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


if __name__ == "__main__":
    sys.exit(main())
