"""taskqueue.testing, the helpers shipped to users: run what is waiting in process, find what was
enqueued, on every front door; and `taskqueue_worker --burst`."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from taskqueue import recurring
from taskqueue.models import Status, Task, WorkerProcess
from taskqueue.testing import TaskRun, assert_enqueued, assert_not_enqueued, enqueued, run_pending
from tests.conftest import PROJECT, recorded
from tests.taskqueue import sample_celery as c
from tests.taskqueue import sample_queues as q
from tests.taskqueue import sample_tasks as t


@pytest.mark.django_db
def test_run_pending_runs_every_door_through_the_worker_path_and_says_what_became_of_each() -> None:
    ok = q.NoOpQueue.add_task(None).id
    add = int(t.add.enqueue(2, 3).id)
    multiply = int(c.multiply.delay(4, 5).id)
    failed = q.FailingQueue.add_task("boom").id
    runs = {run.id: run for run in run_pending()}
    assert runs[ok] == TaskRun(ok, "tests.taskqueue.sample_queues.NoOpQueue", "succeeded")
    assert (runs[add].state, runs[add].return_value) == ("succeeded", 5)
    assert (runs[multiply].state, runs[multiply].return_value) == ("succeeded", 20)
    assert runs[failed].state == "failed" and "boom" in runs[failed].error
    assert not WorkerProcess.objects.exists(), "its worker row goes when it is done"
    assert run_pending() == []


@pytest.mark.django_db
def test_run_pending_takes_only_the_selected_queues_and_due_tasks_unless_told() -> None:
    email = q.RecordingQueue.add_task("now").id
    later = q.NoOpQueue.add_task(None, first_attempt_datetime=timezone.now() + timedelta(days=1)).id
    assert [run.id for run in run_pending(queues=["noop"])] == []
    assert [run.id for run in run_pending(queues=["rec*"])] == [email]
    assert [run.id for run in run_pending(queues=["noop"], include_scheduled=True)] == [later]


@pytest.mark.django_db
def test_run_pending_runs_retries_that_wait_for_nothing_and_stops_a_loop(tmp_path) -> None:
    info = q.RetryingQueue.add_task({"dir": str(tmp_path), "runs": 3, "counted": False})
    assert [run.state for run in run_pending()] == ["retry", "retry", "succeeded"]
    q.LaterQueue.add_task(None)  # retries ten minutes later, forever
    assert [run.state for run in run_pending()] == ["retry"]
    with pytest.raises(AssertionError, match="a retry loop"):
        run_pending(include_scheduled=True, max_runs=5)
    assert Task.objects.get(pk=info.id).status == Status.SUCCEEDED


@pytest.mark.django_db
def test_enqueued_finds_waiting_tasks_of_every_door_by_their_arguments() -> None:
    q.PersonQueue.add_task(q.Person("Ada", 36))
    t.add.enqueue(2, 3)
    t.add.using(queue_name="special").enqueue(2, 4)
    c.notify.delay(7, channel="sms")
    assert [row.payload for row in enqueued(q.PersonQueue, arg=q.Person("Ada", 36))] == [
        {"arg": {"name": "Ada", "age": 36}}
    ]
    assert enqueued(q.PersonQueue, arg=q.Person("Ada", 37)) == []
    assert len(enqueued(t.add)) == 2 and len(enqueued(t.add, args=(2, 3))) == 1
    assert len(enqueued(t.add, queue_name="special")) == 1
    assert len(enqueued("tests.taskqueue.sample_tasks.add", args=[2, 4])) == 1
    assert_enqueued(c.notify, count=1, args=[7], kwargs={"channel": "sms"})
    assert_not_enqueued(c.notify, kwargs={"channel": "email"})
    run_pending()
    assert_not_enqueued(t.add)
    assert len(enqueued(t.add, status=Status.SUCCEEDED)) == 2


@pytest.mark.django_db
def test_assertions_fail_saying_what_is_waiting_instead() -> None:
    t.add.enqueue(1, 1)
    with pytest.raises(
        AssertionError, match=r"Expected 2 waiting task\(s\) of tests.taskqueue.sample_tasks.add"
    ):
        assert_enqueued(t.add, count=2)
    with pytest.raises(AssertionError, match=r"found 0\. Waiting: #\d+ default \{'args': \[1, 1\]"):
        assert_enqueued(t.add, args=[9, 9])
    with pytest.raises(AssertionError, match="Expected no waiting task"):
        assert_not_enqueued(t.add, args=[1, 1])
    with pytest.raises(TypeError, match="no queue class"):
        enqueued(42)


def test_the_fixture_gives_the_helpers(task_queue) -> None:
    t.add.enqueue(1, 2)
    task_queue.assert_enqueued(t.add, count=1)
    assert [run.return_value for run in task_queue.run_pending()] == [3]


@pytest.mark.slow
def test_the_fixture_loads_as_a_pytest_plugin(tmp_path) -> None:
    test = tmp_path / "test_plugin_use.py"
    test.write_text(
        "from tests.taskqueue import sample_tasks as t\n\n"
        "def test_it(task_queue):\n"
        "    t.add.enqueue(20, 22)\n"
        "    assert [run.return_value for run in task_queue.run_pending()] == [42]\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "taskqueue.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "-q",
            str(test),
            "--rootdir",
            str(PROJECT),
            "-c",
            str(PROJECT / "pyproject.toml"),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_a_burst_worker_runs_what_is_due_then_exits_0(workers, record_file) -> None:
    ids = {info.id for info in q.RecordingQueue.add_tasks(range(30))}
    later = q.RecordingQueue.add_task(
        "tomorrow", first_attempt_datetime=timezone.now() + timedelta(days=1)
    )
    recurring.schedule_recurring(
        "every-second", "tests.taskqueue.sample_queues.NoOpQueue", "* * * * * *"
    )
    started = time.monotonic()
    worker = workers.start("--burst", "--threads", "2", "--interval", "30")
    assert worker.wait(timeout=60) == 0
    assert time.monotonic() - started < 30, "it did not wait for the idle poll"
    assert {int(line.split()[0]) for line in recorded(record_file)} == ids
    assert Task.objects.get(pk=later.id).status == Status.READY
    assert not Task.objects.filter(task_path="tests.taskqueue.sample_queues.NoOpQueue").exists(), (
        "no scheduler"
    )
    assert not WorkerProcess.objects.exists()


def test_a_burst_worker_with_nothing_due_exits_at_once(workers) -> None:
    worker = workers.start("--burst")
    assert worker.wait(timeout=30) == 0
