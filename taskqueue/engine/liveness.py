"""Worker processes as rows: registration, heartbeats, and recovery of tasks whose worker died.

Proof beats a timer. A worker is dead only where its death can be proved, so that a slow, paused or
cut-off worker is never mistaken for a dead one (which would run its tasks twice):
- PostgreSQL: each worker process holds a session-level advisory lock for its life. A held lock
  means alive, however old its heartbeat. A free lock means its session is gone: on this host the
  process id then decides (a process cut off from the database is alive and will take its lock
  again); on another host, a heartbeat silent for the grace period too. Locks are not trusted right
  after a server restart, which drops them all.
- On the same host: the process id (with its start time, so a reused pid does not pass for it).
- Otherwise (another host, no PostgreSQL): no heartbeat for WORKER_DEAD_AFTER seconds
  (conservative).

Tasks of a dead worker are recovered: a task it never started goes back uncounted, in its old place;
a started one was charged when it started (so a task that kills its worker cannot loop forever) and
is retried while attempts remain, else failed, and a cancel that came for it wins. Every write is
fenced on the claim the task was held under.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.db import connections, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from taskqueue import signals
from taskqueue.engine import concurrency, databases
from taskqueue.engine.databases.base import FREE, HELD
from taskqueue.models import Status, Task, WorkerProcess
from taskqueue.serialization import ErrorInfo

logger = logging.getLogger("taskqueue.liveness")

HOSTNAME = socket.gethostname()


def process_start_time(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (None where /proc cannot tell)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def register(using: str, name: str, queues: list[str], threads: int) -> WorkerProcess:
    now = timezone.now()
    pid = os.getpid()
    return WorkerProcess.objects.using(using).create(
        name=name,
        hostname=HOSTNAME,
        pid=pid,
        pid_started=process_start_time(pid),
        queues=queues,
        threads=threads,
        threads_alive=threads,
        started_at=now,
        heartbeat_at=now,
    )


def deregister(using: str, process_id: int) -> None:
    WorkerProcess.objects.using(using).filter(pk=process_id).delete()


def pid_alive(pid: int, started: int | None = None) -> bool:
    """Whether process `pid` runs on this host (and is the one that started at `started`, if given);
    an exited but unreaped (zombie) process does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc here: the signal check is all there is
    fields = stat.rpartition(")")[2].split()
    if fields[0] == "Z":
        return False
    return started is None or int(fields[19]) == started


def requeue_status() -> Case:
    """Where a task that is to run again goes: a cancel wins; a limited task waits for its slot."""
    return Case(
        When(cancel_requested=True, then=Value(Status.CANCELLED)),
        When(concurrency_key__isnull=False, then=Value(Status.BLOCKED)),
        default=Value(Status.READY),
    )


@dataclass
class Heartbeat:
    """One worker process's proof of life: run `beat()` every HEARTBEAT_INTERVAL, on a thread and a
    database connection of its own, so it never waits behind task work."""

    using: str
    process: WorkerProcess
    _locked_on: object | None = None

    @property
    def process_id(self) -> int:
        return self.process.pk

    def beat(self, threads_alive: int, scheduler_alive: bool | None) -> None:
        """Record a heartbeat. If this process was presumed dead meanwhile, register it again, same
        id."""
        self._hold_lock()
        now = timezone.now()
        changes = {
            "heartbeat_at": now,
            "threads_alive": threads_alive,
            "scheduler_alive": scheduler_alive,
        }
        if WorkerProcess.objects.using(self.using).filter(pk=self.process_id).update(**changes):
            return
        logger.error(
            "this worker process was presumed dead and its tasks given to others; registering again"
        )
        for name, value in changes.items():
            setattr(self.process, name, value)
        self.process.save(using=self.using, force_insert=True)

    def _hold_lock(self) -> None:
        """The session lock, taken again on each new connection (after a reconnect)."""
        connection = connections[self.using]
        connection.ensure_connection()
        if self._locked_on is connection.connection:
            return
        databases.for_connection(connection).hold_session_lock(connection, self.process_id)
        self._locked_on = connection.connection


@dataclass
class Recovery:
    """The process duties that find dead workers' tasks and tasks no thread holds, and put them
    back."""

    using: str
    process_id: int
    heartbeat_interval: float
    dead_after: float
    # Tasks claimed under this process that no thread held, by when they were first seen so.
    _unheld_since: dict[int, float] = field(default_factory=dict)

    @property
    def grace(self) -> timedelta:
        return timedelta(seconds=3 * self.heartbeat_interval)

    def recover(self) -> int:
        """Remove dead worker processes and put their tasks back (or fail them). Returns tasks
        recovered."""
        now = timezone.now()
        for process in WorkerProcess.objects.using(self.using).exclude(pk=self.process_id):
            reason = self.death(process, now)
            if reason:
                WorkerProcess.objects.using(self.using).filter(pk=process.pk).delete()
                logger.warning("worker process presumed dead worker=%s reason=%r", process, reason)
        return recover_orphans(self.using, now)

    def death(self, process: WorkerProcess, now: datetime) -> str | None:
        """Why `process` is dead, or None while it is (or may be) alive."""
        here = process.hostname == HOSTNAME
        silence = now - process.heartbeat_at
        lock = self._lock(process.pk)
        if lock == HELD:
            return None
        if here:
            if pid_alive(process.pid, process.pid_started):
                return None
            return f"process {process.pid} no longer exists"
        if lock == FREE:
            if silence > self.grace:
                return (
                    "its session is gone (advisory lock free), "
                    f"no heartbeat for {silence.total_seconds():.0f}s"
                )
            return None
        if silence > timedelta(seconds=self.dead_after):
            return f"no heartbeat for {silence.total_seconds():.0f}s"
        return None

    def _lock(self, process_id: int) -> str:
        """HELD, FREE, or UNKNOWN (a database without session locks, or one restarted moments
        ago)."""
        connection = connections[self.using]
        return databases.for_connection(connection).session_lock(connection, process_id, self.grace)

    def release_orphans(self, held: set[int], older_than: timedelta, now: float) -> int:
        """Put back tasks claimed under this process that no thread has held for `older_than` (a
        claim whose reply the connection lost): seen unheld on two passes that far apart."""
        unheld = set(
            Task.objects.using(self.using)
            .filter(status=Status.RUNNING, claimed_by_id=self.process_id)
            .exclude(pk__in=held)
            .values_list("pk", flat=True)
        )
        self._unheld_since = {pk: self._unheld_since.get(pk, now) for pk in unheld}
        due = [
            pk
            for pk, since in self._unheld_since.items()
            if now - since >= older_than.total_seconds()
        ]
        released = put_back(self.using, self.process_id, only=due) if due else 0
        if released:
            logger.warning(
                "put back %d tasks claimed by this process but held by none of its threads",
                released,
            )
        for pk in due:
            self._unheld_since.pop(pk, None)
        return released

    def cancel_requests(self) -> set[int]:
        """Tasks running in this process that someone asked to stop (a revoke)."""
        running = Task.objects.using(self.using).filter(
            status=Status.RUNNING, claimed_by_id=self.process_id, cancel_requested=True
        )
        return set(running.values_list("pk", flat=True))


def put_back(
    using: str,
    process_id: int,
    *,
    only: list[int] | None = None,
    keep: set[int] | frozenset[int] = frozenset(),
) -> int:
    """Tasks held by this process that will not be finished here (shutdown, or claims no thread
    holds): back in their old place, the attempt uncounted; cancelled instead if a cancel came for
    them."""
    now = timezone.now()
    tasks = (
        Task.objects.using(using)
        .filter(status=Status.RUNNING, claimed_by_id=process_id)
        .exclude(pk__in=keep)
    )
    if only is not None:
        tasks = tasks.filter(pk__in=only)
    with transaction.atomic(using=using):
        keys = concurrency.keys_of(tasks)
        put = tasks.update(
            status=requeue_status(),
            finished_at=Case(When(cancel_requested=True, then=Value(now)), default=None),
            attempts=Case(
                When(started_at__isnull=True, then=F("attempts")), default=F("attempts") - 1
            ),
            claimed_by=None,
        )
        for key in sorted(keys):
            concurrency.promote(using, key, now)
    return put


def release_unstarted(using: str, claims: list[tuple[int, int]]) -> int:
    """Give back claimed tasks not yet started, each fenced on its claim: their old place,
    uncounted."""
    now = timezone.now()
    released = 0
    with transaction.atomic(using=using):
        for task_id, token in claims:
            released += (
                Task.objects.using(using)
                .filter(pk=task_id, claims=token, status=Status.RUNNING, started_at__isnull=True)
                .update(
                    status=requeue_status(),
                    finished_at=Case(When(cancel_requested=True, then=Value(now)), default=None),
                    claimed_by=None,
                )
            )
        blocked = Task.objects.using(using).filter(
            pk__in=[task_id for task_id, _ in claims], status=Status.BLOCKED
        )
        for key in sorted(concurrency.keys_of(blocked)):
            concurrency.promote(using, key, now)
    return released


def recover_orphans(using: str, now: datetime) -> int:
    """Running tasks whose worker process row is gone: a never-started one goes back uncounted; a
    started one is retried while attempts remain, else failed; a cancel wins over both."""
    living = WorkerProcess.objects.using(using).values("pk")
    orphans = Task.objects.using(using).filter(status=Status.RUNNING).exclude(claimed_by__in=living)
    recovered = 0
    fields = (
        "id",
        "attempts",
        "max_attempts",
        "retry_abandoned",
        "errors",
        "claimed_by_id",
        "claims",
        "started_at",
        "cancel_requested",
        "concurrency_key",
        "kind",
        "task_path",
    )
    keys: set[str] = set()
    endings: list[tuple[int, str, str, str, str]] = []
    for task in orphans.only(*fields):
        changes, outcome = _recovery(task, now)
        with transaction.atomic(using=using):
            updated = (
                Task.objects.using(using)
                .filter(pk=task.pk, status=Status.RUNNING, claims=task.claims)
                .update(**changes)
            )
        if updated:
            recovered += 1
            if task.concurrency_key:
                keys.add(task.concurrency_key)
            logger.warning(
                "task abandoned id=%s attempt=%s outcome=%s", task.pk, task.attempts, outcome
            )
            if task.cancel_requested:  # a requeue with a cancel pending ends cancelled too
                endings.append(
                    (task.pk, task.kind, task.task_path, Status.CANCELLED.value, signals.CANCELLED)
                )
            elif outcome == "failed":
                endings.append(
                    (task.pk, task.kind, task.task_path, Status.FAILED.value, signals.ABANDONED)
                )
    for key in sorted(keys):
        concurrency.promote(using, key, now)
    if endings and signals.listened():
        signals.send_ended(endings)
    return recovered


def _recovery(task: Task, now: datetime) -> tuple[dict[str, object], str]:
    """The changes that recover one orphaned task, and what they come to (for the log)."""
    cancelled_at = Case(When(cancel_requested=True, then=Value(now)), default=None)
    if task.started_at is None:
        return {
            "status": requeue_status(),
            "claimed_by": None,
            "finished_at": cancelled_at,
        }, "never started"
    errors = task.errors if isinstance(task.errors, list) else []
    error = ErrorInfo(
        "taskqueue.WorkerDied", f"The worker process running attempt {task.attempts} died.", ""
    )
    changes: dict[str, object] = {
        "errors": [
            *errors,
            error.entry(task.attempts, str(task.claimed_by_id), now, abandoned=True),
        ],
        "abandoned": True,
        "claimed_by": None,
    }
    if task.cancel_requested:
        return changes | {"status": Status.CANCELLED, "finished_at": now}, "cancelled"
    if task.retry_abandoned and task.attempts < task.max_attempts:
        return changes | {"status": requeue_status()}, "retry"
    return changes | {"status": Status.FAILED, "finished_at": now}, "failed"


# Pruning deletes in batches of this many rows, for at most PRUNE_SECONDS per pass: it keeps up with
# any drain rate the worker reaches without holding long locks.
PRUNE_BATCH = 5000
PRUNE_SECONDS = 1.0


def prune_finished(using: str, retention: float, budget: float = PRUNE_SECONDS) -> int:
    """Delete successful tasks (and tasks discarded by a concurrency limit, which never ran)
    finished more than `retention` seconds ago, batch after batch until none is left or the budget
    is spent."""
    import time

    cutoff = timezone.now() - timedelta(seconds=retention)
    prunable = Q(status=Status.SUCCEEDED) | Q(
        status=Status.CANCELLED, attempts=0, concurrency_key__isnull=False
    )
    deadline = time.monotonic() + budget
    total = 0
    while True:
        old = (
            Task.objects.using(using)
            .filter(prunable, finished_at__lt=cutoff)
            .values_list("pk", flat=True)[:PRUNE_BATCH]
        )
        deleted, _ = Task.objects.using(using).filter(pk__in=list(old)).delete()
        total += deleted
        if deleted < PRUNE_BATCH or time.monotonic() >= deadline:
            return total
