"""Django's tasks framework on the engine: enqueue, run, results, signals, retries, as Django
defines them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend, task_backends
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone

from taskqueue.backend import DatabaseBackend, enqueue_on_commit
from taskqueue.exceptions import SerializationError
from taskqueue.models import Status, Task
from tests.taskqueue import sample_tasks as t

pytestmark = pytest.mark.django_db


@pytest.fixture
def signals():
    """Every task signal sent, in order, as (signal name, status, a copy of the result)."""
    sent: list[tuple[str, str, object]] = []
    receivers = {}
    for name, signal in (
        ("enqueued", task_enqueued),
        ("started", task_started),
        ("finished", task_finished),
    ):

        def receiver(sender, task_result, _name=name, **kwargs):
            sent.append((_name, task_result.status, task_result))

        receivers[name] = receiver
        signal.connect(receiver)
    yield sent
    task_enqueued.disconnect(receivers["enqueued"])
    task_started.disconnect(receivers["started"])
    task_finished.disconnect(receivers["finished"])


def test_the_site_uses_this_backend_with_every_feature() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, DatabaseBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


def test_enqueue_stores_a_ready_task_and_get_result_reads_it() -> None:
    result = t.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY and result.args == [2, 3] and result.enqueued_at
    stored = t.add.get_result(result.id)
    assert (stored.status, stored.args, stored.kwargs, stored.attempts) == (
        TaskResultStatus.READY,
        [2, 3],
        {},
        0,
    )
    row = Task.objects.get(pk=int(result.id))
    assert (row.kind, row.task_path, row.queue_name) == (
        "django",
        "tests.taskqueue.sample_tasks.add",
        "default",
    )


def test_the_result_enqueue_returns_is_the_one_get_result_reads() -> None:
    result = t.add.enqueue(2, 3)
    assert t.add.get_result(result.id) == result
    before = (result.status, result.enqueued_at, result.args)
    result.refresh()
    assert (result.status, result.enqueued_at, result.args) == before


def test_get_result_returns_the_task_as_using_changed_it(drain) -> None:
    run_after = (timezone.now() + timedelta(hours=1)).replace(microsecond=123456)
    enqueued = t.add.using(priority=10, queue_name="special", run_after=run_after).enqueue(1, 2)
    stored = t.add.get_result(enqueued.id)
    assert (stored.task.priority, stored.task.queue_name, stored.task.run_after) == (
        10,
        "special",
        run_after,
    )
    assert stored.task == enqueued.task
    again = stored.task.enqueue(3, 4)  # code that enqueues result.task again means the same
    row = Task.objects.get(pk=int(again.id))
    assert (row.priority, row.queue_name, row.run_at) == (10, "special", run_after)
    plain = t.add.get_result(t.add.enqueue(5, 6).id).task
    assert plain == t.add


def test_a_task_runs_and_its_result_is_complete(drain) -> None:
    result = t.add.enqueue(2, 3)
    drain()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.attempts == 1 and result.worker_ids == ["taskqueue.testing"]
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    assert result.errors == []


def test_priority_queue_and_run_after_are_honoured(drain) -> None:
    special = t.special.enqueue()
    row = Task.objects.get(pk=int(special.id))
    assert (row.priority, row.queue_name) == (7, "special")
    later = t.add.using(run_after=timezone.now() + timedelta(hours=1), priority=-3).enqueue(1, 1)
    assert drain("default") == 0
    assert t.add.get_result(later.id).status == TaskResultStatus.READY
    assert drain("special") == 1


def test_takes_context_gets_the_running_result(drain) -> None:
    result = t.which_attempt.enqueue()
    drain()
    assert t.which_attempt.get_result(result.id).return_value == {"attempt": 1, "id": result.id}


def test_async_tasks_run(drain) -> None:
    result = t.add_later.enqueue(20, 22)
    drain()
    assert t.add_later.get_result(result.id).return_value == 42


def test_a_failure_keeps_the_exception_class_and_traceback(drain) -> None:
    result = t.fail.enqueue("no coffee")
    drain()
    failed = t.fail.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    assert [error.exception_class for error in failed.errors] == [ValueError]
    assert "ValueError: no coffee" in failed.errors[0].traceback
    assert failed.attempts == 1 and failed.worker_ids == ["taskqueue.testing"]
    with pytest.raises(ValueError, match="Task failed"):
        failed.return_value  # noqa: B018 - Django raises for a failed task's return value


def test_system_exit_from_a_task_fails_it(drain) -> None:
    result = t.exit_now.enqueue()
    drain()
    assert t.exit_now.get_result(result.id).errors[0].exception_class_path == "builtins.SystemExit"


@pytest.mark.parametrize("bad", [{1, 2}, object(), float("inf")], ids=repr)
def test_arguments_that_cannot_be_stored_fail_at_enqueue_and_store_nothing(bad) -> None:
    with pytest.raises(SerializationError):
        t.echo.enqueue(bad)
    with pytest.raises(SerializationError):
        t.echo.enqueue(value=bad)
    assert not Task.objects.exists()


def test_tuples_are_stored_as_lists_as_django_normalizes_them(drain) -> None:
    result = t.echo.enqueue((1, 2), pair=(3, 4))
    assert result.args == [[1, 2]] and result.kwargs == {"pair": [3, 4]}
    drain()
    assert t.echo.get_result(result.id).return_value == {
        "args": [[1, 2]],
        "kwargs": {"pair": [3, 4]},
    }


def test_a_return_value_that_cannot_be_stored_fails_the_task_clearly(drain) -> None:
    result = t.unstorable.enqueue()
    drain()
    failed = t.unstorable.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class_path == "taskqueue.exceptions.SerializationError"
    assert "The return value cannot be stored as JSON" in failed.errors[0].traceback


def test_retry_policy_retries_until_success_within_max_attempts(drain, tmp_path) -> None:
    recovers = t.flaky.enqueue(str(tmp_path / "a"), failures=2)
    gives_up = t.flaky.enqueue(str(tmp_path / "b"), failures=5)
    for _ in range(4):
        drain()
    ok, failed = t.flaky.get_result(recovers.id), t.flaky.get_result(gives_up.id)
    assert (ok.status, ok.return_value, ok.attempts, len(ok.errors)) == (
        TaskResultStatus.SUCCESSFUL,
        3,
        3,
        2,
    )
    assert (failed.status, failed.attempts, len(failed.errors)) == (TaskResultStatus.FAILED, 3, 3)
    assert len(set(ok.worker_ids)) == 1 and len(ok.worker_ids) == 3


def test_backoff_returning_none_fails_at_once(drain, tmp_path) -> None:
    result = t.picky.enqueue(str(tmp_path / "p"))
    drain()
    assert t.picky.get_result(result.id).status == TaskResultStatus.FAILED
    assert (tmp_path / "p").read_text() == "1"


def test_invalid_retry_policies_are_refused() -> None:
    with pytest.raises(InvalidTask, match="max_attempts"):
        t.add.__class__(func=t.add.func, max_attempts=0)
    with pytest.raises(InvalidTask, match="backoff"):
        t.add.__class__(func=t.add.func, backoff="soon")


def test_signals_carry_complete_results(drain, signals) -> None:
    result = t.add.enqueue(1, 2)
    drain()
    assert [(name, status) for name, status, _ in signals] == [
        ("enqueued", TaskResultStatus.READY),
        ("started", TaskResultStatus.RUNNING),
        ("finished", TaskResultStatus.SUCCESSFUL),
    ]
    finished = signals[-1][2]
    stored = t.add.get_result(result.id)
    for field in (
        "status",
        "attempts",
        "worker_ids",
        "enqueued_at",
        "started_at",
        "finished_at",
        "return_value",
    ):
        assert getattr(finished, field) == getattr(stored, field), field


def test_finished_signal_of_a_failure_is_complete_too(drain, signals) -> None:
    result = t.fail.enqueue("nope")
    drain()
    finished = signals[-1][2]
    stored = t.fail.get_result(result.id)
    assert finished.status == stored.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in finished.errors] == [
        e.exception_class_path for e in stored.errors
    ]
    assert (finished.attempts, finished.worker_ids, finished.finished_at) == (
        stored.attempts,
        stored.worker_ids,
        stored.finished_at,
    )


def test_get_result_of_an_unknown_id_or_another_task() -> None:
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("999999")
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("not-a-number")
    result = t.add.enqueue(1, 1)
    with pytest.raises(TaskResultMismatch):
        t.fail.get_result(result.id)
    assert default_task_backend.get_result(result.id).task == t.add


def test_async_enqueue_and_get_result(drain) -> None:
    result = async_to_sync(t.add.aenqueue)(4, 5)
    drain()
    fetched = async_to_sync(t.add.aget_result)(result.id)
    assert fetched.return_value == 9


def test_enqueue_all_stores_every_call_in_one_go(drain) -> None:
    results = default_task_backend.enqueue_all([(t.add, [i, i], {}) for i in range(50)])
    assert len({r.id for r in results}) == 50
    drain()
    assert [t.add.get_result(r.id).return_value for r in results] == [2 * i for i in range(50)]


def test_enqueue_joins_the_transaction_and_on_commit_waits_for_it(
    django_capture_on_commit_callbacks,
) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        t.add.enqueue(1, 1)
        raise RuntimeError("rolled back")
    assert not Task.objects.exists()
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        enqueue_on_commit(t.add, 1, 1)
        assert not Task.objects.exists(), "waits for the commit"
    assert len(callbacks) == 1 and Task.objects.count() == 1


def test_queue_names_are_validated_when_queues_are_listed(settings) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "taskqueue.backend.DatabaseBackend",
            "QUEUES": ["default", "email"],
            "OPTIONS": {},
        }
    }
    with pytest.raises(InvalidTask, match="Queue 'nope' is not valid"):
        t.add.using(queue_name="nope").enqueue(1, 1)
    assert task_backends["default"].queues == {"default", "email"}


def test_backend_check_reports_bad_options(settings) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": "taskqueue.backend.DatabaseBackend",
            "QUEUES": [],
            "OPTIONS": {"BATCH_SIZE": -1},
        }
    }
    messages = task_backends["default"].check()
    assert [m.id for m in messages] == ["taskqueue.E003"]
    assert "BATCH_SIZE" in messages[0].msg


def test_backend_options_override_taskqueue_settings(settings) -> None:
    from taskqueue.conf import load_settings

    settings.TASKQUEUE = {"BATCH_SIZE": 10, "HEARTBEAT_INTERVAL": 1.0}
    settings.TASKS = {
        "default": {
            "BACKEND": "taskqueue.backend.DatabaseBackend",
            "QUEUES": [],
            "OPTIONS": {"BATCH_SIZE": 20},
        }
    }
    engine = load_settings()
    assert (engine.BATCH_SIZE, engine.HEARTBEAT_INTERVAL) == (20, 1.0)
    assert load_settings({"BATCH_SIZE": 30}).BATCH_SIZE == 30


def test_a_cancelled_task_reads_as_failed_in_django_terms(drain) -> None:
    from taskqueue.engine import operations

    result = t.add.enqueue(1, 1)
    operations.cancel([int(result.id)])
    assert t.add.get_result(result.id).status == TaskResultStatus.FAILED
    assert Task.objects.get().status == Status.CANCELLED
