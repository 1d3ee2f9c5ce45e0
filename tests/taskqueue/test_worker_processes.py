"""Real worker processes: many at once, killed with SIGKILL, stopped with SIGTERM."""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest
from django.db import connection  # noqa: F401 - read by skipif conditions

from taskqueue.models import Status, Task, WorkerProcess
from tests.conftest import recorded, wait_until
from tests.taskqueue import sample_queues as q
from tests.taskqueue.conftest import status_counts

pytestmark = pytest.mark.slow


def unfinished() -> int:
    return Task.objects.filter(status__in=[Status.READY, Status.RUNNING]).count()


def test_four_processes_of_two_threads_run_5000_tasks_exactly_once(workers, record_file) -> None:
    ids = {info.id for info in q.RecordingQueue.add_tasks(range(5000))}
    for _ in range(4):
        workers.start("--queues", "recording", "--threads", "2")
    wait_until(lambda: unfinished() == 0, timeout=120, message="all 5000 tasks finished")

    runs = Counter(int(line.split()[0]) for line in recorded(record_file))
    assert set(runs) == ids
    assert max(runs.values()) == 1, f"tasks run twice: {[i for i, n in runs.items() if n > 1][:10]}"
    assert status_counts() == {Status.SUCCEEDED: 5000}
    pids = {line.split()[1] for line in recorded(record_file)}
    assert len(pids) > 1, "the work was shared between processes"


def test_a_task_of_a_worker_killed_mid_task_is_recovered_and_finished_by_another(
    workers, record_file
) -> None:
    info = q.HangOnceQueue.add_task(None)
    doomed = workers.start("--queues", "hang-once")
    wait_until(
        lambda: len(recorded(record_file)) == 1, timeout=20, message="the first attempt started"
    )
    survivor = workers.start("--queues", "hang-once")
    wait_until(
        lambda: WorkerProcess.objects.count() == 2,
        timeout=20,
        message="the second worker registered",
    )

    doomed.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(
        lambda: Task.objects.get(pk=info.id).status == Status.SUCCEEDED,
        timeout=20,
        message="recovered",
    )
    assert time.monotonic() - killed_at < 10

    task = Task.objects.get(pk=info.id)
    assert task.attempts == 2, "the crash counted as an attempt"
    assert (
        task.abandoned
        and task.errors[0]["abandoned"]
        and task.errors[0]["exc_class"] == "taskqueue.WorkerDied"
    )
    assert recorded(record_file)[-1].endswith(f"pid {survivor.pid}")


def test_a_task_that_kills_its_worker_every_time_fails_after_max_attempts(
    workers, record_file
) -> None:
    info = q.KillerQueue.add_task({"once": False})
    supervisor = workers.start("--queues", "killer", "--processes", "2")
    wait_until(
        lambda: Task.objects.get(pk=info.id).status == Status.FAILED,
        timeout=60,
        message="the task failed for good",
    )
    task = Task.objects.get(pk=info.id)
    assert task.attempts == q.KillerQueue.max_attempts == 3
    assert [error["abandoned"] for error in task.errors] == [True, True, True]
    assert len(recorded(record_file)) == 3
    assert supervisor.poll() is None, "the supervisor restarted its killed children and carries on"


def test_sigterm_during_a_long_task_puts_it_back_uncounted_and_exits_0(
    workers, record_file
) -> None:
    info = q.StoppableQueue.add_task(60.0)
    worker = workers.start("--queues", "slow")
    wait_until(
        lambda: any("started" in line for line in recorded(record_file)),
        timeout=20,
        message="task started",
    )

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert f"{info.id} stopped" in recorded(record_file)
    task = Task.objects.get(pk=info.id)
    assert (task.status, task.attempts, task.claimed_by_id) == (Status.READY, 0, None)
    assert not WorkerProcess.objects.exists(), "the worker deregistered"


def test_sigterm_when_idle_exits_at_once(workers) -> None:
    worker = workers.start("--queues", "nothing-here")
    wait_until(
        lambda: WorkerProcess.objects.count() == 1, timeout=20, message="the worker registered"
    )
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert time.monotonic() - asked < 2.5
    assert not WorkerProcess.objects.exists()


def test_an_idle_worker_picks_up_a_new_task_promptly(workers, record_file) -> None:
    workers.start("--queues", "recording", "--interval", "1")
    wait_until(
        lambda: WorkerProcess.objects.count() == 1, timeout=20, message="the worker registered"
    )
    time.sleep(0.5)
    q.RecordingQueue.add_task("hello")
    wait_until(lambda: len(recorded(record_file)) == 1, timeout=5, message="the task ran")


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="LISTEN/NOTIFY is PostgreSQL's")
def test_listen_notify_wakes_an_idle_worker_long_before_its_next_poll(workers, record_file) -> None:
    workers.start("--queues", "recording", "--interval", "30")
    wait_until(
        lambda: WorkerProcess.objects.count() == 1, timeout=20, message="the worker registered"
    )
    time.sleep(
        1.5
    )  # past its first (empty) poll: from now on only a notification wakes it within 30 s
    q.RecordingQueue.add_task("wake up")
    wait_until(
        lambda: len(recorded(record_file)) == 1,
        timeout=3,
        message="the notification woke the worker",
    )


def test_a_worker_group_runs_in_this_process_and_stop_waits_for_it(
    transactional_db, record_file
) -> None:
    from taskqueue import Worker, WorkerGroup

    group = WorkerGroup(
        [
            Worker(
                thread_name="python-1",
                sleep_seconds_when_empty=0.1,
                queue_classes=[q.RecordingQueue],
            ),
            Worker(thread_name="python-2", sleep_seconds_when_empty=0.1, queues=["recording"]),
        ],
        name="from-python",
    )
    group.start()
    q.RecordingQueue.add_tasks(range(50))
    wait_until(
        lambda: len(recorded(record_file)) == 50, timeout=20, message="the group ran the tasks"
    )
    assert WorkerProcess.objects.get().name == "from-python"
    group.stop()
    assert not group.is_alive() and not any(worker.is_alive() for worker in group.workers)
    assert not WorkerProcess.objects.exists()


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="LISTEN/NOTIFY is PostgreSQL's")
def test_tasks_enqueued_late_in_a_transaction_wake_the_worker_on_commit(
    workers, record_file
) -> None:
    from django.db import transaction

    workers.start("--queues", "recording", "--interval", "30")
    wait_until(
        lambda: WorkerProcess.objects.count() == 1, timeout=20, message="the worker registered"
    )
    time.sleep(1.5)
    with transaction.atomic():
        time.sleep(0.3)  # the transaction began well before the tasks are stamped
        q.RecordingQueue.add_tasks(["bulk-1", "bulk-2"])
        q.RecordingQueue.add_task("single")
    wait_until(
        lambda: len(recorded(record_file)) == 3, timeout=3, message="the commit woke the worker"
    )


def test_a_worker_started_on_its_own_runs_tasks_and_stops(transactional_db, record_file) -> None:
    from taskqueue import Worker

    worker = Worker(thread_name="alone", sleep_seconds_when_empty=0.1, queues=["recording"])
    worker.start()
    q.RecordingQueue.add_tasks(range(10))
    wait_until(
        lambda: len(recorded(record_file)) == 10,
        timeout=20,
        message="the lone worker ran the tasks",
    )
    assert WorkerProcess.objects.count() == 1
    worker.stop()
    assert not worker.is_alive()
    wait_until(
        lambda: not WorkerProcess.objects.exists(),
        timeout=10,
        message="its process row was removed",
    )
