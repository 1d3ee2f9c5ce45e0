"""A task of any front door that raises Stopped after stop_requested() ends as the reason for the stop says."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from taskqueue.engine.running import TaskControl
from taskqueue.models import Status, Task
from tests.taskqueue import sample_celery as c
from tests.taskqueue import sample_queues as q
from tests.taskqueue import sample_tasks as t

ENQUEUE: dict[str, Callable[[], int]] = {
    "queue class": lambda: q.StopsWhenAskedQueue.add_task(None).id,
    "django.tasks": lambda: int(t.stops_when_asked.enqueue().id),
    "celery-style": lambda: int(c.stops_when_asked.delay().id),
}


@pytest.fixture(params=ENQUEUE)
def task_id(request, db) -> int:
    return ENQUEUE[request.param]()


def control(*, cancelled: bool = False, worker_stopping: bool = False) -> TaskControl:
    result = TaskControl(threading.Event(), "test")
    if cancelled:
        result.cancelled.set()
    if worker_stopping:
        result.worker_stopping.set()
    return result


def test_a_cancelled_task_that_raises_stopped_ends_cancelled(task_id, drain) -> None:
    drain(control=control(cancelled=True))

    task = Task.objects.get(pk=task_id)
    assert task.status == Status.CANCELLED and task.errors == []


def test_a_task_stopped_by_its_worker_shutting_down_waits_to_run_again_with_its_attempt_uncounted(
    task_id, drain
) -> None:
    drain(control=control(worker_stopping=True))
    task = Task.objects.get(pk=task_id)
    assert task.status == Status.READY and task.attempts == 0

    drain()  # the next worker runs it to the end
    assert Task.objects.get(pk=task_id).status == Status.SUCCEEDED


def test_stopped_raised_with_no_stop_requested_fails_the_task(db, drain) -> None:
    info = q.RaisesStoppedQueue.add_task(None)
    drain()

    task = Task.objects.get(pk=info.id)
    assert task.status == Status.FAILED
    assert task.last_error["exc_class"] == "taskqueue.exceptions.Stopped"
