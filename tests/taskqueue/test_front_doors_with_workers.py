"""All three front doors through real worker processes: one worker runs every kind of task."""

from __future__ import annotations

import pytest
from django.tasks import TaskResultStatus

from taskqueue.celery import AsyncResult, states
from taskqueue.models import Status, Task
from tests.conftest import recorded, wait_until
from tests.taskqueue import sample_celery as c
from tests.taskqueue import sample_queues as q
from tests.taskqueue import sample_tasks as t

pytestmark = pytest.mark.slow


def finished(task_id: int | str) -> bool:
    return Task.objects.get(pk=int(task_id)).status in (
        Status.SUCCEEDED,
        Status.FAILED,
        Status.CANCELLED,
    )


def test_one_worker_runs_all_three_kinds_of_task(workers, record_file, tmp_path) -> None:
    django_ok = t.add.enqueue(20, 22)
    django_failure = t.fail.enqueue("broken")
    django_retried = t.flaky.enqueue(str(tmp_path / "flaky"), failures=2)
    celery_ok = c.multiply.delay(6, 7)
    queue_ok = q.RecordingQueue.add_task("queue class")
    workers.start("--queues", "*", "--threads", "2")
    ids = [django_ok.id, django_failure.id, django_retried.id, celery_ok.id, queue_ok.id]
    wait_until(lambda: all(finished(i) for i in ids), timeout=30, message="every task finished")

    ok = t.add.get_result(django_ok.id)
    assert (ok.status, ok.return_value, ok.attempts) == (TaskResultStatus.SUCCESSFUL, 42, 1)
    assert ok.worker_ids[0].startswith("worker (")
    failure = t.fail.get_result(django_failure.id)
    assert (
        failure.status == TaskResultStatus.FAILED
        and "ValueError: broken" in failure.errors[0].traceback
    )
    retried = t.flaky.get_result(django_retried.id)
    assert (retried.status, retried.return_value, retried.attempts) == (
        TaskResultStatus.SUCCESSFUL,
        3,
        3,
    )
    assert celery_ok.get(timeout=5) == 42
    assert any(line.endswith("queue class") for line in recorded(record_file))


def test_revoking_a_running_celery_task_stops_it(workers, record_file) -> None:
    result = c.long_running.delay(60)
    workers.start("--queues", "default")
    wait_until(
        lambda: "long_running started" in recorded(record_file),
        timeout=20,
        message="the task started",
    )
    AsyncResult(result.id).revoke()
    wait_until(
        lambda: result.status == states.REVOKED, timeout=10, message="the revoke reached the task"
    )
    assert "long_running stopped" in recorded(record_file)


def test_a_revoked_waiting_task_never_starts(workers, record_file) -> None:
    result = c.multiply.delay(2, 2)
    AsyncResult(result.id).revoke()
    after = c.multiply.delay(3, 3)
    workers.start("--queues", "default")
    wait_until(lambda: finished(after.id), timeout=20, message="later work ran")
    assert result.status == states.REVOKED
    assert recorded(record_file) == ["multiply 3 3"]
