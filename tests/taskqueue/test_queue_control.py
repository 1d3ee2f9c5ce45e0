"""QueueInfo: size, latency, pause, resume and clear; a paused queue keeps its tasks."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from taskqueue import QueueInfo
from taskqueue.control import queue_names
from taskqueue.models import Status, Task, WorkerProcess
from tests.conftest import recorded, wait_until
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.django_db


def test_size_counts_waiting_tasks_and_latency_is_the_oldest_due_wait() -> None:
    info = QueueInfo("recording")
    assert (info.size, info.latency, info.paused) == (0, timedelta(0), False)
    q.RecordingQueue.add_task("now")
    q.RecordingQueue.add_task("later", first_attempt_datetime=timezone.now() + timedelta(hours=1))
    Task.objects.filter(note="", payload={"arg": "now"}).update(
        run_at=timezone.now() - timedelta(minutes=5)
    )
    assert info.size == 2
    assert timedelta(minutes=5) <= info.latency < timedelta(minutes=6)


def test_a_paused_queue_is_not_claimed_until_resumed(drain, record_file) -> None:
    q.RecordingQueue.add_task("waits")
    q.NoOpQueue.add_task(None)
    QueueInfo("recording").pause()
    assert QueueInfo("recording").paused
    assert drain() == 1, "other queues go on"
    assert QueueInfo("recording").size == 1 and recorded(record_file) == []
    QueueInfo("recording").resume()
    assert drain() == 1 and recorded(record_file)[0].endswith("waits")


def test_pausing_twice_and_resuming_an_unpaused_queue_are_harmless() -> None:
    QueueInfo("x").pause()
    QueueInfo("x").pause()
    QueueInfo("y").resume()
    assert QueueInfo("x").paused and not QueueInfo("y").paused


def test_clear_deletes_only_waiting_tasks_of_that_queue(drain) -> None:
    q.FailingQueue.add_task("kept: finished")
    drain()
    for _ in range(3):
        q.FailingQueue.add_task("cleared")
    running = q.FailingQueue.add_task("kept: running")
    Task.objects.filter(pk=running.id).update(status=Status.RUNNING)
    q.NoOpQueue.add_task(None)
    assert QueueInfo("failing").clear() == 3
    assert Task.objects.filter(queue_name="failing").count() == 2
    assert QueueInfo("noop").size == 1


def test_queue_names_lists_active_and_paused_queues(drain) -> None:
    q.NoOpQueue.add_task(None)
    QueueInfo("quiet").pause()
    assert queue_names() == ["noop", "quiet"]


@pytest.mark.slow
def test_a_running_worker_leaves_a_paused_queue_alone(workers, record_file) -> None:
    QueueInfo("recording").pause()
    q.RecordingQueue.add_tasks(["a", "b"])
    workers.start("--queues", "recording", "--interval", "0.2")
    wait_until(
        lambda: WorkerProcess.objects.count() == 1, timeout=20, message="the worker registered"
    )
    q.NoOpQueue.add_task(None)
    time.sleep(1.5)
    assert recorded(record_file) == [] and QueueInfo("recording").size == 2
    QueueInfo("recording").resume()
    wait_until(lambda: len(recorded(record_file)) == 2, timeout=10, message="resumed work ran")
