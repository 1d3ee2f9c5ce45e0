"""A task of any front door that raises Stopped after stop_requested() ends as the reason for the
stop says."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.tasks.signals import task_finished

from taskqueue.engine.executors import TaskControl
from taskqueue.models import Status, Task
from tests.taskqueue import sample_celery as c
from tests.taskqueue import sample_queues as q
from tests.taskqueue import sample_tasks as t

STOPS_WHEN_ASKED: dict[str, Callable[[], int]] = {
    "queue class": lambda: q.StopsWhenAskedQueue.add_task(None).id,
    "django.tasks": lambda: int(t.stops_when_asked.enqueue().id),
    "celery-style": lambda: int(c.stops_when_asked.delay().id),
}
RAISES_STOPPED_UNASKED: dict[str, Callable[[], int]] = {
    "queue class": lambda: q.RaisesStoppedQueue.add_task(None).id,
    "django.tasks": lambda: int(t.raises_stopped.enqueue().id),
    "celery-style": lambda: int(c.raises_stopped.delay().id),
}


@pytest.fixture(params=STOPS_WHEN_ASKED)
def task_id(request, db) -> int:
    return STOPS_WHEN_ASKED[request.param]()


def control(*, cancelled: bool = False, worker_stopping: bool = False) -> TaskControl:
    result = TaskControl(threading.Event(), "test")
    if cancelled:
        result.cancelled.set()
    if worker_stopping:
        result.worker_stopping.set()
    return result


@pytest.mark.parametrize("worker_stopping", [False, True], ids=["running", "worker-stopping-too"])
def test_a_cancelled_task_that_raises_stopped_ends_cancelled(
    task_id, drain, worker_stopping
) -> None:
    drain(control=control(cancelled=True, worker_stopping=worker_stopping))

    task = Task.objects.get(pk=task_id)
    assert task.status == Status.CANCELLED and task.errors == [] and task.finished_at is not None


def test_a_task_stopped_by_its_worker_shutting_down_waits_to_run_again_with_its_attempt_uncounted(
    task_id, drain
) -> None:
    drain(control=control(worker_stopping=True))
    task = Task.objects.get(pk=task_id)
    assert task.status == Status.READY and task.attempts == 0

    drain()  # the next worker runs it to the end
    assert Task.objects.get(pk=task_id).status == Status.SUCCEEDED


def test_a_cancel_that_reached_the_task_row_but_not_its_worker_still_cancels_it(
    task_id, drain
) -> None:
    Task.objects.filter(pk=task_id).update(
        cancel_requested=True
    )  # as `cancel` leaves a running task
    drain(control=control(worker_stopping=True))  # the worker stopped before passing the cancel on

    task = Task.objects.get(pk=task_id)
    assert task.status == Status.CANCELLED and task.finished_at is not None


@pytest.mark.parametrize("enqueue", RAISES_STOPPED_UNASKED.values(), ids=RAISES_STOPPED_UNASKED)
def test_stopped_raised_with_no_stop_requested_is_an_error_like_any_other(
    db, drain, enqueue
) -> None:
    task_id = enqueue()
    drain()

    task = Task.objects.get(pk=task_id)
    assert task.status == Status.FAILED
    assert task.last_error["exc_class"] == "taskqueue.exceptions.Stopped"


def test_a_django_task_cancelled_this_way_still_sends_task_finished(db, drain) -> None:
    finished = []

    def receiver(sender, task_result, **kwargs) -> None:
        finished.append(task_result.id)

    task_finished.connect(receiver)
    try:
        result = t.stops_when_asked.enqueue()
        drain(control=control(cancelled=True))
    finally:
        task_finished.disconnect(receiver)
    assert finished == [result.id]
