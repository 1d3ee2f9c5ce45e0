"""task_ended: one signal for every way a task ends, sent once the ending is stored, from every
door."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from taskqueue import cancel
from taskqueue.engine.executors import TaskControl
from taskqueue.models import Status, Task
from taskqueue.signals import task_ended
from taskqueue.testing import run_pending
from tests.conftest import recorded, wait_until
from tests.taskqueue import sample_celery as c
from tests.taskqueue import sample_queues as q
from tests.taskqueue import sample_tasks as t
from tests.taskqueue.test_liveness import a_worker, dead_pid, me, running_task

__all__ = ["dead_pid", "me"]  # fixtures


@pytest.fixture
def endings() -> Iterator[list[dict]]:
    """Each task_ended as received, with the row's state as a reader saw it at that moment."""
    received: list[dict] = []

    def receiver(sender, task_id, kind, task_path, state, outcome, **kwargs) -> None:
        row = Task.objects.filter(pk=task_id).values_list("status", flat=True).first()
        received.append(
            {
                "id": task_id,
                "kind": kind,
                "path": task_path,
                "state": state,
                "outcome": outcome,
                "stored": row,
            }
        )

    task_ended.connect(receiver, dispatch_uid="test_task_ended")
    yield received
    task_ended.disconnect(dispatch_uid="test_task_ended")


def ended(endings: list[dict], task_id: int) -> tuple[str, str, str | None]:
    [ending] = [e for e in endings if e["id"] == task_id]
    return ending["state"], ending["outcome"], ending["stored"]


@pytest.mark.django_db
def test_every_door_tells_a_success_and_a_failure_once_they_are_stored(endings) -> None:
    ids = {
        "queue ok": q.NoOpQueue.add_task(None).id,
        "queue failed": q.FailingQueue.add_task("no").id,
        "django ok": int(t.add.enqueue(1, 2).id),
        "django failed": int(t.fail.enqueue("no").id),
        "celery ok": int(c.ship.delay(1).id),
        "celery failed": int(c.explode.delay("no").id),
    }
    run_pending()
    for name, task_id in ids.items():
        state = "succeeded" if name.endswith("ok") else "failed"
        assert ended(endings, task_id) == (state, state, state), name
    assert {e["kind"] for e in endings} == {"queue", "django", "celery"}
    assert len(endings) == len(ids)


@pytest.mark.django_db
def test_a_retry_is_no_ending(endings, tmp_path) -> None:
    info = q.RetryingQueue.add_task({"dir": str(tmp_path), "runs": 2, "counted": True})
    run_pending()
    assert [e["state"] for e in endings] == ["succeeded"] and endings[0]["id"] == info.id


@pytest.mark.django_db
def test_a_running_task_that_stops_when_cancelled_ends_cancelled(endings) -> None:
    info = q.StopsWhenAskedQueue.add_task(None)
    control = TaskControl(threading.Event(), "test")
    control.cancelled.set()
    run_pending(control=control)
    assert ended(endings, info.id) == ("cancelled", "cancelled", "cancelled")


@pytest.mark.django_db
def test_cancelling_waiting_tasks_tells_each_once_the_cancel_commits(
    endings, django_capture_on_commit_callbacks
):
    waiting = [q.NoOpQueue.add_task(None).id, int(t.add.enqueue(1, 1).id)]
    running = running_task(a_worker(pid=1))
    with django_capture_on_commit_callbacks(execute=True):
        cancel([*waiting, running.pk])
        assert endings == [], "not before the commit"
    assert [ended(endings, task_id) for task_id in waiting] == [
        ("cancelled", "cancelled", "cancelled")
    ] * 2
    assert running.pk not in {e["id"] for e in endings}, (
        "a running task ends when it stops, not now"
    )


@pytest.mark.django_db
def test_a_task_its_concurrency_rule_discards_ends_discarded(
    endings, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        kept = q.SingletonQueue.add_task(None).id
        discarded = q.SingletonQueue.add_task(None).id
    assert ended(endings, discarded) == ("cancelled", "discarded", "cancelled")
    assert kept not in {e["id"] for e in endings}


@pytest.mark.django_db
def test_a_task_the_recovery_fails_ends_abandoned(endings, me, dead_pid) -> None:
    spent = running_task(a_worker(dead_pid), q.KillerQueue, attempts=q.KillerQueue.max_attempts)
    again = running_task(a_worker(dead_pid))  # attempts left: back to the queue, no ending
    me.recover()
    assert ended(endings, spent.pk) == ("failed", "abandoned", "failed")
    assert again.pk not in {e["id"] for e in endings}


@pytest.mark.django_db
def test_a_receiver_that_raises_harms_neither_the_others_nor_the_worker(endings, caplog) -> None:
    def broken(**kwargs) -> None:
        raise RuntimeError("receiver bug")

    task_ended.connect(broken, dispatch_uid="broken")
    try:
        first, second = q.NoOpQueue.add_task(None).id, q.NoOpQueue.add_task(None).id
        assert [run.state for run in run_pending()] == ["succeeded", "succeeded"]
    finally:
        task_ended.disconnect(dispatch_uid="broken")
    assert {e["id"] for e in endings} == {first, second}
    assert "task_ended receiver" in caplog.text and "receiver bug" in caplog.text


def test_a_worker_process_tells_its_endings(workers, record_file) -> None:
    ok, failed = q.RecordingQueue.add_task("x").id, q.FailingQueue.add_task("no").id
    workers.start("--queues", "recording,failing", "--interval", "0.2", TEST_RECORD_ENDINGS="1")
    wait_until(
        lambda: sum(line.startswith("ended") for line in recorded(record_file)) == 2,
        timeout=30,
        message="both endings were told",
    )
    lines = {
        line.split()[1]: line.split()[2:5]
        for line in recorded(record_file)
        if line.startswith("ended")
    }
    assert lines == {
        str(ok): ["queue", "succeeded", "succeeded"],
        str(failed): ["queue", "failed", "failed"],
    }
    assert Task.objects.get(pk=ok).status == Status.SUCCEEDED
