"""Every engine state has a name at every front door: reading a task never fails on a state it did
not know.

The tests go over `Status` itself, so a state added to the engine fails here until each door names
it.
"""

from __future__ import annotations

import pytest
from django.tasks import TaskResultStatus

from taskqueue import backend
from taskqueue.celery import AsyncResult, TaskFailed, states
from taskqueue.models import FINISHED, Status, Task
from tests.taskqueue.sample_limits import celery_echo, echo

pytestmark = pytest.mark.django_db

DJANGO_STATUS = {
    Status.READY: TaskResultStatus.READY,
    Status.BLOCKED: TaskResultStatus.READY,
    Status.RUNNING: TaskResultStatus.RUNNING,
    Status.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    Status.FAILED: TaskResultStatus.FAILED,
    Status.CANCELLED: TaskResultStatus.FAILED,
}
CELERY_STATE = {
    Status.READY: states.PENDING,
    Status.BLOCKED: states.PENDING,
    Status.RUNNING: states.STARTED,
    Status.SUCCEEDED: states.SUCCESS,
    Status.FAILED: states.FAILURE,
    Status.CANCELLED: states.REVOKED,
}


def test_each_door_names_every_state() -> None:
    assert set(backend.STATUSES) == set(Status) == set(DJANGO_STATUS)
    assert set(AsyncResult.STATES) == set(Status) == set(CELERY_STATE)


@pytest.mark.parametrize("status", list(Status))
def test_django_tasks_get_result_and_refresh(status: Status) -> None:
    result = echo.enqueue(1)
    Task.objects.filter(pk=int(result.id)).update(status=status)
    assert echo.get_result(result.id).status == DJANGO_STATUS[status]
    result.refresh()
    assert result.status == DJANGO_STATUS[status]
    assert result.is_finished == (status in FINISHED)


@pytest.mark.parametrize("status", list(Status))
def test_celery_status_and_get(status: Status) -> None:
    result = celery_echo.delay(1)
    Task.objects.filter(pk=int(result.id)).update(status=status)
    assert result.status == result.state == CELERY_STATE[status]
    assert result.ready() == (status in FINISHED)
    if status in FINISHED:
        try:
            result.get(timeout=1)
        except TaskFailed:
            assert status == Status.FAILED
    else:
        with pytest.raises(TimeoutError):
            result.get(timeout=0.05, interval=0.01)


@pytest.mark.parametrize("status", [Status.READY, Status.BLOCKED])
def test_a_waiting_celery_task_with_errors_is_waiting_for_a_retry(status: Status) -> None:
    result = celery_echo.delay(1)
    Task.objects.filter(pk=int(result.id)).update(
        status=status, errors=[{"exc_class": "builtins.OSError"}]
    )
    assert result.status == states.RETRY
