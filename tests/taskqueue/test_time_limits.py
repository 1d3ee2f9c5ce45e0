"""Time limits, soft and hard, with real worker processes: a task past its soft limit gets
TimeLimitExceeded; one that cannot be interrupted (blocked in C, swallowing exceptions) has its
worker process ended, the attempt recorded as timed out, and the process's other tasks put back
uncounted."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core import checks

from taskqueue import BaseQueue
from taskqueue.celery import shared_task
from taskqueue.exceptions import TaskQueueError
from taskqueue.models import Status, Task
from taskqueue.worker.timelimits import EXIT_TIME_LIMIT
from tests.conftest import recorded, wait_until
from tests.taskqueue import sample_queues as q
from tests.taskqueue import sample_timeouts as s

TIMED_OUT = "taskqueue.exceptions.TimeLimitExceeded"
GRACE = {"TASKQUEUE_TIMEOUT_GRACE": "1"}


def events(record_file: Path, task_id: int) -> list[str]:
    return [line.split()[1] for line in recorded(record_file) if line.split()[0] == str(task_id)]


def ended(task_id: int) -> bool:
    return Task.objects.get(pk=task_id).status in (
        Status.FAILED,
        Status.SUCCEEDED,
        Status.CANCELLED,
    )


@pytest.mark.parametrize(
    "enqueue",
    [lambda: s.Spins.add_task(None).id, lambda: int(s.django_spins.enqueue().id)],
    ids=["queue class", "django.tasks"],
)
def test_a_task_past_its_soft_limit_is_interrupted_and_its_worker_lives_on(
    workers, record_file, enqueue
) -> None:
    task_id = enqueue()
    worker = workers.start("--queues", "timeouts,recording", "--interval", "0.2", **GRACE)
    wait_until(lambda: ended(task_id), timeout=30, message="the task ended")
    task = Task.objects.get(pk=task_id)
    seen = (task.status, task.attempts, task.errors, recorded(record_file), workers.logs())
    assert (task.status, task.attempts, task.last_error["exc_class"]) == (
        Status.FAILED,
        1,
        TIMED_OUT,
    ), seen
    assert events(record_file, task_id) == ["start", "interrupted"], seen
    after = q.RecordingQueue.add_task("after")
    wait_until(lambda: ended(after.id), timeout=30, message="the worker ran the next task")
    [spun] = {line.split()[2] for line in recorded(record_file) if line.split()[1] == "start"}
    [ran] = {line.split()[1] for line in recorded(record_file) if line.endswith(" after")}
    assert worker.poll() is None and spun == ran, "the same process ran it: none was ended"


def test_a_celery_style_task_past_its_soft_time_limit_is_interrupted(workers, record_file) -> None:
    result = s.celery_spins.delay()
    workers.start("--queues", "timeouts", "--interval", "0.2", **GRACE)
    wait_until(lambda: ended(int(result.id)), timeout=30, message="the task ended")
    task = Task.objects.get(pk=int(result.id))
    assert (task.status, task.last_error["exc_class"]) == (Status.FAILED, TIMED_OUT)
    assert [line.split()[1] for line in recorded(record_file)] == ["start", "interrupted"]


def test_a_task_that_stops_when_asked_is_recorded_as_timed_out(workers, record_file) -> None:
    info = s.StopsWhenTimedOut.add_task(None)
    workers.start("--queues", "timeouts", "--interval", "0.2", **GRACE)
    wait_until(lambda: ended(info.id), timeout=30, message="the task ended")
    task = Task.objects.get(pk=info.id)
    assert (task.status, task.attempts, task.last_error["exc_class"]) == (
        Status.FAILED,
        1,
        TIMED_OUT,
    )
    assert events(record_file, info.id) == ["start", "stopping"]


def test_a_task_blocked_in_c_that_swallows_exceptions_has_its_process_ended(
    workers, record_file
) -> None:
    stuck = s.SleepsSwallowing.add_task(None)  # two attempts
    patient = s.Patient.add_task(None)
    first = workers.start(
        "--queues", "timeouts,patient", "--threads", "2", "--interval", "0.2", **GRACE
    )
    wait_until(
        lambda: "start" in events(record_file, patient.id), timeout=30, message="both tasks run"
    )
    assert first.wait(timeout=30) == EXIT_TIME_LIMIT
    task = Task.objects.get(pk=stuck.id)
    # Counted and retried by its rules (2 attempts), its error the time limit: not a crash, not
    # abandoned.
    assert (task.status, task.attempts, task.abandoned) == (Status.READY, 1, False)
    assert (
        task.errors[-1]["exc_class"] == TIMED_OUT
        and "hard time limit" in task.errors[-1]["message"]
    )
    other = Task.objects.get(pk=patient.id)
    assert (other.status, other.attempts, other.errors) == (Status.READY, 0, []), (
        "put back uncounted"
    )

    second = workers.start(
        "--queues", "timeouts", "--interval", "0.2", **GRACE
    )  # its supervisor's restart
    assert second.wait(timeout=30) == EXIT_TIME_LIMIT
    task.refresh_from_db()
    assert (task.status, task.attempts) == (Status.FAILED, 2)
    assert [error["exc_class"] for error in task.errors] == [TIMED_OUT, TIMED_OUT]


@pytest.fixture
def silent_peer() -> Iterator[int]:
    """A loopback server that accepts connections and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for connection in accepted:
        connection.close()
    server.close()


def test_a_task_blocked_in_a_socket_read_has_its_process_ended(
    workers, record_file, silent_peer
) -> None:
    info = s.ReadsForever.add_task({"port": silent_peer})
    worker = workers.start("--queues", "timeouts", "--interval", "0.2", **GRACE)
    assert worker.wait(timeout=30) == EXIT_TIME_LIMIT
    task = Task.objects.get(pk=info.id)
    assert (task.status, task.attempts, task.last_error["exc_class"]) == (
        Status.FAILED,
        1,
        TIMED_OUT,
    )


def test_a_default_timeout_holds_tasks_that_declare_none(workers, record_file) -> None:
    info = q.StoppableQueue.add_task(60.0)  # polls stop_requested(); declares no limit
    workers.start("--queues", "slow", "--interval", "0.2", TASKQUEUE_DEFAULT_TIMEOUT="0.5", **GRACE)
    wait_until(
        lambda: Task.objects.get(pk=info.id).errors, timeout=30, message="the attempt timed out"
    )
    assert Task.objects.get(pk=info.id).errors[-1]["exc_class"] == TIMED_OUT


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), "1"])
def test_time_limits_no_clock_can_keep_are_refused_at_definition(timeout: object) -> None:
    with pytest.raises(TaskQueueError, match="timeout must be None or positive seconds"):
        type("Limited", (BaseQueue,), {"timeout": timeout, "__module__": __name__})
    with pytest.raises(ValueError, match="soft_time_limit must be None or a positive number"):
        shared_task(soft_time_limit=timeout)(s.spin)
    with pytest.raises(ValueError, match="time_limit \\(hard\\) must be longer"):
        shared_task(soft_time_limit=5, time_limit=2)(s.spin)


@pytest.mark.django_db
def test_bad_default_timeouts_are_reported(settings) -> None:
    settings.TASKQUEUE = {"DEFAULT_TIMEOUT": -2, "TIMEOUT_GRACE": float("inf")}
    messages = [error.msg for error in checks.run_checks() if error.id == "taskqueue.E001"]
    assert any("DEFAULT_TIMEOUT" in message for message in messages)
    assert any("TIMEOUT_GRACE" in message for message in messages)


@pytest.mark.django_db
def test_the_admin_shows_a_timed_out_attempt_as_such(admin_client) -> None:
    info = q.NoOpQueue.add_task(None)
    entry = {
        "attempt": 1,
        "at": "2026-12-02T05:00:00+00:00",
        "worker": "w@h:1",
        "exc_class": TIMED_OUT,
        "message": "The task ran past its hard time limit",
        "traceback": "",
        "abandoned": False,
    }
    Task.objects.filter(pk=info.id).update(status=Status.FAILED, attempts=1, errors=[entry])
    page = admin_client.get(f"/admin/taskqueue/task/{info.id}/change/").text
    assert "Attempt 1 at 2026-12-02T05:00:00+00:00 on worker w@h:1 (timed out)" in page
    listing = admin_client.get("/admin/taskqueue/task/").text
    assert "TimeLimitExceeded: The task ran past its hard time limit" in listing
