"""Worker processes as rows: registration, heartbeats, and recovery of tasks whose worker died.

Death is decided where it can be proved, so a slow but living worker is never mistaken for a dead
one (which would run its tasks twice):
- same host: the process id no longer exists;
- PostgreSQL: the session-level advisory lock each worker holds for its life can be taken (only
  trusted once the server has been up longer than the grace period, since a restart drops all locks);
- otherwise: no heartbeat for WORKER_DEAD_AFTER seconds (conservative).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from taskqueue.engine.outcomes import ErrorInfo
from taskqueue.models import Status, Task, WorkerProcess

logger = logging.getLogger("taskqueue.liveness")

# Two-integer advisory lock key: (namespace, worker process id).
LOCK_NAMESPACE = 0x7A51
HOSTNAME = socket.gethostname()


def register(using: str, name: str, queues: list[str], threads: int) -> WorkerProcess:
    now = timezone.now()
    return WorkerProcess.objects.using(using).create(
        name=name, hostname=HOSTNAME, pid=os.getpid(), queues=queues, threads=threads, started_at=now, heartbeat_at=now
    )


def deregister(using: str, process_id: int) -> None:
    WorkerProcess.objects.using(using).filter(pk=process_id).delete()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host; an exited but unreaped (zombie) one does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: the signal check is all there is
    return stat.rpartition(")")[2].split()[0] != "Z"


@dataclass
class Liveness:
    """The heartbeat side of one worker process: run `beat()` every HEARTBEAT_INTERVAL seconds."""

    using: str
    process: WorkerProcess
    heartbeat_interval: float
    dead_after: float
    _locked_on: object | None = None

    @property
    def process_id(self) -> int:
        return self.process.pk

    @property
    def grace(self) -> timedelta:
        return timedelta(seconds=3 * self.heartbeat_interval)

    def beat(self) -> None:
        """Record a heartbeat. If this process was presumed dead meanwhile, register it again, same id."""
        self._hold_lock()
        now = timezone.now()
        if WorkerProcess.objects.using(self.using).filter(pk=self.process_id).update(heartbeat_at=now):
            return
        logger.error("this worker process was presumed dead and its tasks given to others; registering again")
        self.process.heartbeat_at = now
        self.process.save(using=self.using, force_insert=True)

    def release_orphans(self, held: set[int], older_than: timedelta) -> int:
        """Put back tasks claimed under this process that no thread holds (a claim whose reply was lost)."""
        cutoff = timezone.now() - older_than
        orphans = (
            Task.objects.using(self.using)
            .filter(status=Status.RUNNING, claimed_by_id=self.process_id, started_at__lt=cutoff)
            .exclude(pk__in=held)
        )
        released = orphans.update(
            status=Status.READY, attempts=F("attempts") - 1, claimed_by=None, run_at=timezone.now()
        )
        if released:
            logger.warning("put back %d tasks claimed by this process but held by none of its threads", released)
        return released

    def _hold_lock(self) -> None:
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            return
        connection.ensure_connection()
        if self._locked_on is connection.connection:
            return
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [LOCK_NAMESPACE, self.process_id])
        self._locked_on = connection.connection

    def cancel_requests(self) -> set[int]:
        """Tasks running in this process that someone asked to stop (a revoke)."""
        running = Task.objects.using(self.using).filter(
            status=Status.RUNNING, claimed_by_id=self.process_id, cancel_requested=True
        )
        return set(running.values_list("pk", flat=True))

    def recover(self) -> int:
        """Remove dead worker processes and put their tasks back (or fail them). Returns tasks recovered."""
        now = timezone.now()
        for process in WorkerProcess.objects.using(self.using).exclude(pk=self.process_id):
            reason = self._death(process, now)
            if reason:
                WorkerProcess.objects.using(self.using).filter(pk=process.pk).delete()
                logger.warning("worker process presumed dead worker=%s reason=%r", process, reason)
        return recover_orphans(self.using, now)

    def _death(self, process: WorkerProcess, now: datetime) -> str | None:
        if process.hostname == HOSTNAME and not pid_alive(process.pid):
            return f"process {process.pid} no longer exists"
        silence = now - process.heartbeat_at
        if silence > timedelta(seconds=self.dead_after):
            return f"no heartbeat for {silence.total_seconds():.0f}s"
        if silence > self.grace and self._lock_is_free(process.pk):
            return "its database session is gone (advisory lock free)"
        return None

    def _lock_is_free(self, process_id: int) -> bool:
        connection = connections[self.using]
        if connection.vendor != "postgresql":
            return False
        with connection.cursor() as cursor:
            cursor.execute("SELECT now() - pg_postmaster_start_time() > %s", [self.grace])
            if not cursor.fetchone()[0]:
                return False  # just restarted: living workers have not re-taken their locks yet
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, process_id])
            free = cursor.fetchone()[0]
            if free:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, process_id])
        return free


def recover_orphans(using: str, now: datetime) -> int:
    """Running tasks whose worker process row is gone: retried while attempts remain, else failed."""
    living = WorkerProcess.objects.using(using).values("pk")
    orphans = Task.objects.using(using).filter(status=Status.RUNNING).exclude(claimed_by__in=living)
    recovered = 0
    for task in orphans.only("id", "attempts", "max_attempts", "retry_abandoned", "errors", "claimed_by_id"):
        error = ErrorInfo("taskqueue.WorkerDied", f"The worker process running attempt {task.attempts} died.", "")
        entry = error.entry(task.attempts, str(task.claimed_by_id), now, abandoned=True)
        retry = task.retry_abandoned and task.attempts < task.max_attempts
        changes = {"errors": [*task.errors, entry], "abandoned": True, "claimed_by": None}
        if retry:
            changes |= {"status": Status.READY, "run_at": now}
        else:
            changes |= {"status": Status.FAILED, "finished_at": now}
        with transaction.atomic(using=using):
            updated = (
                Task.objects.using(using)
                .filter(pk=task.pk, status=Status.RUNNING, claimed_by_id=task.claimed_by_id)
                .update(**changes)
            )
        if updated:
            recovered += 1
            logger.warning(
                "task abandoned id=%s attempt=%s outcome=%s", task.pk, task.attempts, "retry" if retry else "failed"
            )
    return recovered


def prune_succeeded(using: str, retention: float, limit: int = 1000) -> int:
    """Delete successful tasks older than the retention period, a bounded batch at a time."""
    cutoff = timezone.now() - timedelta(seconds=retention)
    old = (
        Task.objects.using(using)
        .filter(status=Status.SUCCEEDED, finished_at__lt=cutoff)
        .values_list("pk", flat=True)[:limit]
    )
    deleted, _ = Task.objects.using(using).filter(pk__in=list(old)).delete()
    return deleted
