"""The chaos suite: real worker processes under faults, judged from what the tasks themselves
recorded.

    python -m scripts.chaos [--quick] [--database sqlite|postgresql|both] [--processes N]
                            [--threads N] [--durability-bound SECONDS] [--seed N] [--keep]

For each database (SQLite, then PostgreSQL: a throwaway cluster from /usr/lib/postgresql/15/bin, or
the cluster `scripts.run_tests` started, found through its TEST_PG_* variables, in a database of its
own) it starts a pool of `manage.py taskqueue_worker` processes (4 x 2 threads by default), keeps a
backlog of tasks of the three front doors (`tests.chaos.tasks`: quick ones, and some of 50-500 ms),
and in turn:

1. measures the throughput undisturbed, and samples `taskqueue_health`;
2. inserts poison rows straight into the task table (a payload Python's json refuses: an integer of
   5000 digits, arrays nested deeper than Python decodes where the database takes them; an `errors`
   column that is not a list) and poison schedules (a task module that does not exist, the
   impossible date `0 0 31 2 *`), beside a good schedule that ticks every 2 s;
3. kill storm: SIGKILLs a random worker process every 1-3 s and restarts it, as a supervisor would;
   meanwhile SIGTERMs the parent of a `taskqueue_worker --processes 2` whose children run long
   tasks;
4. PostgreSQL: `pg_terminate_backend` of every worker backend, twice, then `pg_ctl restart`, twice;
5. SIGSTOPs the worker that runs a long task for longer than WORKER_DEAD_AFTER, then SIGCONTs it;
6. drains, samples health again, stops every worker with SIGTERM and judges.

Every task run appends START and END lines (STOP when it stopped on request) to a records file with
one os.write on an O_APPEND descriptor, so they survive a SIGKILL. The invariants are judged from
those records, this script's own log of kills, restarts and exit codes, and the worker logs; the
queue's tables only tell how each task ended. A completed run may be repeated only if its END came
within the outcome-durability bound (--durability-bound) before a SIGKILL of its process; such
repeats are counted and shown. The bound is 0.1 s on PostgreSQL; on SQLite 0.5 s, since there an
outcome waits for the database's one write lock, which every process's writes take in turn.

It prints a table of invariants (PASS/FAIL) and figures per database, and exits 1 on any FAIL. Every
wait has a timeout and each database a deadline (quick: about 60-90 s of work, full: about 4-5 min),
past which the run stops its faults, judges what it has, and fails; a watchdog kills what is left.

Each database runs in a child process of this one (`--one`), with Django configured for it. Every
worker is a plain `manage.py taskqueue_worker`, given a short HEARTBEAT_INTERVAL and
WORKER_DEAD_AFTER through TASKQUEUE_HEARTBEAT_INTERVAL and TASKQUEUE_WORKER_DEAD_AFTER (so that a
SIGSTOP of seconds outlasts WORKER_DEAD_AFTER). Where config/settings.py reads no such variables (an
older tree), the pool's workers run through `--run-worker`, which puts the settings into
`config.settings.TASKQUEUE` and then runs `manage.py taskqueue_worker` unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
if str(PROJECT) not in sys.path:  # run as a file (`python scripts/chaos.py`) rather than with -m
    sys.path.insert(0, str(PROJECT))

from scripts.pgcluster import DEFAULT_BIN_DIR, Cluster, binaries_available  # noqa: E402

MODULE = "scripts.chaos"
TASKS = "tests.chaos.tasks"
TICK_PATH = f"{TASKS}.ChaosTickQueue"
RECORD_ENV = "CHAOS_RECORD_FILE"
# JSON: the TASKQUEUE settings --run-worker applies (no TASKQUEUE_* hook)
TASKQUEUE_ENV = "CHAOS_TASKQUEUE"
# What child processes keep of this process's environment (as the test suite's worker fixture does).
INHERITED = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "VIRTUAL_ENV",
    "PYENV_VERSION",
    "PG_BIN_DIR",
)
PG_ENV = ("TEST_PG_BIN_DIR", "TEST_PG_DATA_DIR", "TEST_PG_PORT")
SECRET_KEY = "chaos-only-secret-key-Qm4v8Zr1Kx7Tn2Wp5Ls9Hd3Jc6Fb0Yg8Ue1Ra"
SQLITE, POSTGRES = "sqlite", "postgresql"
LABELS = {SQLITE: "SQLite", POSTGRES: "PostgreSQL"}
# How long before a SIGKILL a completed run's outcome may still be unwritten (see the module
# docstring).
DURABILITY_BOUNDS = {POSTGRES: 0.1, SQLITE: 0.5}
QUEUE, LONG_QUEUE = "chaos", "chaos-long"
DOORS = ("queue", "django", "celery")
TICK_SCHEDULE = "* * * * * */2"  # every 2 seconds (6 fields: seconds last)
PROBE_PRIORITY, TICK_PRIORITY, STOP_TASK_PRIORITY = 100, 90, 80
# Probes outlast a batch's quick-task horizon, so tasks claimed behind one are given back and every
# thread gets one: a thread that starts nothing while probes wait is not serving.
PROBE_SECONDS = 1.0
# Engine settings of every worker (TASKQUEUE_* variables): a SIGSTOP of seconds outlasts them.
HEARTBEAT_INTERVAL, WORKER_DEAD_AFTER = 1.0, 6.0
ENGINE_ENV = {
    "TASKQUEUE_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
    "TASKQUEUE_WORKER_DEAD_AFTER": str(WORKER_DEAD_AFTER),
    "TASKQUEUE_TASK_MODULES": TASKS,
}
SHUTDOWN_TIMEOUT = 25.0  # the engine's default, which every worker keeps
RESTART_DELAY = 0.3  # after a SIGKILL, before the replacement starts (a supervisor's delay)
START_FAILURES_TO_ABORT = 4  # workers in a row that exit on their own before running anything
DEPTHS = (100_000, 30_000, 12_000)  # nesting tried for the deep poison payload, deepest first
RESERVED_SECONDS = 50  # of a database's budget, for stopping the workers, judging and cleaning up
LOG_HEADER = re.compile(
    r"^\d{4}-\d\d-\d\d [\d:,]{12} (?P<level>[A-Z]+) (?P<name>\S+) (?P<pid>\d+) (?P<msg>.*)$"
)
THREAD_DEATH = re.compile(r"\bdied\b|exits with status 1|Exception in thread")
REGISTERED = re.compile(r"worker process started id=(\d+)")


@dataclass(frozen=True)
class Profile:
    name: str
    baseline: float  # seconds of undisturbed work measured before the storm
    storm: float  # seconds of the kill storm
    backlog: int  # load tasks kept waiting
    max_tasks: int  # load tasks enqueued at most
    stop_pause: float  # seconds a worker stays SIGSTOPped (> WORKER_DEAD_AFTER)
    long_seconds: float  # the long tasks (SIGSTOP, SIGTERM)
    pg_gap: float  # seconds between the database faults
    drain_timeout: float
    budget: float  # one database's deadline, seconds
    slow_share: float = 0.05
    slow_range: tuple[float, float] = (0.05, 0.5)
    kill_every: tuple[float, float] = (1.0, 3.0)
    long_tasks: int = 6


QUICK = Profile(
    "quick",
    baseline=5,
    storm=20,
    backlog=400,
    max_tasks=20_000,
    stop_pause=WORKER_DEAD_AFTER + 5,
    long_seconds=2.5,
    pg_gap=2.5,
    drain_timeout=45,
    budget=200,
)
FULL = Profile(
    "full",
    baseline=15,
    storm=100,
    backlog=1500,
    max_tasks=100_000,
    stop_pause=WORKER_DEAD_AFTER + 14,
    long_seconds=5,
    pg_gap=6,
    drain_timeout=90,
    budget=330,
)


class ChaosError(Exception):
    """A scenario could not go on (a wait timed out, workers fail at start, out of time)."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached the run: clean up and stop."""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    return f"p50 {percentile(values, 0.5):.2f}s, max {max(values):.2f}s (n={len(values)})"


def examples(items: list[str], count: int = 4) -> str:
    return f"; e.g. {'; '.join(items[:count])}" if items else ""


# --- Records --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # START, END, STOP, TICK
    key: str
    pid: int
    thread: str
    attempt: str
    mono: float
    wall: float


class Records:
    """The tasks' record lines, read incrementally from the file they append to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.events: list[Event] = []
        self.ended: set[str] = set()
        self.first_start: dict[int, float] = {}  # pid -> its first START
        self.bad_lines = 0
        self.lock = threading.Lock()

    def refresh(self) -> None:
        with self.lock:
            with open(self.path, "rb") as file:
                file.seek(self.offset)
                data = file.read()
            self.offset += len(data)
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()
            for line in lines:
                p = line.decode(errors="replace").split()
                try:
                    event = Event(p[0], p[1], int(p[2]), p[3], p[4], float(p[5]), float(p[6]))
                except (IndexError, ValueError):
                    self.bad_lines += 1
                    continue
                self.events.append(event)
                if event.kind == "END":
                    self.ended.add(event.key)
                elif event.kind in ("START", "TICK"):
                    self.first_start.setdefault(event.pid, event.mono)

    def since(self, index: int) -> list[Event]:
        with self.lock:
            return self.events[index:]

    def reader(self, back: int = 0) -> Callable[[], list[Event]]:
        """A function returning the events recorded since its last call (the first: the last `back`
        too)."""
        read = [max(0, len(self.events) - back)]

        def new() -> list[Event]:
            events = self.since(read[0])
            read[0] += len(events)
            return events

        return new


# --- What the run keeps --------------------------------------------------------------------------


@dataclass(eq=False)
class Worker:
    role: str  # "pool" or "supervisor"
    slot: int
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float
    killed_at: float | None = None  # when the storm SIGKILLed it
    handled: bool = False  # its exit was seen and, in the pool, its slot restarted

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Entry:
    door: str
    task_id: int
    group: str  # load, probe, long, sigstop, poison, tick
    expect: str  # succeeded or failed
    label: str = ""


@dataclass
class TaskRun:
    """One run of a task, from the records: START and the END or STOP after it, in the same
    thread."""

    key: str
    pid: int
    thread: str
    attempt: str
    start: float
    end: float | None = None
    how: str = ""  # END, STOP, KILLED (no end, its process SIGKILLed after the start), LOST


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


# --- One database --------------------------------------------------------------------------------


class Run:
    """One database's chaos run, in this (child) process, with Django configured for that
    database."""

    def __init__(
        self,
        args: argparse.Namespace,
        workdir: Path,
        url: str,
        cluster: Cluster | None,
        env_hook: bool,
    ) -> None:
        self.args = args
        self.env_hook = env_hook  # config/settings.py reads the TASKQUEUE_* variables
        self.profile = QUICK if args.quick else FULL
        self.database = args.one
        self.workdir = workdir
        self.url = url
        self.cluster = cluster  # the PostgreSQL cluster this run may restart
        self.rng = random.Random(args.seed)
        self.t0 = time.monotonic()
        self.deadline = self.t0 + self.profile.budget - RESERVED_SECONDS
        self.records_path = workdir / "records.txt"
        self.records_path.touch()
        self.records = Records(self.records_path)
        (workdir / "logs").mkdir(exist_ok=True)
        # the feeder, the scenario threads and the main thread share what follows
        self.lock = threading.RLock()
        self.workers: list[Worker] = []
        self.pool: list[Worker] = []  # each slot's current worker
        self.kills: dict[int, float] = {}  # pid -> monotonic time of its SIGKILL
        self.replacements: list[
            tuple[float, Worker]
        ] = []  # (the kill, the worker started in its place)
        self.start_failures = 0
        self.entries: dict[str, Entry] = {}
        self.load_keys: list[str] = []
        self.seq = 0
        self.feeding = threading.Event()
        self.feeder_stop = threading.Event()
        self.problems: list[str] = []  # scenarios that could not run: each fails the run
        self.skipped: list[str] = []  # steps not run: the deadline had passed
        self.notes: list[str] = []
        self.phases: dict[str, tuple[float, float]] = {}
        self.health: list[dict[str, Any]] = []
        self.scenario: dict[str, Any] = {}

    # -- processes --

    def env(self, shim: bool = False) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key in INHERITED} | ENGINE_ENV
        env |= {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "ENV_FILE": "",
            "SECRET_KEY": SECRET_KEY,
            "DATABASE_URL": self.url,
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            RECORD_ENV: str(self.records_path),
        }
        if shim:
            settings = {
                "HEARTBEAT_INTERVAL": HEARTBEAT_INTERVAL,
                "WORKER_DEAD_AFTER": WORKER_DEAD_AFTER,
            }
            env[TASKQUEUE_ENV] = json.dumps(settings)
        return env

    def start_worker(self, role: str, slot: int, args: list[str], shim: bool = False) -> Worker:
        with self.lock:
            log_path = self.workdir / "logs" / f"{role}-{slot}-{len(self.workers)}.log"
            if shim:
                command = [sys.executable, "-m", MODULE, "--run-worker", *args]
            else:
                command = [sys.executable, "manage.py", "taskqueue_worker", *args]
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    command,
                    cwd=PROJECT,
                    env=self.env(shim),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # its own process group, which cleaning up can kill whole
                    start_new_session=True,
                )
            worker = Worker(role, slot, process, log_path, time.monotonic())
            self.workers.append(worker)
            self.save_state()
            return worker

    def start_pool_worker(self, slot: int) -> Worker:
        args = [
            "-Q",
            QUEUE,
            "--threads",
            str(self.args.threads),
            "-n",
            f"chaos-{slot}",
            "--interval",
            "0.5",
        ]
        return self.start_worker("pool", slot, args, shim=not self.env_hook)

    def save_state(self) -> None:
        """The process groups started, for the parent to end should this process die."""
        state = {"pgids": [worker.pid for worker in self.workers]}
        temporary = self.workdir / "state.tmp"
        temporary.write_text(json.dumps(state))
        temporary.replace(self.workdir / "state.json")

    def supervise(self) -> None:
        """Restart pool workers that exited on their own (the storm restarts those it kills), as a
        supervisor would; give up when workers keep failing at start."""
        with self.lock:
            for slot, worker in enumerate(self.pool):
                if worker.alive() or worker.handled or worker.killed_at is not None:
                    continue
                worker.handled = True
                code = worker.process.returncode
                tail = worker.log_path.read_text(errors="replace").strip().splitlines()[-1:] or [
                    "(no output)"
                ]
                print(
                    f"  worker {worker.pid} exited on its own with {code}: {tail[0][:160]}",
                    flush=True,
                )
                if worker.pid not in self.records.first_start:
                    self.start_failures += 1
                    if self.start_failures >= START_FAILURES_TO_ABORT:
                        raise ChaosError(
                            f"worker processes exit at start ({code}): {tail[0][:200]}"
                        )
                time.sleep(1.0)
                self.pool[slot] = self.start_pool_worker(slot)

    def kill_everything(self) -> None:
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.pid, signal.SIGCONT)
                os.killpg(worker.pid, signal.SIGKILL)
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.process.wait(timeout=5)

    # -- the database --

    def db(self, action: Callable[[], Any], what: str, timeout: float = 90) -> Any:
        """Run `action`, retrying through a database outage (the PostgreSQL faults, SQLite's
        lock)."""
        from django.db import DatabaseError, connections

        deadline = time.monotonic() + timeout
        while True:
            try:
                return action()
            except DatabaseError as error:
                for connection in connections.all():
                    with contextlib.suppress(Exception):
                        connection.close()
                if time.monotonic() > deadline:
                    raise ChaosError(
                        f"{what}: the database stayed unusable for {timeout:.0f}s: {error}"
                    ) from error
                time.sleep(0.3)

    def next_key(self, prefix: str) -> str:
        with self.lock:
            self.seq += 1
            return f"{prefix}{self.seq}"

    def enqueue(
        self,
        items: list[tuple[str, str, dict[str, Any]]],
        group: str,
        priority: int | None = None,
        queue: str = QUEUE,
    ) -> list[str]:
        """Enqueue (door, key, kwargs) items through their front doors in one transaction; note
        them."""
        from django.db import transaction

        from tests.chaos import tasks

        tries = [0]

        def action() -> list[tuple[str, str, int]]:
            # A commit whose answer the connection lost may have stored the tasks: a retry gives its
            # tasks other keys, so that no key names two tasks (those stored anyway are not judged).
            suffix = f"~{tries[0]}" if tries[0] else ""
            tries[0] += 1
            by_door: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
            for door, key, kwargs in items:
                by_door[door].append((key + suffix, kwargs))
            done: list[tuple[str, str, int]] = []
            with transaction.atomic():
                if calls := by_door["queue"]:
                    cls = tasks.ChaosLongQueue if queue == LONG_QUEUE else tasks.ChaosQueue
                    infos = cls.add_tasks(
                        [{"key": key, **kwargs} for key, kwargs in calls], priority=priority
                    )
                    done += [
                        ("queue", key, info.id) for (key, _), info in zip(calls, infos, strict=True)
                    ]
                if calls := by_door["django"]:
                    options = {"queue_name": queue} | (
                        {"priority": priority} if priority is not None else {}
                    )
                    task = tasks.chaos_django.using(**options)
                    results = task.get_backend().enqueue_all(
                        [(task, (), {"key": k, **kw}) for k, kw in calls]
                    )
                    done += [
                        ("django", key, int(result.id))
                        for (key, _), result in zip(calls, results, strict=True)
                    ]
                for key, kwargs in by_door["celery"]:
                    result = tasks.chaos_celery.apply_async(
                        kwargs={"key": key, **kwargs}, queue=queue, priority=priority
                    )
                    done.append(("celery", key, int(result.id)))
            return done

        done = self.db(action, f"enqueue {group}")
        with self.lock:
            for door, key, task_id in done:
                self.entries[key] = Entry(door, task_id, group, "succeeded")
                if group == "load":
                    self.load_keys.append(key)
        return [key for _, key, _ in done]

    # -- the load --

    def load_items(self, count: int) -> list[tuple[str, str, dict[str, Any]]]:
        items = []
        for _ in range(count):
            door = self.rng.choice(DOORS)
            slow = self.rng.random() < self.profile.slow_share
            kwargs = (
                {"seconds": round(self.rng.uniform(*self.profile.slow_range), 3)} if slow else {}
            )
            items.append((door, self.next_key(door[0]), kwargs))
        return items

    def backlog(self) -> int:
        self.records.refresh()
        with self.lock:
            loads = list(self.load_keys)
        with self.records.lock:
            return len(loads) - len(self.records.ended.intersection(loads))

    def feeder(self) -> None:
        """Keep about `backlog` load tasks waiting while feeding is on."""
        from django.db import connections

        p = self.profile
        try:
            while not self.feeder_stop.is_set():
                room = p.max_tasks - len(self.load_keys)
                if self.feeding.is_set() and room > 0:
                    want = p.backlog - self.backlog()
                    if want > p.backlog // 4:
                        self.enqueue(self.load_items(min(want, 400, room)), "load")
                        continue
                self.feeder_stop.wait(0.2)
        except Exception as error:
            self.problems.append(f"the feeder stopped: {type(error).__name__}: {error}")
            traceback.print_exc()
        finally:
            connections.close_all()

    # -- waiting --

    def wait_for(
        self, condition: Callable[[], bool], timeout: float, what: str, fail: bool = True
    ) -> bool:
        """Poll the records until `condition()`; supervise the pool meanwhile. On timeout: raise, or
        False."""
        deadline = time.monotonic() + timeout
        while True:
            self.records.refresh()
            if condition():
                return True
            if time.monotonic() > self.deadline:
                raise ChaosError(f"out of time waiting until {what}")
            if time.monotonic() > deadline:
                if fail:
                    raise ChaosError(f"timed out after {timeout:.0f}s waiting until {what}")
                return False
            self.supervise()
            time.sleep(0.1)

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.supervise()
            time.sleep(min(left, 0.2))

    def probe(self) -> None:
        """High-priority tasks, so that every thread of every worker has something to start."""
        count = 2 * len(self.pool) * self.args.threads
        items = [
            ("queue", self.next_key("probe-"), {"seconds": PROBE_SECONDS}) for _ in range(count)
        ]
        self.enqueue(items, "probe", priority=PROBE_PRIORITY)

    def serving(self, since: float, timeout: float) -> tuple[bool, str]:
        """Whether every thread of every live pool worker starts a task after `since` (within
        `timeout`)."""
        threads = self.args.threads
        seen: dict[int, set[str]] = defaultdict(set)
        missing: dict[int, int] = {}
        new = self.records.reader(back=5000)

        def check() -> bool:
            for event in new():
                if event.kind in ("START", "TICK") and event.mono >= since:
                    seen[event.pid].add(event.thread)
            missing.clear()
            for worker in self.pool:
                if worker.alive() and len(seen[worker.pid]) < threads:
                    missing[worker.pid] = threads - len(seen[worker.pid])
            return not missing

        ok = self.wait_for(check, timeout, "every worker thread starts a task", fail=False)
        return ok, ", ".join(
            f"pid {pid}: {n} of {threads} threads started nothing" for pid, n in missing.items()
        )

    def health_sample(self, label: str) -> None:
        """Run taskqueue_health, and see from the records whether every worker thread serves."""
        since = time.monotonic()
        self.probe()
        all_up = all(worker.alive() for worker in self.pool)
        command = [sys.executable, "manage.py", "taskqueue_health"]
        try:
            result = subprocess.run(
                command, cwd=PROJECT, env=self.env(), capture_output=True, text=True, timeout=90
            )
            code, says = (
                result.returncode,
                (result.stdout + result.stderr).strip().splitlines()[-1:] or [""],
            )
        except subprocess.TimeoutExpired:
            code, says = None, ["no answer within 90s"]
        serving, detail = self.serving(since, timeout=30)
        reality = all_up and serving
        sample = {
            "label": label,
            "exit": code,
            "says": says[0][:160],
            "serving": reality,
            "detail": detail if all_up else "a worker process is down",
            "match": (code == 0) == reality,
        }
        self.health.append(sample)
        print(
            f"  health [{label}]: exit {code} ({sample['says']}); serving: "
            f"{reality} {sample['detail']}",
            flush=True,
        )

    def wait_pool_serving(self, what: str, timeout: float = 60) -> None:
        since = time.monotonic()
        self.probe()
        ok, detail = self.serving(since, timeout)
        if not ok:
            self.scenario.setdefault("not_serving", []).append(f"{what}: {detail}")

    # -- poison --

    def poison_rows(self) -> None:
        from django.db import DatabaseError, connection, transaction

        from taskqueue.models import Task
        from tests.chaos import tasks

        table = Task._meta.db_table
        cast = "::jsonb" if connection.vendor == "postgresql" else ""

        refused: list[str] = []

        def row(key: str, column: str, raw: str, label: str, expect: str = "failed") -> bool:
            """A ChaosQueue task whose `column` is overwritten with raw JSON text in the same
            transaction."""

            def action() -> bool:
                try:
                    with transaction.atomic():
                        info = tasks.ChaosQueue.add_task({"key": key, "poison": "@POISON@"})
                        text = raw
                        if column == "payload":
                            stored = Task.objects.values_list("payload", flat=True).get(pk=info.id)
                            text = json.dumps(stored).replace('"@POISON@"', raw)
                        with connection.cursor() as cursor:
                            cursor.execute(
                                f"UPDATE {table} SET {column} = %s{cast} WHERE id = %s",
                                [text, info.id],
                            )
                except DatabaseError as error:
                    message = str(error).splitlines()[0] if str(error) else type(error).__name__
                    if any(
                        word in message.lower() for word in ("connection", "locked", "terminat")
                    ):
                        raise
                    refused.append(f"{label} ({message[:80]})")
                    return False
                with self.lock:
                    self.entries[key] = Entry("queue", info.id, "poison", expect, label)
                return True

            return self.db(action, f"poison row {label}")

        for i in range(2):
            row(
                f"poison-bigint-{i}",
                "payload",
                "1" + "7" * 4999,
                "payload: an integer of 5000 digits",
            )
        for depth in DEPTHS:
            if not refused_by_python(depth):
                continue
            nested = "[" * depth + "]" * depth
            if row("poison-deep-0", "payload", nested, f"payload: arrays nested {depth} deep"):
                row("poison-deep-1", "payload", nested, f"payload: arrays nested {depth} deep")
                break
        # A broken error history does not stop a task that can otherwise run: it runs, and succeeds.
        row("poison-errors-0", "errors", '{"not": "a list"}', "errors: a JSON object", "succeeded")
        row("poison-errors-1", "errors", '"not a list"', "errors: a JSON string", "succeeded")
        if refused:
            self.notes.append(f"poison rows the database refuses, not tested: {'; '.join(refused)}")

    def poison_schedules(self) -> None:
        from django.utils import timezone

        from taskqueue.models import RecurringTask

        def action() -> None:
            for key, path, cron in (
                (
                    "poison-missing-module",
                    "chaos_gone_after_a_deploy.tasks.vanished",
                    TICK_SCHEDULE,
                ),
                ("poison-impossible-date", TICK_PATH, "0 0 31 2 *"),
            ):
                values = {
                    "task_path": path,
                    "schedule": cron,
                    "timezone": "UTC",
                    "queue_name": QUEUE,
                }
                values |= {"priority": TICK_PRIORITY, "created_at": timezone.now()}
                RecurringTask.objects.update_or_create(key=key, defaults=values)

        self.db(action, "poison schedules")

    # -- the scenarios --

    def kill_storm(self) -> None:
        p = self.profile
        end = time.monotonic() + p.storm
        while True:
            self.sleep(self.rng.uniform(*p.kill_every))
            if time.monotonic() >= end or time.monotonic() > self.deadline:
                return
            with self.lock:
                slot = self.rng.randrange(len(self.pool))
                victim = self.pool[slot]
                if not victim.alive():
                    continue  # exited on its own: supervise() restarts it
                os.kill(victim.pid, signal.SIGKILL)
                # Stamped once kill() returned: the victim, running on the other core, can write a
                # record in the instant between a stamp taken before the call and the signal's
                # delivery.
                victim.killed_at = time.monotonic()
                self.kills[victim.pid] = victim.killed_at
            victim.process.wait(timeout=20)
            victim.handled = True
            time.sleep(RESTART_DELAY)
            replacement = self.start_pool_worker(slot)
            with self.lock:
                self.pool[slot] = replacement
                self.replacements.append((victim.killed_at, replacement))
            print(f"  storm: SIGKILL {victim.pid}, restarted as {replacement.pid}", flush=True)

    def sigterm_parent(self) -> None:
        """SIGTERM (once, to the parent only) a `--processes 2` worker whose children run long
        tasks."""
        p = self.profile
        items = [
            (
                DOORS[i % 3],
                self.next_key("long-"),
                {"seconds": p.long_seconds, "stoppable": i % 2 == 0},
            )
            for i in range(p.long_tasks)
        ]
        keys = set(self.enqueue(items, "long", queue=LONG_QUEUE))
        args = ["--processes", "2", "--threads", "1", "-Q", LONG_QUEUE, "--interval", "0.5"]
        parent = self.start_worker("supervisor", 0, [*args, "-n", "chaos-sup"])
        info: dict[str, Any] = {"parent": parent.pid}
        self.scenario["sigterm"] = info
        running: dict[tuple[str, int], float] = {}
        new = self.records.reader()

        def two_running() -> bool:
            for event in new():
                if event.key in keys and event.kind == "START":
                    running[(event.key, event.pid)] = event.mono
                elif event.key in keys:
                    running.pop((event.key, event.pid), None)
            return len({pid for _, pid in running}) >= 2

        self.wait_for(two_running, 90, "both children of the --processes 2 parent run a long task")
        info["in_flight"] = sorted(key for key, _ in running)
        info["sigterm_at"] = time.monotonic()
        os.kill(parent.pid, signal.SIGTERM)
        print(
            f"  SIGTERM to the --processes 2 parent {parent.pid}, {len(running)} long tasks "
            "running",
            flush=True,
        )
        try:
            parent.process.wait(timeout=SHUTDOWN_TIMEOUT + 35)
        except subprocess.TimeoutExpired:
            self.notes.append(
                f"the --processes 2 parent had not exited {SHUTDOWN_TIMEOUT + 35:.0f}s after "
                "SIGTERM"
            )
            os.killpg(parent.pid, signal.SIGKILL)
            parent.process.wait(timeout=10)
        info["exit"] = parent.process.returncode
        info["seconds_to_exit"] = round(time.monotonic() - info["sigterm_at"], 2)
        # A new parent runs what is left of the long tasks; it is stopped at the end, with the pool.
        self.start_worker("supervisor", 1, [*args, "-n", "chaos-sup2"])

    def pg_faults(self) -> None:
        from django.db import connection

        faults: list[str] = []
        self.scenario["pg_faults"] = faults

        def terminate() -> int:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
                    "pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND "
                    "backend_type = 'client backend'"
                )
                return cursor.fetchone()[0]

        for _ in range(2):
            count = self.db(terminate, "pg_terminate_backend")
            faults.append(f"pg_terminate_backend: {count} backends")
            print(f"  {faults[-1]}", flush=True)
            self.sleep(self.profile.pg_gap)
        if self.cluster is None:
            self.notes.append(
                "pg_ctl restart not tested: the server is not one this run started or may restart"
            )
            return
        for _ in range(2):
            connection.close()
            began = time.monotonic()
            self.cluster.restart()
            faults.append(f"pg_ctl restart: {time.monotonic() - began:.1f}s")
            print(f"  {faults[-1]}", flush=True)
            self.sleep(self.profile.pg_gap)

    def sigstop(self) -> None:
        """SIGSTOP the worker running a long task for longer than WORKER_DEAD_AFTER, then SIGCONT
        it."""
        item = ("queue", self.next_key("sigstop-"), {"seconds": self.profile.long_seconds})
        key = self.enqueue([item], "sigstop", priority=STOP_TASK_PRIORITY)[0]
        info: dict[str, Any] = {"key": key, "pause": self.profile.stop_pause}
        self.scenario["sigstop"] = info
        starts: list[Event] = []
        new = self.records.reader()

        def started() -> bool:
            starts.extend(e for e in new() if e.key == key and e.kind == "START")
            return bool(starts)

        self.wait_for(started, 60, "the SIGSTOP task started")
        pid = starts[0].pid
        info["pid"] = pid
        info["stopped_at"] = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        print(f"  SIGSTOP {pid} (running {key}) for {self.profile.stop_pause:.0f}s", flush=True)
        try:
            self.sleep(self.profile.stop_pause)
        finally:
            os.kill(pid, signal.SIGCONT)
            info["continued_at"] = time.monotonic()

    # -- the run --

    def step(self, name: str, action: Callable[[], None], always: bool = False) -> None:
        """Run one step, timed; a step that cannot go on is a problem (a FAIL), and the run goes on.
        Past the deadline only the `always` steps run (stopping the workers)."""
        if not always and time.monotonic() > self.deadline:
            self.skipped.append(name)
            return
        began = time.monotonic()
        try:
            self.reporting(name, action)
        finally:
            self.phases[name] = (began - self.t0, time.monotonic() - self.t0)

    def reporting(self, name: str, action: Callable[[], None]) -> None:
        """Run `action`; what it raises becomes a problem of the run (a FAIL), and the run goes
        on."""
        try:
            action()
        except ChaosError as error:
            self.problems.append(f"{name}: {error}")
            print(f"  {name}: {error}", flush=True)
        except Exception as error:
            self.problems.append(f"{name}: {type(error).__name__}: {error}")
            traceback.print_exc()

    def execute(self) -> dict[str, Any]:
        from django.core.management import call_command
        from django.db import connections

        from taskqueue.recurring import schedule_recurring

        p = self.profile
        call_command("migrate", verbosity=0)
        self.db(
            lambda: schedule_recurring(
                "chaos-tick", TICK_PATH, TICK_SCHEDULE, queue_name=QUEUE, priority=TICK_PRIORITY
            ),
            "the good schedule",
        )
        feeder = threading.Thread(target=self.feeder, name="feeder", daemon=True)

        def setup() -> None:
            self.enqueue(self.load_items(p.backlog), "load")
            self.pool = [self.start_pool_worker(slot) for slot in range(self.args.processes)]
            self.feeding.set()
            feeder.start()
            everyone = lambda: all(w.pid in self.records.first_start for w in self.pool)  # noqa: E731
            self.wait_for(everyone, 90, "every worker started a task")

        def baseline() -> None:
            print(f"  baseline: {p.baseline:.0f}s", flush=True)
            self.sleep(p.baseline)

        def poison() -> None:
            self.poison_rows()
            self.poison_schedules()
            self.scenario["poison_at"] = time.monotonic()
            self.sleep(4)

        def storm() -> None:
            print(
                f"  kill storm: {p.storm:.0f}s, and SIGTERM to a --processes 2 parent on a queue "
                "of its own",
                flush=True,
            )
            sigterm = threading.Thread(
                target=self.in_thread("SIGTERM scenario", self.sigterm_parent), name="sigterm"
            )
            sigterm.start()
            self.kill_storm()
            sigterm.join(timeout=max(self.deadline - time.monotonic(), 1))

        def drain() -> None:
            self.feeding.clear()
            self.drain()

        self.step("setup", setup)
        if self.pool:
            self.step("baseline", baseline)
            self.step("health 1", lambda: self.health_sample("all up, before faults"))
            self.step("poison", poison)
            self.step("health 2", lambda: self.health_sample("poison rows and schedules in"))
            self.step("storm", storm)
            self.step("after storm", lambda: self.wait_pool_serving("after the storm"))
            self.step("health 3", lambda: self.health_sample("after the kill storm, all restarted"))
            if self.database == POSTGRES:
                self.step("pg faults", self.pg_faults)
                self.step(
                    "after pg faults", lambda: self.wait_pool_serving("after the database faults")
                )
                self.step("health 4", lambda: self.health_sample("after the database faults"))
            self.step("sigstop", self.sigstop)
            self.step("drain", drain)
            self.step("health 5", lambda: self.health_sample("drained, all up"))
            self.step("drain probes", self.drain)
        self.feeding.clear()
        self.feeder_stop.set()
        if feeder.is_alive():
            feeder.join(timeout=30)
        connections.close_all()
        self.scenario["load_end"] = time.monotonic()
        self.scenario["load_end_wall"] = time.time()
        if self.skipped:
            self.problems.append(f"out of time: {', '.join(self.skipped)} not run")
        self.step("stop", self.stop_all, always=True)
        self.records.refresh()
        return Judge(self).result()

    def in_thread(self, name: str, action: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            from django.db import connections

            try:
                self.reporting(name, action)
            finally:
                connections.close_all()

        return run

    def drain(self) -> None:
        """Wait until every task but the poison rows has finished (then the poison rows, a
        little)."""
        from django.db.models import Q

        from taskqueue.models import UNFINISHED, Task

        poison = [entry.task_id for entry in self.entries.values() if entry.group == "poison"]

        def unfinished() -> int:
            rows = Task.objects.filter(status__in=UNFINISHED, queue_name__in=[QUEUE, LONG_QUEUE])
            return rows.exclude(Q(pk__in=poison) | Q(task_path=TICK_PATH)).count()

        def poison_unfinished() -> int:
            return Task.objects.filter(status__in=UNFINISHED, pk__in=poison).count()

        deadline = min(time.monotonic() + self.profile.drain_timeout, self.deadline)
        while (left := self.db(unfinished, "drain")) and time.monotonic() < deadline:
            self.sleep(0.5)
        if left:
            self.problems.append(
                f"drain: {left} tasks still unfinished after {self.profile.drain_timeout:.0f}s"
            )
        deadline = min(time.monotonic() + 10, self.deadline + 10)
        while self.db(poison_unfinished, "drain") and time.monotonic() < deadline:
            time.sleep(0.5)

    def stop_all(self) -> None:
        live = [worker for worker in self.workers if worker.alive()]
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGCONT)
                os.kill(worker.pid, signal.SIGTERM)
        for worker in live:
            try:
                worker.process.wait(timeout=SHUTDOWN_TIMEOUT + 20)
            except subprocess.TimeoutExpired:
                self.problems.append(
                    f"worker {worker.pid} had not exited {SHUTDOWN_TIMEOUT + 20:.0f}s after SIGTERM"
                )
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.pid, signal.SIGKILL)
                worker.process.wait(timeout=10)
        self.kill_everything()


def refused_by_python(depth: int) -> bool:
    try:
        json.loads("[" * depth + "]" * depth)
    except RecursionError:
        return True
    return False


# --- Judging -------------------------------------------------------------------------------------


class Judge:
    """The invariants and figures of a finished run, from its records, its own log and the worker
    logs."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.bound = durability_bound(run.args, run.database)
        self.threads = run.args.threads
        self.rows = self.final_rows()
        self.runs = self.runs_by_key()
        self.checks: list[Check] = []
        self.figures: list[tuple[str, str]] = []
        self.thread_starts: dict[tuple[int, str], list[float]] | None = None

    def final_rows(self) -> dict[int, dict[str, Any]]:
        """How each task ended, from the table (and the ticks' tasks, which the schedule
        enqueued)."""
        from taskqueue.models import Task

        run = self.run
        fields = ("id", "status", "attempts", "errors", "task_path", "enqueued_at")

        def action() -> dict[int, dict[str, Any]]:
            rows: dict[int, dict[str, Any]] = {}
            ids = [entry.task_id for entry in run.entries.values()]
            for at in range(0, len(ids), 500):
                rows |= {
                    row["id"]: row
                    for row in Task.objects.filter(pk__in=ids[at : at + 500]).values(*fields)
                }
            rows |= {
                row["id"]: row for row in Task.objects.filter(task_path=TICK_PATH).values(*fields)
            }
            return rows

        rows = run.db(action, "final states")
        # ticks enqueued as the workers stopped
        late = run.scenario.get("load_end_wall", time.time()) - 3
        for row in rows.values():
            if row["task_path"] == TICK_PATH and row["enqueued_at"].timestamp() < late:
                run.entries.setdefault(
                    f"tick-{row['id']}", Entry("queue", row["id"], "tick", "succeeded")
                )
        return rows

    def runs_by_key(self) -> dict[str, list[TaskRun]]:
        runs: dict[str, list[TaskRun]] = defaultdict(list)
        open_runs: dict[tuple[str, int, str], TaskRun] = {}
        for event in sorted(self.run.records.events, key=lambda e: e.mono):
            where = (event.key, event.pid, event.thread)
            if event.kind in ("START", "TICK"):
                one = TaskRun(event.key, event.pid, event.thread, event.attempt, event.mono)
                runs[event.key].append(one)
                if event.kind == "TICK":
                    one.end, one.how = event.mono, "END"
                else:
                    open_runs[where] = one
            elif where in open_runs:
                one = open_runs.pop(where)
                one.end, one.how = event.mono, event.kind
        for one in open_runs.values():
            killed = self.run.kills.get(one.pid)
            one.how = "KILLED" if killed is not None and killed >= one.start else "LOST"
        return runs

    def result(self) -> dict[str, Any]:
        run = self.run
        self.check_states()
        self.check_runs()
        self.check_attempts()
        self.check_exits()
        self.check_logs()
        self.check_health()
        self.check_schedules()
        self.check_sigstop()
        self.check_sigterm()
        if run.database == POSTGRES:
            self.check_pg_faults()
        if run.problems:
            self.checks.append(
                Check("every scenario ran to its end", False, "; ".join(run.problems))
            )
        self.add_figures()
        return {
            "database": run.database,
            "profile": run.profile.name,
            "checks": [asdict(check) for check in self.checks],
            "figures": self.figures,
            "notes": run.notes,
            "seconds": round(time.monotonic() - run.t0, 1),
        }

    def status(self, key: str) -> str:
        row = self.rows.get(self.run.entries[key].task_id)
        return row["status"] if row else "missing"

    def reason(self, key: str) -> str:
        row = self.rows.get(self.run.entries[key].task_id) or {}
        errors = row.get("errors")
        last = (
            errors[-1]
            if isinstance(errors, list) and errors and isinstance(errors[-1], dict)
            else {}
        )
        return f"{last.get('exc_class', '')}: {str(last.get('message', ''))[:100]}".strip(": ")

    def check_states(self) -> None:
        wrong, unrecorded, poison = [], [], []
        entries = self.run.entries
        for key, entry in entries.items():
            status, reason = self.status(key), self.reason(key)
            if entry.group == "poison":
                poison.append(f"{entry.label}: {status}" + (f" ({reason})" if reason else ""))
                # A row that cannot run fails with its reason; one that can (a broken error history)
                # succeeds.
                if status != entry.expect or (entry.expect == "failed" and not reason):
                    wrong.append(
                        f"{key} ({entry.label}) ended {status}"
                        + ("" if reason else ", no reason recorded")
                    )
            elif status != entry.expect:
                wrong.append(
                    f"{key} ({entry.door}) ended {status}" + (f" ({reason})" if reason else "")
                )
            elif not any(one.how == "END" for one in self.runs.get(key, [])):
                unrecorded.append(key)
        groups = Counter(entry.group for entry in entries.values())
        bad_poison = sum(key.startswith("poison-") for key in wrong)
        normal = len(entries) - groups["poison"]
        detail = (
            f"{normal - (len(wrong) - bad_poison)} of {normal} tasks "
            f"succeeded; {groups['poison'] - bad_poison} of "
            f"{groups['poison']} poison rows ended as expected (failed with a reason, or run "
            "despite a broken "
            "error history)"
        )
        if unrecorded:
            detail += (
                f"; {len(unrecorded)} succeeded without a completed run in the "
                f"records{examples(unrecorded)}"
            )
        detail += examples(wrong, 6)
        self.checks.append(
            Check("every task ended in its expected state", not wrong and not unrecorded, detail)
        )
        self.figures.append(("poison rows", "; ".join(poison) or "none"))

    def check_runs(self) -> None:
        kills = self.run.kills
        unexplained, allowed, again, lost = [], [], [], []
        for key, runs in self.runs.items():
            interrupted = sum(one.how in ("KILLED", "STOP") for one in runs)
            lost += [f"{key} in pid {one.pid}" for one in runs if one.how == "LOST"]
            repeats = 0
            for one in runs:
                if one.how != "END" or not any(other.start > one.end for other in runs):
                    continue
                killed = kills.get(one.pid)
                if killed is not None and 0 <= killed - one.end <= self.bound:
                    repeats += 1
                    allowed.append(
                        f"{key}: END {killed - one.end:.3f}s before the SIGKILL of {one.pid}"
                    )
                elif killed is not None and killed > one.end:
                    last = (
                        ""
                        if self.started_in_thread(one.pid, one.thread, one.end, killed)
                        else ", its thread's last"
                    )
                    again.append(
                        f"{key} ({self.door(key)}: END {killed - one.end:.2f}s before its "
                        f"SIGKILL{last})"
                    )
                else:
                    again.append(
                        f"{key} ({self.door(key)}: END in pid {one.pid}, which was not SIGKILLed "
                        "after it)"
                    )
            if len(runs) - 1 > interrupted + repeats:
                unexplained.append(
                    f"{key} ({self.door(key)}, {len(runs)} runs, {interrupted} interrupted)"
                )
        self.allowed_repeats = allowed
        self.checks.append(
            Check(
                "a task ran more than once only if a run of it was interrupted (SIGKILL, or "
                "stopped on request)",
                not unexplained,
                f"{len(unexplained)} tasks ran again with no interrupted run to explain "
                f"it{examples(unexplained)}",
            )
        )
        self.checks.append(
            Check(
                "no completed run was followed by another start, but for an END <= "
                f"{self.bound:g}s before a "
                "SIGKILL of its process",
                not again,
                f"{len(again)} completed runs ran again; {len(allowed)} repeats allowed within "
                "the bound" + examples(again),
            )
        )
        self.checks.append(
            Check(
                "every run started ended, stopped on request, or was SIGKILLed (none vanished)",
                not lost,
                f"{len(lost)} runs vanished without a SIGKILL of their process{examples(lost)}",
            )
        )

    def started_in_thread(self, pid: int, thread: str, after: float, before: float) -> bool:
        """Whether the thread started another run between the two times (was it its last run?)."""
        if self.thread_starts is None:
            self.thread_starts = defaultdict(list)
            for runs in self.runs.values():
                for one in runs:
                    self.thread_starts[(one.pid, one.thread)].append(one.start)
        return any(after < start < before for start in self.thread_starts[(pid, thread)])

    def door(self, key: str) -> str:
        entry = self.run.entries.get(key)
        return entry.door if entry else "?"

    def check_attempts(self) -> None:
        """Attempt numbers the queue classes and django.tasks report, against the runs the records
        show.

        A run's start is committed just before its task's first line runs: a SIGKILL between the two
        charges an attempt the records do not show. That is allowed once per thread of a killed
        process (the attempt's abandoned error names its worker process); anything else is a charge
        for a run never had, or (too low a number) a crash not counted."""
        pids = self.process_pids()
        charged, window, uncounted = [], Counter(), []
        for key, runs in self.runs.items():
            counted = 0
            for index, one in enumerate(runs):
                if one.attempt.isdigit():
                    attempt = int(one.attempt)
                    if attempt < counted + 1:
                        uncounted.append(f"{key} attempt {attempt} after {counted} counted runs")
                    for missing in range(counted + 1, attempt):
                        pid = self.abandoned_by(key, missing, pids)
                        if pid is not None and pid in self.run.kills:
                            window[pid] += 1
                        else:
                            charged.append(
                                f"{key} attempt {missing} (before run {index + 1}), worker "
                                f"pid {pid}"
                            )
                    counted = (
                        max(counted, attempt) if one.how != "STOP" else max(counted, attempt - 1)
                    )
                elif one.how != "STOP":
                    counted += 1
        excess = [f"{n} in pid {pid}" for pid, n in window.items() if n > self.threads]
        self.checks.append(
            Check(
                "attempts match runs: none charged for a run that never started, every crash "
                "counted",
                not charged and not uncounted and not excess,
                f"{len(charged)} charged for no run, {len(uncounted)} after an uncounted crash, "
                f"{sum(window.values())} charged for a start committed just before a SIGKILL "
                "(allowed: at most "
                f"{self.threads} per killed process)" + examples(charged + uncounted + excess),
            )
        )

    def abandoned_by(self, key: str, attempt: int, pids: dict[int, int]) -> int | None:
        """The pid of the worker process whose death abandoned `attempt` of the task, from its
        errors."""
        row = self.rows.get(self.run.entries[key].task_id) if key in self.run.entries else None
        errors = row.get("errors") if row else None
        for error in errors if isinstance(errors, list) else []:
            if (
                isinstance(error, dict)
                and error.get("abandoned")
                and error.get("attempt") == attempt
            ):
                with contextlib.suppress(TypeError, ValueError):
                    return pids.get(int(error.get("worker")))
        return None

    def process_pids(self) -> dict[int, int]:
        """Worker process row id -> pid, from the workers' "worker process started id=N" log
        lines."""
        pids = {}
        for worker in self.run.workers:
            for line in read_lines(worker.log_path):
                if (header := LOG_HEADER.match(line)) and (
                    registered := REGISTERED.search(header["msg"])
                ):
                    pids[int(registered[1])] = int(header["pid"])
        return pids

    def check_exits(self) -> None:
        bad = [
            f"{worker.role} {worker.pid} exited {worker.process.returncode}"
            for worker in self.run.workers
            if worker.killed_at is None and worker.process.returncode != 0
        ]
        detail = f"{len(self.run.workers)} processes started, {len(self.run.kills)} SIGKILLed; "
        self.checks.append(
            Check(
                "no worker process exited non-zero but those SIGKILLed",
                not bad,
                detail + ("; ".join(bad) if bad else "every other one exited 0"),
            )
        )

    def check_logs(self) -> None:
        deaths, unexpected = scan_logs([worker.log_path for worker in self.run.workers])
        silent = [
            sample
            for sample in self.run.health
            if not sample["serving"] and "down" not in sample["detail"]
        ]
        silent_after = self.run.scenario.get("not_serving", [])
        self.checks.append(
            Check(
                "no worker thread died (no death in the logs; every thread of every worker kept "
                "starting tasks)",
                not deaths and not silent and not silent_after,
                f"{len(deaths)} thread deaths in the logs{examples(deaths, 2)}; "
                f"{len(self.run.health) - len(silent)} of {len(self.run.health)} samples saw "
                "every thread start tasks"
                + examples([f"[{s['label']}] {s['detail']}" for s in silent] + silent_after),
            )
        )
        self.checks.append(
            Check(
                "no unexpected traceback in the worker logs (the poison schedules' own errors "
                "aside)",
                not unexpected,
                f"{sum(unexpected.values())} tracebacks"
                + examples([f"{n}x {what}" for what, n in unexpected.most_common(4)]),
            )
        )

    def check_health(self) -> None:
        samples = self.run.health
        cells = [
            f"[{s['label']}] exit {s['exit']}, serving {s['serving']}"
            + ("" if s["match"] else f" MISMATCH: {s['says']}")
            for s in samples
        ]
        self.checks.append(
            Check(
                "taskqueue_health told the truth when sampled (exit 0 exactly when every worker "
                "was up and serving)",
                bool(samples) and all(s["match"] for s in samples),
                "; ".join(cells) or "never sampled",
            )
        )

    def check_schedules(self) -> None:
        from taskqueue.models import RecurringTask

        run = self.run
        poison_at = run.scenario.get("poison_at")
        end = run.scenario.get("load_end", time.monotonic())
        ticks = sorted(
            e.mono
            for e in run.records.events
            if e.kind == "TICK" and poison_at and e.mono >= poison_at
        )
        starts = [poison_at, *ticks] if poison_at else []
        gaps = [b - a for a, b in zip(starts, [*ticks, end], strict=False)]
        query = RecurringTask.objects.filter(key__startswith="poison-").values_list(
            "key", "last_error"
        )
        errors = dict(run.db(lambda: list(query), "schedules"))
        longest = max(gaps) if gaps else None
        # A tick claimed by the SIGSTOPped worker waits for it (it is alive: nothing takes its
        # tasks).
        allowed = run.profile.stop_pause + 8
        stop = run.scenario.get("sigstop", {})
        if longest is not None and longest > 6 and stop.get("stopped_at"):
            at = starts[gaps.index(longest)]
            if stop["stopped_at"] - 3 <= at <= stop.get("continued_at", end):
                run.notes.append(
                    f"no tick ran for {longest:.1f}s while a worker was SIGSTOPped (a scheduler "
                    "stopped inside its "
                    "tick's transaction holds the schedule's row, and every other scheduler "
                    "waits for it)"
                )
        ok = (
            len(errors) == 2 and all(errors.values()) and longest is not None and longest <= allowed
        )
        self.checks.append(
            Check(
                "poison schedules failed alone, each with its error; the good schedule kept "
                "ticking",
                ok,
                f"{len(ticks)} ticks since the poison schedules went in, longest gap "
                f"{'-' if longest is None else f'{longest:.1f}s'} ({allowed:.0f}s allowed); "
                + "; ".join(
                    f"{key}: {(error or 'NO ERROR RECORDED')[:90]}"
                    for key, error in sorted(errors.items())
                ),
            )
        )

    def check_sigstop(self) -> None:
        info = self.run.scenario.get("sigstop", {})
        key = info.get("key")
        runs = self.runs.get(key, []) if key else []
        ok = (
            "stopped_at" in info
            and len(runs) == 1
            and runs[0].how == "END"
            and self.status(key) == "succeeded"
        )
        how = "".join(f"; run in pid {one.pid}: {one.how}" for one in runs)
        self.checks.append(
            Check(
                f"SIGSTOP of a worker for {self.run.profile.stop_pause:.0f}s "
                f"(WORKER_DEAD_AFTER {WORKER_DEAD_AFTER:g}s), then SIGCONT: its task ran once",
                ok,
                (
                    f"{key}: {len(runs)} runs{how}; ended {self.status(key)}"
                    if key in self.run.entries
                    else "not run"
                )
                + ("" if "stopped_at" in info else "; the worker was never stopped"),
            )
        )

    def check_sigterm(self) -> None:
        info = self.run.scenario.get("sigterm", {})
        longs = [key for key, entry in self.run.entries.items() if entry.group == "long"]
        ended = []
        for key in info.get("in_flight", []):
            before = [one for one in self.runs.get(key, []) if one.start <= info["sigterm_at"]]
            ended.append(before[-1].how if before else "none")
        failed = [key for key in longs if self.status(key) != "succeeded"]
        ok = (
            info.get("exit") == 0
            and bool(ended)
            and all(how in ("END", "STOP") for how in ended)
            and not failed
        )
        self.checks.append(
            Check(
                "SIGTERM to a `taskqueue_worker --processes 2` parent during long tasks: graceful "
                "(exit 0, none failed, none lost)",
                ok,
                f"parent exited {info.get('exit')} after {info.get('seconds_to_exit')}s; the "
                "runs in flight ended "
                f"{dict(Counter(ended))}; {len(longs) - len(failed)} of {len(longs)} long tasks "
                "succeeded" + examples([f"{key} ended {self.status(key)}" for key in failed]),
            )
        )

    def check_pg_faults(self) -> None:
        faults = self.run.scenario.get("pg_faults", [])
        silent = [
            item for item in self.run.scenario.get("not_serving", []) if "database faults" in item
        ]
        self.checks.append(
            Check(
                "workers carried on through pg_terminate_backend x2 and pg_ctl restart x2 (all "
                "serving after)",
                len(faults) == 4 and not silent,
                "; ".join(faults + silent) or "not run",
            )
        )

    def add_figures(self) -> None:
        run = self.run
        groups = Counter(entry.group for entry in run.entries.values())
        doors = Counter(entry.door for entry in run.entries.values() if entry.group == "load")
        every = [one for runs in self.runs.values() for one in runs]
        hows = Counter(one.how for one in every)
        extra = sum(max(0, len(runs) - 1) for runs in self.runs.values())
        restart = [
            run.records.first_start[w.pid] - killed
            for killed, w in run.replacements
            if w.pid in run.records.first_start
        ]
        again, never = [], 0
        for runs in self.runs.values():
            for index, one in enumerate(runs):
                if one.how == "KILLED":
                    later = [
                        other.start
                        for other in runs[index + 1 :]
                        if other.start >= run.kills[one.pid]
                    ]
                    if later:
                        again.append(min(later) - run.kills[one.pid])
                    else:
                        never += 1
        before, during = self.throughput("baseline"), self.throughput("storm")
        dip = (
            f", a dip of {100 * (1 - during / before):.0f}%"
            if before and during is not None
            else ""
        )
        self.figures[:0] = [
            (
                "tasks",
                f"{groups['load']} load "
                f"({', '.join(f'{door} {n}' for door, n in sorted(doors.items()))}), "
                f"{groups['probe']} probes, {groups['long']} long, {groups['sigstop']} SIGSTOP, "
                f"{groups['tick']} ticks, {groups['poison']} poison rows",
            ),
            (
                "runs",
                f"{len(every)} started: {hows['END']} ended, {hows['KILLED']} interrupted by "
                "SIGKILL, "
                f"{hows['STOP']} stopped on request, {hows['LOST']} vanished",
            ),
            (
                "extra runs",
                f"{extra}; repeats of a completed run allowed within {self.bound:g}s: "
                f"{len(self.allowed_repeats)}{examples(self.allowed_repeats, 2)}",
            ),
            (
                "SIGKILLs",
                f"{len(run.kills)} in {self.phase_seconds('storm'):.0f}s, each worker restarted",
            ),
            ("kill to restarted worker serving", spread(restart)),
            (
                "kill to interrupted task started again",
                spread(again) + (f"; never again: {never}" if never else ""),
            ),
            (
                "throughput (tasks/s)",
                f"before the storm {before or 0:.0f}, during it {during or 0:.0f}{dip}",
            ),
        ]
        if "pg faults" in run.phases:
            self.figures.insert(
                7,
                (
                    "throughput during the database faults",
                    f"{self.throughput('pg faults') or 0:.0f}",
                ),
            )
        sigterm = run.scenario.get("sigterm", {})
        if sigterm:
            self.figures.append(
                (
                    "SIGTERM to --processes 2",
                    f"exit {sigterm.get('exit')} after {sigterm.get('seconds_to_exit')}s",
                )
            )
        phases = ", ".join(f"{name} {a:.0f}-{b:.0f}" for name, (a, b) in run.phases.items())
        self.figures.append(("phases (s from the start)", phases))

    def phase_seconds(self, phase: str) -> float:
        a, b = self.run.phases.get(phase, (0.0, 0.0))
        return b - a

    def throughput(self, phase: str) -> float | None:
        if phase not in self.run.phases:
            return None
        a, b = (self.run.t0 + t for t in self.run.phases[phase])
        ends = sum(1 for e in self.run.records.events if e.kind == "END" and a <= e.mono <= b)
        return ends / (b - a) if b > a else None


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


def scan_logs(paths: list[Path]) -> tuple[list[str], Counter[str]]:
    """Thread deaths, and tracebacks other than the poison schedules' own errors, in the worker
    logs.

    A traceback belongs to the log record before it, or to the "Exception in thread" line Python
    prints for an exception that ended a thread."""
    deaths: list[str] = []
    unexpected: Counter[str] = Counter()
    for path in paths:
        context, trace = "", []
        for line in [*read_lines(path), ""]:
            header = LOG_HEADER.match(line)
            starts = bool(header) or line.startswith("Exception in thread") or not line
            if starts:
                note_traceback(context, trace, unexpected)
                context, trace = line, []
                if line.startswith("Exception in thread") or (
                    header and (header["level"] == "CRITICAL" or THREAD_DEATH.search(header["msg"]))
                ):
                    deaths.append(line[:200])
            elif line.startswith("Traceback (most recent call last)") or trace:
                trace.append(line)
    return deaths, unexpected


def note_traceback(context: str, trace: list[str], unexpected: Counter[str]) -> None:
    if not trace or ("taskqueue.recurring" in context and "poison-" in context):
        return  # none, or a poison schedule's own error (logged once, with its traceback)
    header = LOG_HEADER.match(context)
    last = next(
        (line.strip() for line in reversed(trace) if line.strip() and not line.startswith(" ")), "?"
    )
    unexpected[f"{(header['msg'] if header else context)[:70]} -> {last[:90]}"] += 1


# --- Output --------------------------------------------------------------------------------------


def print_result(result: dict[str, Any], label: str) -> bool:
    checks = result.get("checks", [])
    ok = bool(checks) and all(check["ok"] for check in checks) and not result.get("error")
    title = (
        f"Chaos {result.get('profile', '')} on {label}: {'PASS' if ok else 'FAIL'} "
        f"({result.get('seconds', '?')}s)"
    )
    print(f"\n===== {title} =====")
    width = max([len(check["name"]) for check in checks] + [20])
    print(f"{'Invariant':<{width}}  Result")
    for check in checks:
        print(f"{check['name']:<{width}}  {'PASS' if check['ok'] else 'FAIL'}")
        print(f"    {check['detail']}")
    print("Figures")
    for name, value in result.get("figures", []):
        print(f"  {name + ':':<42} {value}")
    for note in result.get("notes", []):
        print(f"  note: {note}")
    if result.get("error"):
        print(f"  ERROR: {result['error']}")
    print(f"  records and worker logs: {result.get('workdir', '?')}")
    return ok


# --- The processes of this script ----------------------------------------------------------------


def run_worker(args: list[str]) -> None:
    """`manage.py taskqueue_worker ARGS`, with the TASKQUEUE settings of $CHAOS_TASKQUEUE applied
    first, for a config/settings.py that reads no TASKQUEUE_* variables: they are set in the
    settings module before Django reads it. (Children of a `--processes` parent would run plain
    `manage.py taskqueue_worker`, see sys.argv below, without them: the pool uses no
    --processes.)"""
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import config.settings as site

    site.TASKQUEUE.update(json.loads(os.environ.get(TASKQUEUE_ENV) or "{}"))
    from django.core.management import execute_from_command_line

    sys.argv = ["manage.py", "taskqueue_worker", *args]
    execute_from_command_line(sys.argv)


def prepare_database(
    database: str, workdir: Path
) -> tuple[str, Cluster | None, Callable[[], None]]:
    """The database URL, the cluster the run may restart, and how to clean up."""
    if database == SQLITE:
        return f"sqlite:///{workdir / 'chaos.sqlite3'}", None, lambda: None
    attached = Cluster.attached()
    if attached is not None:  # the test runner's cluster: a database of our own in it
        name = f"chaos_{os.getpid()}_{secrets.token_hex(3)}"
        attached.create_database(name)

        def drop() -> None:
            with contextlib.suppress(Exception):
                attached._run(
                    "dropdb",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(attached.port),
                    "-U",
                    "postgres",
                    "--force",
                    name,
                )

        return f"postgres://postgres@127.0.0.1:{attached.port}/{name}", attached, drop
    cluster = Cluster.create()
    try:
        cluster.start()
        cluster.create_database()
    except BaseException:
        cluster.destroy()
        raise
    return cluster.url, cluster, cluster.destroy


def run_one(args: argparse.Namespace) -> int:
    """One database's run, in this process: writes its result to args.result."""
    profile = QUICK if args.quick else FULL
    workdir = Path(args.workdir)
    result: dict[str, Any] = {"database": args.one, "profile": profile.name}
    run: Run | None = None
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    done = threading.Event()

    def write(result: dict[str, Any]) -> None:
        Path(args.result).write_text(json.dumps(result, default=str))

    def on_signal(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    def watchdog() -> None:
        if done.wait(profile.budget):
            return
        print(
            f"\nHARD TIMEOUT: the {LABELS[args.one]} run passed its {profile.budget:.0f}s; "
            "ending it",
            flush=True,
        )
        with contextlib.suppress(Exception):
            if run is not None:
                run.kill_everything()
        with contextlib.suppress(Exception):
            cleanup()
        write(result | {"error": f"hard timeout after {profile.budget:.0f}s", "checks": []})
        os._exit(3)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threading.Thread(target=watchdog, name="watchdog", daemon=True).start()
    try:
        url, cluster, cleanup = prepare_database(args.one, workdir)
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "ENV_FILE": "",
                "SECRET_KEY": SECRET_KEY,
                "DATABASE_URL": url,
                "LOG_LEVEL": "WARNING",
            }
            | ENGINE_ENV
        )
        import django
        from django.conf import settings

        django.setup()
        env_hook = (getattr(settings, "TASKQUEUE", None) or {}).get(
            "WORKER_DEAD_AFTER"
        ) == WORKER_DEAD_AFTER
        run = Run(args, workdir, url, cluster, env_hook)
        if not env_hook:
            run.notes.append(
                "config/settings.py reads no TASKQUEUE_* variables: the pool ran through "
                "--run-worker"
            )
        result = run.execute()
    except (Exception, Interrupted) as error:
        traceback.print_exc()
        result |= {
            "error": f"{type(error).__name__}: {error}",
            "checks": [],
            "notes": run.notes if run else [],
        }
    finally:
        done.set()
        if run is not None:
            run.kill_everything()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        cleanup()
    write(result)
    return 0


def run_database(database: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one database's chaos in a child process (a session of its own); its result."""
    profile = QUICK if args.quick else FULL
    workdir = Path(tempfile.mkdtemp(prefix=f"taskqueue-chaos-{database}-"))
    os.chmod(workdir, 0o755)
    result_path = workdir / "result.json"
    command = [
        sys.executable,
        "-m",
        MODULE,
        "--one",
        database,
        "--workdir",
        str(workdir),
        "--result",
        str(result_path),
    ]
    command += [
        "--processes",
        str(args.processes),
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
    ]
    command += [
        "--durability-bound",
        str(durability_bound(args, database)),
        *(["--quick"] if args.quick else []),
    ]
    print(
        f"\n===== Chaos {profile.name} run on {LABELS[database]}: {args.processes} worker "
        f"processes x {args.threads} "
        f"threads, seed {args.seed}, in {workdir} =====",
        flush=True,
    )
    env = {key: value for key, value in os.environ.items() if key in INHERITED or key in PG_ENV}
    child = subprocess.Popen(
        command, cwd=PROJECT, env=env | {"PYTHONUNBUFFERED": "1"}, start_new_session=True
    )
    try:
        child.wait(timeout=profile.budget + 90)
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as error:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        end_leftovers(workdir)
        if isinstance(error, KeyboardInterrupt):
            raise
    end_leftovers(workdir)
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        result = {
            "database": database,
            "error": f"the run ended (exit {child.returncode}) with no result",
        }
    result["workdir"] = str(workdir)
    return result


def durability_bound(args: argparse.Namespace, database: str) -> float:
    return (
        DURABILITY_BOUNDS[database]
        if args.durability_bound is None
        else float(args.durability_bound)
    )


def end_leftovers(workdir: Path) -> None:
    """Kill the process groups a run started, should any be left (a run that was itself killed)."""
    with contextlib.suppress(OSError, ValueError):
        for pgid in json.loads((workdir / "state.json").read_text()).get("pgids", []):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.chaos", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="the short form (about 60-90 s per database)"
    )
    parser.add_argument("--database", choices=[SQLITE, POSTGRES, "both"], default="both")
    parser.add_argument(
        "--processes", type=int, default=4, help="worker processes in the pool (default 4)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="threads per worker process (default 2)"
    )
    parser.add_argument(
        "--durability-bound",
        type=float,
        help=(
            "seconds before a SIGKILL within which a completed run may run again (default: "
            f"{DURABILITY_BOUNDS[POSTGRES]:g} on PostgreSQL, {DURABILITY_BOUNDS[SQLITE]:g} on "
            "SQLite)"
        ),
    )
    parser.add_argument(
        "--seed", type=int, help="seed of the random choices (default: a random one, printed)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the records and logs of passing runs too"
    )
    parser.add_argument("--one", choices=[SQLITE, POSTGRES], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    if args.processes < 2 or args.threads < 1:
        parser.error("--processes must be 2 or more, --threads 1 or more")
    return args


def main(argv: list[str]) -> int:
    if argv[:1] == ["--run-worker"]:
        run_worker(argv[1:])
        return 0
    args = parse_args(argv)
    if args.one:
        return run_one(args)
    databases = [SQLITE, POSTGRES] if args.database == "both" else [args.database]
    if POSTGRES in databases and Cluster.attached() is None and not binaries_available():
        print(
            f"NOTE: no PostgreSQL binaries in {DEFAULT_BIN_DIR}: the PostgreSQL run is skipped.",
            file=sys.stderr,
        )
        databases.remove(POSTGRES)
    began = time.monotonic()
    verdicts = {}
    for database in databases:
        result = run_database(database, args)
        verdicts[database] = print_result(result, LABELS[database])
        if verdicts[database] and not args.keep:
            shutil.rmtree(result["workdir"], ignore_errors=True)
    print(f"\n===== Chaos summary ({time.monotonic() - began:.0f}s) =====")
    for database, ok in verdicts.items():
        print(f"{LABELS[database]}: {'PASS' if ok else 'FAIL'}")
    return 0 if verdicts and all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
