"""One run policy for every front door: the engine, not the door, turns a return, an error or a stop
into the outcome, so the three doors agree on each case."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from taskqueue.engine.executors import TaskControl
from taskqueue.models import Status, Task
from tests.taskqueue import sample_celery as c
from tests.taskqueue import sample_queues as q
from tests.taskqueue import sample_tasks as t

pytestmark = pytest.mark.django_db

# A task of each door that ignores stop requests and completes.
COMPLETES: dict[str, Callable[[], int]] = {
    "queue class": lambda: q.NoOpQueue.add_task(None).id,
    "django.tasks": lambda: int(t.noop.enqueue().id),
    "celery-style": lambda: int(c.ship.delay(1).id),
}
# Paths a row of each door could name that no front door declared, or another door did.
OTHER_DOORS_TASK = {
    "queue class": "tests.taskqueue.sample_celery.ship",
    "django.tasks": "tests.taskqueue.sample_queues.NoOpQueue",
    "celery-style": "tests.taskqueue.sample_tasks.noop",
}


def cancelled_control() -> TaskControl:
    control = TaskControl(threading.Event(), "test")
    control.cancelled.set()
    return control


@pytest.mark.parametrize("door", COMPLETES)
def test_work_that_completes_after_a_cancel_is_a_success_on_every_door(drain, door: str) -> None:
    task_id = COMPLETES[door]()
    drain(control=cancelled_control())
    assert Task.objects.get(pk=task_id).status == Status.SUCCEEDED


@pytest.mark.parametrize("door", COMPLETES)
@pytest.mark.parametrize(
    "path", ["no.such.module.Task", "tests.taskqueue.sample_queues.record", "wrong door"]
)
def test_a_task_that_cannot_be_run_fails_with_one_error_class_on_every_door(
    drain, door: str, path: str
) -> None:
    task_id = COMPLETES[door]()
    path = OTHER_DOORS_TASK[door] if path == "wrong door" else path
    Task.objects.filter(pk=task_id).update(task_path=path)
    drain()
    task = Task.objects.get(pk=task_id)
    assert (task.status, task.attempts) == (Status.FAILED, 1)
    assert task.last_error["exc_class"] == "taskqueue.exceptions.UndeclaredTask"
    assert task.last_error["message"].startswith(path)


def retryable_failures(door: str, tmp_path: Path) -> int:
    """A task that fails with a retryable ConnectionError on every attempt (of 3 or more
    allowed)."""
    path = str(tmp_path / "runs")
    return {
        "queue class": lambda: q.FlakyQueue.add_task(99).id,
        "django.tasks": lambda: int(t.flaky.enqueue(path, 99).id),
        "celery-style": lambda: int(c.unreliable.delay(path, 99).id),
    }[door]()


@pytest.mark.parametrize("door", COMPLETES)
def test_retries_stop_at_the_attempts_stored_with_the_task_on_every_door(
    drain, door: str, tmp_path: Path
) -> None:
    task_id = retryable_failures(door, tmp_path)
    Task.objects.filter(pk=task_id).update(max_attempts=2)  # as enqueued by an older release, say
    while drain():
        pass
    task = Task.objects.get(pk=task_id)
    assert (task.status, task.attempts, len(task.errors)) == (Status.FAILED, 2, 2)
    assert {error["exc_class"] for error in task.errors} == {"builtins.ConnectionError"}
