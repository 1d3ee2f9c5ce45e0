"""Queue classes: add_task, arguments, dupe keys, ordering, Retry and failures, run through the
engine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from taskqueue import BaseQueue, DeserializationExc, DupeKeyExc, Retry, SerializationError, TaskInfo
from taskqueue.exceptions import TaskQueueError
from taskqueue.models import Status, Task
from tests.conftest import recorded
from tests.taskqueue import sample_queues as q

pytestmark = pytest.mark.django_db


def test_add_task_stores_a_ready_task_and_count_sees_it() -> None:
    info = q.NoOpQueue.add_task({"n": 1}, note="first")
    task = Task.objects.get(pk=info.id)
    assert (task.status, task.queue_name, task.task_path, task.note) == (
        Status.READY,
        "noop",
        "tests.taskqueue.sample_queues.NoOpQueue",
        "first",
    )
    assert info.get_arg() == {"n": 1}
    assert q.NoOpQueue.count() == 1


@pytest.mark.parametrize("bulk", [False, True], ids=["add_task", "add_tasks"])
def test_a_stored_task_carries_the_queue_class_defaults(bulk: bool) -> None:
    when = timezone.now() + timedelta(minutes=3)
    if bulk:
        q.KillerQueue.add_tasks([{"once": True}], note="n", priority=4, first_attempt_datetime=when)
    else:
        q.KillerQueue.add_task(
            {"once": True}, note="n", priority=4, first_attempt_datetime=when, dupe_key="k"
        )
    task = Task.objects.get()
    assert (task.kind, task.queue_name, task.status, task.note, task.priority, task.run_at) == (
        "queue",
        "killer",
        Status.READY,
        "n",
        4,
        when,
    )
    assert (
        task.attempts,
        task.max_attempts,
        task.retry_abandoned,
        task.abandoned,
        task.errors,
    ) == (
        0,
        3,
        True,
        False,
        [],
    )
    assert task.payload == {"arg": {"once": True}} and task.dupe_key == (None if bulk else "k")
    assert task.enqueued_at <= timezone.now() and not task.cancel_requested


def test_queue_name_defaults_to_the_class_path() -> None:
    class Plain(BaseQueue[int]):
        @classmethod
        def process(cls, task_info: TaskInfo[int]) -> Retry | None:
            return None

    assert (
        Plain.queue_name == f"{__name__}.test_queue_name_defaults_to_the_class_path.<locals>.Plain"
    )


def test_a_queue_class_workers_cannot_import_is_refused_at_add_task() -> None:
    class Local(BaseQueue[int]):
        queue_name = "local"

    with pytest.raises(TaskQueueError, match="module level"):
        Local.add_task(1)
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    "arg", [{1, 2}, (1, 2), {1: "non-string key"}, object(), float("nan"), b"bytes"], ids=repr
)
def test_arguments_that_do_not_round_trip_fail_at_add_task_and_store_nothing(arg) -> None:
    with pytest.raises(SerializationError):
        q.NoOpQueue.add_task(arg)
    assert not Task.objects.exists()


def test_dataclass_arguments_round_trip(drain, record_file) -> None:
    q.PersonQueue.add_task(q.Person("Ada", 36))
    assert Task.objects.get().payload == {"arg": {"name": "Ada", "age": 36}}
    drain("people")
    assert recorded(record_file) == ["Ada 36"]


def test_wrong_argument_type_for_a_dataclass_queue_is_refused() -> None:
    with pytest.raises(SerializationError, match="Expected a Person"):
        q.PersonQueue.add_task({"name": "Ada", "age": 36})
    assert not Task.objects.exists()


def test_pickle_only_when_the_queue_opts_in(drain, record_file) -> None:
    q.PickledQueue.add_task({1, 2, 3})
    assert "pickle" in Task.objects.get().payload
    drain("pickled")
    assert recorded(record_file) == ["{1, 2, 3}"]


def test_undecodable_payload_raises_deserialization_error_and_fails_the_task(drain) -> None:
    info = q.PersonQueue.add_task(q.Person("Ada", 36))
    Task.objects.filter(pk=info.id).update(payload={"arg": {"nickname": "x"}})
    with pytest.raises(DeserializationExc):
        TaskInfo(Task.objects.get(pk=info.id), q.PersonQueue).get_arg()  # type: ignore[arg-type]
    drain("people")
    task = Task.objects.get(pk=info.id)
    assert task.status == Status.FAILED
    assert task.last_error["exc_class"] == "taskqueue.exceptions.DeserializationExc"


def test_dupe_key_is_refused_while_the_task_is_unfinished_and_free_after(drain) -> None:
    q.NoOpQueue.add_task(None, dupe_key="nightly")
    with pytest.raises(DupeKeyExc, match="nightly"):
        q.NoOpQueue.add_task(None, dupe_key="nightly")
    q.RecordingQueue.add_task(None, dupe_key="nightly")  # another queue: no clash
    assert Task.objects.count() == 2
    drain("noop")
    q.NoOpQueue.add_task(None, dupe_key="nightly")  # the first one finished
    assert Task.objects.filter(dupe_key="nightly").count() == 3


def test_claim_order_is_priority_then_run_time_then_fifo(drain, record_file) -> None:
    past = timezone.now() - timedelta(minutes=5)
    q.RecordingQueue.add_task("low")
    q.RecordingQueue.add_task("high", priority=10)
    q.RecordingQueue.add_task("fifo-1")
    q.RecordingQueue.add_task("fifo-2")
    q.RecordingQueue.add_task("older", first_attempt_datetime=past)
    drain("recording", batch=1)
    assert [line.split()[-1] for line in recorded(record_file)] == [
        "high",
        "older",
        "low",
        "fifo-1",
        "fifo-2",
    ]


def test_a_batch_starts_its_tasks_in_claim_order(drain, record_file) -> None:
    """Within one claimed batch too: a task enqueued first but due later starts after one due
    earlier."""
    now = timezone.now()
    q.RecordingQueue.add_task("due-second", first_attempt_datetime=now - timedelta(minutes=1))
    q.RecordingQueue.add_task("due-first", first_attempt_datetime=now - timedelta(minutes=5))
    q.RecordingQueue.add_task("urgent", priority=10)
    drain("recording", batch=10)
    assert [line.split()[-1] for line in recorded(record_file)] == [
        "urgent",
        "due-first",
        "due-second",
    ]


def test_scheduled_tasks_wait_for_their_time(drain, record_file) -> None:
    q.RecordingQueue.add_task("later", first_attempt_datetime=timezone.now() + timedelta(hours=1))
    assert drain("recording") == 0
    assert q.RecordingQueue.count() == 1


def test_selectors_claim_in_order_and_by_prefix(drain) -> None:
    first = q.NoOpQueue.add_task(None)
    second = q.RecordingQueue.add_task(None, priority=100)
    drain("noop", "recording", batch=1)
    finished = Task.objects.order_by("finished_at", "id").values_list("id", flat=True)
    assert list(finished) == [first.id, second.id], "selector order beats priority"
    q.RecordingQueue.add_task(None)
    q.NoOpQueue.add_task(None)
    assert drain("rec*") == 1
    assert Task.objects.filter(status=Status.READY).get().queue_name == "noop"


def test_retry_counting_and_not_counting_attempts(drain, record_file, tmp_path) -> None:
    counted = q.RetryingQueue.add_task({"runs": 3, "counted": True, "dir": str(tmp_path)})
    uncounted = q.RetryingQueue.add_task({"runs": 3, "counted": False, "dir": str(tmp_path)})
    for _ in range(3):
        drain("retrying")
    assert Task.objects.get(pk=counted.id).attempts == 3
    assert Task.objects.get(pk=uncounted.id).attempts == 1
    lines = recorded(record_file)
    assert [line.split()[1] for line in lines if line.startswith(f"{counted.id} ")] == [
        "attempt_count=0",
        "attempt_count=1",
        "attempt_count=2",
    ]
    assert all(line.endswith("=0") for line in lines if line.startswith(f"{uncounted.id} "))
    assert Task.objects.filter(status=Status.SUCCEEDED).count() == 2


def test_retry_with_a_time_waits_until_then(drain) -> None:
    q.LaterQueue.add_task(None)
    drain("later")
    task = Task.objects.get()
    assert task.status == Status.READY and task.run_at > timezone.now() + timedelta(minutes=9)
    assert drain("later") == 0


def test_an_exception_fails_the_task_with_class_message_and_traceback(drain) -> None:
    info = q.FailingQueue.add_task("card declined")
    drain("failing")
    task = Task.objects.get(pk=info.id)
    assert task.status == Status.FAILED and task.finished_at is not None
    error = task.last_error
    assert error["exc_class"] == "builtins.ValueError"
    assert error["message"] == "card declined"
    assert (
        "sample_queues.py" in error["traceback"]
        and "ValueError: card declined" in error["traceback"]
    )


def test_a_20_kilobyte_traceback_is_stored_whole(drain) -> None:
    info = q.DeepFailureQueue.add_task(150)
    drain("failing")
    traceback = Task.objects.get(pk=info.id).last_error["traceback"]
    assert len(traceback) > 20_000
    assert traceback.startswith("Traceback (most recent call last):")
    assert traceback.rstrip().endswith("RuntimeError: bottom reached")


def test_system_exit_from_a_task_fails_it_and_the_worker_carries_on(drain) -> None:
    exiting = q.ExitingQueue.add_task(None)
    after = q.NoOpQueue.add_task(None)
    assert drain("failing", "noop") == 2
    assert Task.objects.get(pk=exiting.id).last_error["exc_class"] == "builtins.SystemExit"
    assert Task.objects.get(pk=after.id).status == Status.SUCCEEDED


def test_retry_on_retries_with_backoff_until_max_attempts(drain) -> None:
    recovers = q.FlakyQueue.add_task(2)  # fails twice, succeeds on the third attempt
    gives_up = q.FlakyQueue.add_task(5)  # would need more than max_attempts=3
    for _ in range(4):
        drain("flaky")
    ok, failed = Task.objects.get(pk=recovers.id), Task.objects.get(pk=gives_up.id)
    assert (ok.status, ok.attempts, len(ok.errors)) == (Status.SUCCEEDED, 3, 2)
    assert (failed.status, failed.attempts, len(failed.errors)) == (Status.FAILED, 3, 3)
    assert [e["exc_class"] for e in failed.errors] == ["builtins.ConnectionError"] * 3


@pytest.mark.parametrize(
    "path",
    [
        "tests.taskqueue.sample_queues.Missing",
        "no.such.module.Queue",
        "tests.taskqueue.sample_queues.NotAQueue",
    ],
)
def test_a_queue_class_that_cannot_be_used_fails_its_tasks(drain, path: str) -> None:
    info = q.NoOpQueue.add_task(None)
    Task.objects.filter(pk=info.id).update(task_path=path)
    assert drain("noop") == 1
    task = Task.objects.get(pk=info.id)
    assert task.status == Status.FAILED
    assert task.last_error["exc_class"] == "taskqueue.exceptions.UndeclaredTask"
    assert task.last_error["message"].startswith(f"{path} is not a declared task")


def test_retention_zero_deletes_successful_tasks_at_once(drain) -> None:
    q.NoOpQueue.add_task(None)
    q.FailingQueue.add_task("kept")
    drain("noop", "failing", retention=0)
    assert list(Task.objects.values_list("status", flat=True)) == [Status.FAILED]


def test_database_is_the_one_in_use() -> None:
    assert connection.vendor in ("sqlite", "postgresql")


@pytest.mark.parametrize("backoff", [-1.0, float("inf"), float("nan"), "2"])
def test_a_retry_backoff_no_clock_can_wait_is_refused_at_definition(backoff: object) -> None:
    with pytest.raises(TaskQueueError, match="retry_backoff must be finite seconds >= 0"):
        type("Backoff", (BaseQueue,), {"retry_backoff": backoff, "__module__": __name__})
