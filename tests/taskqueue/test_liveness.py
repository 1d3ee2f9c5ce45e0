"""Deciding that a worker is dead, exactly where it can be proved, and recovering its tasks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from taskqueue.engine import liveness
from taskqueue.engine.databases import postgresql
from taskqueue.models import Status, Task, WorkerProcess
from tests.conftest import wait_until
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.django_db


def a_worker(pid: int, hostname: str = liveness.HOSTNAME, silent_for: float = 0) -> WorkerProcess:
    then = timezone.now() - timedelta(seconds=silent_for)
    return WorkerProcess.objects.create(
        name="other",
        hostname=hostname,
        pid=pid,
        queues=["*"],
        threads=1,
        started_at=then,
        heartbeat_at=then,
    )


def running_task(
    worker: WorkerProcess, queue=q.NoOpQueue, attempts: int = 1, started: bool = True
) -> Task:
    """A task claimed by `worker` (once) and, if `started`, started with its attempt counted."""
    info = queue.add_task(None)
    Task.objects.filter(pk=info.id).update(
        status=Status.RUNNING,
        claimed_by=worker,
        claims=1,
        attempts=attempts if started else attempts - 1,
        started_at=timezone.now() if started else None,
    )
    return Task.objects.get(pk=info.id)


@contextlib.contextmanager
def session_of(worker: WorkerProcess) -> Iterator[None]:
    """On PostgreSQL, hold the worker's advisory lock as its living database session would."""
    if connection.vendor != "postgresql":
        yield
        return
    import psycopg

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as session:
        session.execute("SELECT pg_advisory_lock(%s, %s)", [postgresql.LOCK_NAMESPACE, worker.pk])
        yield


@pytest.fixture
def me() -> liveness.Recovery:
    process = liveness.register(connection.alias, "me", ["*"], 1)
    recovery = liveness.Recovery(
        connection.alias, process.pk, heartbeat_interval=0.1, dead_after=60
    )
    recovery.process = process  # type: ignore[attr-defined] - for the tests below
    return recovery


@pytest.fixture
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_task_of_a_worker_whose_process_is_gone_is_put_back_with_the_attempt_counted(
    me, dead_pid
) -> None:
    task = running_task(a_worker(dead_pid))
    assert me.recover() == 1
    task.refresh_from_db()
    assert (task.status, task.attempts, task.abandoned, task.claimed_by_id) == (
        Status.READY,
        1,
        True,
        None,
    )
    assert task.errors[-1]["exc_class"] == "taskqueue.WorkerDied"
    assert not WorkerProcess.objects.exclude(pk=me.process_id).exists()


def test_a_slow_but_living_worker_is_not_presumed_dead(me) -> None:
    # The test process itself: alive, on this host, silent for longer than the grace period.
    slow = a_worker(pid=os.getpid(), silent_for=30)
    task = running_task(slow)
    with session_of(slow):
        assert me.recover() == 0
    task.refresh_from_db()
    assert task.status == Status.RUNNING


@pytest.mark.skipif("connection.vendor == 'postgresql'", reason="there, the advisory lock decides")
def test_a_worker_on_another_host_is_presumed_dead_only_after_the_conservative_silence(me) -> None:
    quiet = running_task(a_worker(pid=1, hostname="elsewhere", silent_for=30))
    gone = running_task(a_worker(pid=1, hostname="far-away", silent_for=61))
    assert me.recover() == 1
    quiet.refresh_from_db(), gone.refresh_from_db()
    assert (quiet.status, gone.status) == (Status.RUNNING, Status.READY)


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="advisory locks are PostgreSQL's")
def test_a_held_advisory_lock_proves_life_however_old_the_heartbeat(me) -> None:
    silent = a_worker(pid=1, hostname="elsewhere", silent_for=3600)
    task = running_task(silent)
    with session_of(silent):
        assert me.recover() == 0
    task.refresh_from_db()
    assert task.status == Status.RUNNING


def test_a_living_process_on_this_host_is_alive_however_old_its_heartbeat(me) -> None:
    """A paused (SIGSTOP) or cut-off worker: its pid proves it lives, so its task is not run
    twice."""
    paused = a_worker(pid=os.getpid(), silent_for=3600)
    WorkerProcess.objects.filter(pk=paused.pk).update(
        pid_started=liveness.process_start_time(os.getpid())
    )
    task = running_task(paused)
    assert me.recover() == 0
    task.refresh_from_db()
    assert task.status == Status.RUNNING


def test_a_reused_pid_does_not_pass_for_the_dead_worker(me) -> None:
    # Our own pid, but a start time that is not ours: the worker that had this pid is gone.
    reused = a_worker(pid=os.getpid())
    WorkerProcess.objects.filter(pk=reused.pk).update(
        pid_started=(liveness.process_start_time(os.getpid()) or 0) + 1
    )
    task = running_task(reused)
    assert me.recover() == 1
    task.refresh_from_db()
    assert task.status == Status.READY


def test_a_dead_workers_unstarted_task_goes_back_uncounted_in_its_old_place(me, dead_pid) -> None:
    task = running_task(a_worker(dead_pid), started=False)
    run_at = task.run_at
    assert me.recover() == 1
    task.refresh_from_db()
    assert (task.status, task.attempts, task.abandoned, task.errors) == (Status.READY, 0, False, [])
    assert task.run_at == run_at


def test_a_recovered_task_keeps_its_place_in_the_queue(me, dead_pid) -> None:
    task = running_task(a_worker(dead_pid))
    run_at = task.run_at
    me.recover()
    task.refresh_from_db()
    assert (task.status, task.run_at) == (Status.READY, run_at)


def test_a_cancel_wins_over_recovery(me, dead_pid) -> None:
    worker = a_worker(dead_pid)
    started, unstarted = running_task(worker), running_task(worker, started=False)
    Task.objects.filter(pk__in=[started.pk, unstarted.pk]).update(cancel_requested=True)
    assert me.recover() == 2
    assert set(Task.objects.values_list("status", flat=True)) == {Status.CANCELLED}
    assert not Task.objects.filter(finished_at=None).exists()


def test_an_abandoned_task_without_attempts_left_fails_with_the_reason(me, dead_pid) -> None:
    worker = a_worker(dead_pid)
    spent = running_task(worker, q.KillerQueue, attempts=q.KillerQueue.max_attempts)
    assert me.recover() == 1
    spent.refresh_from_db()
    assert (spent.status, spent.abandoned) == (Status.FAILED, True)
    assert "died" in spent.errors[-1]["message"]


def test_retry_abandoned_false_fails_at_the_first_death(me, dead_pid) -> None:
    task = running_task(a_worker(dead_pid))
    Task.objects.filter(pk=task.pk).update(retry_abandoned=False)
    me.recover()
    task.refresh_from_db()
    assert task.status == Status.FAILED


def test_a_running_task_whose_worker_row_is_gone_is_recovered(me) -> None:
    worker = a_worker(pid=os.getpid())
    task = running_task(worker)
    worker.delete()
    assert me.recover() == 1
    task.refresh_from_db()
    assert task.status == Status.READY


def test_claimed_tasks_no_thread_holds_are_put_back_uncounted_after_a_while(me) -> None:
    mine = me.process
    lost = running_task(mine)
    held = running_task(mine)
    assert me.release_orphans({held.pk}, older_than=timedelta(seconds=30), now=0.0) == 0, (
        "seen once: not yet"
    )
    fresh = running_task(mine)
    assert me.release_orphans({held.pk}, older_than=timedelta(seconds=30), now=31.0) == 1
    statuses = dict(Task.objects.values_list("pk", "status"))
    assert statuses == {lost.pk: Status.READY, held.pk: Status.RUNNING, fresh.pk: Status.RUNNING}
    assert Task.objects.get(pk=lost.pk).attempts == 0


def test_a_worker_presumed_dead_registers_again_under_the_same_id(me) -> None:
    WorkerProcess.objects.filter(pk=me.process_id).delete()
    liveness.Heartbeat(connection.alias, me.process).beat(threads_alive=1, scheduler_alive=None)
    assert WorkerProcess.objects.filter(pk=me.process_id).exists()


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="advisory locks are PostgreSQL's")
def test_postgresql_advisory_lock_proves_death_on_another_host(me) -> None:
    other = a_worker(pid=1, hostname="elsewhere", silent_for=5)
    task = running_task(other)
    with session_of(other):
        assert me.recover() == 0, "its session holds the lock: alive"
    # The server ends the closed session (and frees its lock) a moment after the client lets go.
    recovered: list[int] = []
    wait_until(
        lambda: recovered.append(me.recover()) or recovered[-1] == 1, timeout=5, message="seen dead"
    )
    task.refresh_from_db()
    assert task.status == Status.READY


def test_at_shutdown_unfinished_tasks_go_back_uncounted_unless_a_cancel_came_for_them(me) -> None:
    unfinished = running_task(me.process)
    cancelled = running_task(me.process)
    Task.objects.filter(pk=cancelled.pk).update(cancel_requested=True)
    liveness.put_back(
        connection.alias, me.process_id
    )  # what a stopping group does with what is left

    unfinished.refresh_from_db()
    cancelled.refresh_from_db()
    assert (unfinished.status, unfinished.attempts, unfinished.finished_at) == (
        Status.READY,
        0,
        None,
    )
    assert cancelled.status == Status.CANCELLED and cancelled.finished_at is not None
